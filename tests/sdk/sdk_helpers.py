"""Helpers for reading run spans in SDK tests."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mltrace_otel import conventions as C


def runs(mem: InMemorySpanExporter) -> list:
    """Finished run spans, oldest first."""
    return [s for s in mem.get_finished_spans() if C.COMPONENT_NAME in s.attributes]


def attr(span: object, name: str) -> object:
    v = span.attributes.get(name)  # type: ignore[attr-defined]
    return list(v) if isinstance(v, tuple) else v


def events_of(span: object) -> list[dict]:
    """The mltrace.test events of a run, as dicts."""
    return [dict(e.attributes) for e in span.events if e.name == C.EVENT_TEST]  # type: ignore[attr-defined]


