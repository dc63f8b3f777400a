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


# --- contrib-shaped rows, written without mltrace's ingest code --------------------------------
def _contrib_value(v: object) -> str:
    """An attribute value as the contrib exporter renders it (facts file, "Value mapping")."""
    import base64
    import json

    def js(x: object) -> object:
        if isinstance(x, bytes):
            return base64.b64encode(x).decode()
        if isinstance(x, float) and x == int(x) and abs(x) < 1e16:
            return int(x)
        return x

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v == int(v) and abs(v) < 1e16 else repr(v)
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, (list, tuple)):
        return json.dumps([js(x) for x in v], separators=(",", ":"), ensure_ascii=False)
    return str(v)


def contrib_row(span: object) -> dict[str, object]:
    """One otel_traces row for an OTel SDK ReadableSpan, in the contrib exporter's shape.

    Written independently of mltrace_otel.store.ingest (plain Python from the facts file), so
    tests can fill a store "as otelcol-contrib would" and compare our writer against it.
    """
    ctx = span.context
    parent = span.parent.span_id if span.parent is not None else 0
    attrs = lambda a: dict(sorted((k, _contrib_value(v)) for k, v in (a or {}).items()))  # noqa: E731
    res = dict(span.resource.attributes)
    scope = span.instrumentation_scope
    return {
        "Timestamp": span.start_time,
        "TraceId": f"{ctx.trace_id:032x}",
        "SpanId": f"{ctx.span_id:016x}",
        "ParentSpanId": f"{parent:016x}" if parent else "",
        "TraceState": ctx.trace_state.to_header() if ctx.trace_state else "",
        "SpanName": span.name,
        "SpanKind": span.kind.name.title(),
        "ServiceName": res.get("service.name", "") if isinstance(res.get("service.name"), str) else "",
        "ResourceAttributes": attrs(res),
        "ScopeName": scope.name if scope else "",
        "ScopeVersion": (scope.version or "") if scope else "",
        "SpanAttributes": attrs(span.attributes),
        "Duration": span.end_time - span.start_time,
        "StatusCode": span.status.status_code.name.title(),
        "StatusMessage": span.status.description or "",
        "Events.Timestamp": [e.timestamp for e in span.events],
        "Events.Name": [e.name for e in span.events],
        "Events.Attributes": [attrs(e.attributes) for e in span.events],
        "Links.TraceId": [f"{lk.context.trace_id:032x}" for lk in span.links],
        "Links.SpanId": [f"{lk.context.span_id:016x}" for lk in span.links],
        "Links.TraceState": [lk.context.trace_state.to_header() if lk.context.trace_state else ""
                             for lk in span.links],
        "Links.Attributes": [attrs(lk.attributes) for lk in span.links],
    }


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
