"""Helpers for the query tests: runs as plain OpenTelemetry SDK spans carrying mltrace.* attributes.

No mltrace SDK involved: a span is a run because it carries ``mltrace.component.name``; times
are explicit so lineage and staleness are deterministic. ``Runs.flush(store)`` writes the spans
either through our ingest (``store.insert_spans``) or as otelcol-contrib would (``contrib``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import Status, StatusCode

from mltrace_otel import conventions as cv

BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)
BASE_NS = int(BASE.timestamp()) * 1_000_000_000
DAY_S = 86400


class _Ids(IdGenerator):
    """Random ids, except span ids queued in ``next_span_ids`` (to make prefixes collide)."""

    def __init__(self) -> None:
        self.random = RandomIdGenerator()
        self.next_span_ids: list[int] = []

    def generate_span_id(self) -> int:
        return self.next_span_ids.pop(0) if self.next_span_ids else self.random.generate_span_id()

    def generate_trace_id(self) -> int:
        return self.random.generate_trace_id()


class Runs:
    """Build runs as OTel spans; ``at`` is seconds after BASE."""

    def __init__(self, service: str = "plain-otel") -> None:
        self.exporter = InMemorySpanExporter()
        self.ids = _Ids()
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}),
                                       id_generator=self.ids)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("plain.sdk", "1.0")
        self.clock = 0.0

    def run(self, component: str, inputs: Sequence[str] = (), outputs: Sequence[str] = (), *,
            at: float | None = None, duration: float = 1.0, in_versions: Sequence[str] | None = None,
            out_versions: Sequence[str] | None = None, upstream: Sequence[str] = (),
            threshold_s: int | None = None, notes: str | None = None, owner: str | None = None,
            tags: Sequence[str] = (), error: str | None = None, code: str | None = None,
            span_id: int | None = None) -> str:
        """Log one run; returns its id (the span id, 16 hex chars)."""
        if at is None:
            self.clock += 10
            at = self.clock
        else:
            self.clock = max(self.clock, at)
        attrs: dict[str, object] = {cv.COMPONENT_NAME: component}
        if inputs:
            attrs[cv.RUN_INPUTS] = list(inputs)
        if outputs:
            attrs[cv.RUN_OUTPUTS] = list(outputs)
        if in_versions is not None:
            attrs[cv.RUN_INPUT_VERSIONS] = list(in_versions)
        if out_versions is not None:
            attrs[cv.RUN_OUTPUT_VERSIONS] = list(out_versions)
        if upstream:
            attrs[cv.RUN_UPSTREAM] = list(upstream)
        if threshold_s is not None:
            attrs[cv.RUN_STALENESS_THRESHOLD_S] = threshold_s
        if notes is not None:
            attrs[cv.RUN_NOTES] = notes
        if owner is not None:
            attrs[cv.COMPONENT_OWNER] = owner
        if tags:
            attrs[cv.COMPONENT_TAGS] = list(tags)
        if code is not None:
            attrs[cv.CODE_SNAPSHOT] = code
        if span_id is not None:
            self.ids.next_span_ids.append(span_id)
        start = BASE_NS + int(at * 1e9)
        span = self.tracer.start_span(component, start_time=start, attributes=attrs)
        if error:
            span.add_event(cv.EVENT_EXCEPTION, {"exception.type": "ValueError",
                                                "exception.message": error})
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=start + int(duration * 1e9))
        return f"{span.get_span_context().span_id:016x}"

    def flush(self, store: object, contrib=None) -> int:  # noqa: ANN001
        """Write the finished spans to the store (our ingest, or ``contrib(store, spans)``)."""
        spans = list(self.exporter.get_finished_spans())
        self.exporter.clear()
        if contrib is not None:
            return contrib(store, spans)
        result = store.insert_spans(spans)
        assert result.rejected == 0, result.errors
        return result.accepted


def diamonds(runs: Runs, n: int, prefix: str = "d") -> tuple[str, list[str]]:
    """A chain of ``n`` diamonds: src -> (left, right) -> join -> (left, right) -> ...

    Returns (final output, run ids). 1 + 3n runs.
    """
    ids = [runs.run(f"{prefix}_src", ["raw"], [f"{prefix}0"])]
    for i in range(n):
        ids.append(runs.run(f"{prefix}_left", [f"{prefix}{i}"], [f"{prefix}{i}_l"]))
        ids.append(runs.run(f"{prefix}_right", [f"{prefix}{i}"], [f"{prefix}{i}_r"]))
        ids.append(runs.run(f"{prefix}_join", [f"{prefix}{i}_l", f"{prefix}{i}_r"], [f"{prefix}{i + 1}"]))
    return f"{prefix}{n}", ids
