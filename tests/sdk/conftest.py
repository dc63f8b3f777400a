"""SDK test fixtures: every test gets a fresh SDK pipeline and forgets it afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mltrace_otel.sdk import config, export
from mltrace_otel.settings import Settings


@pytest.fixture
def sdk_settings(tmp_path: Path) -> Settings:
    """Settings with MLTRACE_DIR (spool, artifacts) under tmp_path and nothing from the env."""
    d = tmp_path / "mltrace"
    d.mkdir()
    return Settings.from_env({}, mltrace_dir=d)


@pytest.fixture(autouse=True)
def fresh_sdk() -> Iterator[None]:
    """No pipeline, no overrides, no remembered producers before and after each test."""
    export.reset()
    config.clear_overrides()
    yield
    export.reset()
    config.clear_overrides()


@pytest.fixture
def spans(sdk_settings: Settings) -> InMemorySpanExporter:
    """Runs go to this in-memory exporter (synchronously); artifacts under sdk_settings."""
    mem = InMemorySpanExporter()
    export.configure(settings=sdk_settings, exporter=mem)
    return mem
