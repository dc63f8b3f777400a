"""Shared fixtures: per-test settings and a per-test store database.

chDB allows one engine directory per process, so the whole pytest session uses ONE directory
and every test gets its own database in it (``chdb:///DIR?database=t_<n>``), plus its own
MLTRACE_DIR (spool, artifacts) under ``tmp_path``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from contrib_rows import contrib_row

from mltrace_otel.settings import Settings

_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's one embedded-engine directory."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def tmp_settings(tmp_path: Path, store_dir: Path) -> Settings:
    """Settings for one test: MLTRACE_DIR under tmp_path, a fresh database in the session store."""
    db = f"t_{next(_db_numbers)}"
    mltrace_dir = tmp_path / "mltrace"
    mltrace_dir.mkdir()
    return Settings.from_env(
        {},
        mltrace_dir=mltrace_dir,
        store_url=f"chdb://{store_dir.as_posix()}?database={db}",
        store_wait_s=10.0,
    )


@pytest.fixture
def store(tmp_settings: Settings) -> Iterator[object]:
    """An open, migrated store on the test's own database; closed (and dropped) after."""
    from mltrace_otel.store import open_store

    s = open_store(tmp_settings)
    try:
        yield s
    finally:
        if not s._closed:
            try:
                s.command("drop_test_database", f"DROP DATABASE IF EXISTS `{s.database}`")
            except Exception:
                pass
        s.close()


@pytest.fixture
def contrib_insert():
    """``insert(store, spans)``: write OTel SDK spans as otelcol-contrib would (no mltrace ingest)."""

    def insert(store: object, spans: list[object]) -> int:
        rows = [contrib_row(s) for s in spans]
        if not rows:
            return 0
        names = list(rows[0])
        store.insert_columns("contrib_insert", "otel_traces", [[r[n] for r in rows] for n in names], names)
        return len(rows)

    return insert


@pytest.fixture
def otel_tracer():
    """A plain OpenTelemetry SDK tracer (private provider) and its in-memory exporter."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "plain-otel"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("plain.sdk", "1.2.3"), exporter
    provider.shutdown()
