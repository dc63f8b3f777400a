"""Run spans built with the real OTel SDK, as other languages' SDKs would emit them
(mltrace.* attributes and events, no mltrace decorator involved)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from mltrace_otel import conventions as C
from mltrace_otel.sdk.stats import output_events

S = 1_000_000_000  # ns per second


@dataclass
class RunSpec:
    """One component run to emit: start (seconds ago), duration, outcome, tests, outputs."""

    component: str
    ago_s: float
    duration_s: float
    failed: bool = False
    tests: Sequence[tuple[str, str, bool]] = ()  # (name, method, passed)
    outputs: dict[str, Any] = field(default_factory=dict)  # name -> value (summarized by stats)
    pointers: Sequence[str] = ()
    inputs: Sequence[str] = ()
    staleness_threshold_s: int | None = None

    @property
    def start_ns(self) -> int:
        return int((BASE_NOW - self.ago_s) * S)

    @property
    def end_ns(self) -> int:
        return self.start_ns + int(self.duration_s * S)


BASE_NOW = time.time()


class SpanFactory:
    """Emits RunSpecs as finished spans on a private TracerProvider."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer(C.SCOPE_NAME)

    def add_processor(self, p: SpanProcessor) -> None:
        self.provider.add_span_processor(p)

    def emit(self, runs: Sequence[RunSpec]) -> list[ReadableSpan]:
        self.exporter.clear()
        for r in runs:
            attrs = {C.COMPONENT_NAME: r.component, C.RUN_OUTPUTS: list(r.pointers or r.outputs),
                     C.RUN_INPUTS: list(r.inputs)}
            if r.staleness_threshold_s is not None:
                attrs[C.RUN_STALENESS_THRESHOLD_S] = r.staleness_threshold_s
            span = self.tracer.start_span(r.component, attributes=attrs, start_time=r.start_ns)
            for name, method, passed in r.tests:
                span.add_event(C.EVENT_TEST, {C.TEST_NAME: name, C.TEST_METHOD: method, C.TEST_PHASE: "after",
                                              C.TEST_PASSED: passed, C.TEST_MESSAGE: "" if passed else "bad"},
                               timestamp=r.end_ns)
            for ev in output_events(r.outputs):
                span.add_event(C.EVENT_OUTPUT_STATS, ev, timestamp=r.end_ns)
            if r.failed:
                span.set_status(Status(StatusCode.ERROR, "boom"))
            span.end(end_time=r.end_ns)
        return list(self.exporter.get_finished_spans())
