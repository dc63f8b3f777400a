"""The same pipeline-health series, from a long-running process's own runs (no store needed).

An endpoint component serving predictions runs in a web process for days; Prometheus can scrape
that process directly. :class:`MetricsSpanProcessor` is an OpenTelemetry SpanProcessor: each
finished run span (one carrying ``mltrace.component.name``) updates in-memory state (runs by
status, durations, test outcomes, output summaries and sketches of the newest runs), and it is
also a prometheus_client Collector that renders that state through :mod:`.families`, so the
series, names and labels are the ones the store-backed ``/metrics`` exposes (minus staleness and
flags, which need the store). :func:`serve_process_metrics` wires it all up in one call.

Must not raise into the host program: ``on_end`` swallows (and logs) its own failures.
Imports opentelemetry-sdk, prometheus_client, .families and the SDK's export module (lazily).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import StatusCode
from prometheus_client.core import Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from mltrace_otel import conventions as C
from mltrace_otel.metrics.families import (
    DEFAULT_WINDOW_RUNS,
    DURATION_BUCKETS,
    LabelLimiter,
    OutputSeries,
    RunSeries,
    Snapshot,
    render,
    window_quantiles,
)
from mltrace_otel.settings import Settings

log = logging.getLogger(__name__)

STATE_FACTOR = 10
"""The processor remembers at most ``cap * STATE_FACTOR`` output series (memory bound)."""


@dataclass(frozen=True)
class _OutputRun:
    start: float
    count: int
    nulls: int
    min: float | None
    max: float | None
    mean: float | None
    sum: float | None
    sketch: str


class MetricsSpanProcessor(SpanProcessor, Collector):
    """A SpanProcessor that turns finished run spans into Prometheus series, and the Collector
    that exposes them.

    Args:
        settings: for ``metrics_label_cap``; ``Settings.from_env(lenient=True)`` when None.
        window_runs: runs merged for the wider output-distribution window.
    """

    def __init__(self, settings: Settings | None = None, window_runs: int = DEFAULT_WINDOW_RUNS) -> None:
        settings = settings or Settings.from_env(lenient=True)
        self.limiter = LabelLimiter(settings.metrics_label_cap)
        self.window_runs = max(1, int(window_runs))
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str], RunSeries] = {}
        self._tests: dict[tuple[str, str, str, str], int] = {}
        self._outputs: dict[tuple[str, str, str], deque[_OutputRun]] = {}

    reads_start_attributes = False
    """on_start does nothing: runs need not start with their attributes for it
    (:func:`mltrace_otel.sdk.export.has_added_processors`)."""

    # --- SpanProcessor --------------------------------------------------------------------
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        """Nothing to do when a run starts."""

    def on_end(self, span: ReadableSpan) -> None:
        """Record one finished span if it is a component run. Never raises."""
        try:
            self._record(span)
        except Exception:  # noqa: BLE001 - telemetry never breaks the host program
            log.debug("mltrace: metrics processor could not record a span", exc_info=True)

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered."""
        return True

    def _record(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        component = attrs.get(C.COMPONENT_NAME)
        if not component or span.start_time is None or span.end_time is None:
            return
        component = str(component)
        status = "error" if span.status.status_code == StatusCode.ERROR else "ok"
        duration = max(0, span.end_time - span.start_time) / 1e9
        start, end = span.start_time / 1e9, span.end_time / 1e9
        cap = self.limiter.cap * STATE_FACTOR
        with self._lock:
            rs = self._runs.setdefault((component, status), RunSeries())
            rs.runs += 1
            rs.duration_sum_s += duration
            for i, b in enumerate(DURATION_BUCKETS):
                if duration <= b:
                    rs.bucket_counts[i] += 1
            rs.last_end = max(rs.last_end, end)
            for ev in span.events:
                ea = ev.attributes or {}
                if ev.name == C.EVENT_TEST:
                    key = (component, str(ea.get(C.TEST_NAME, "")), str(ea.get(C.TEST_METHOD, "")),
                           "passed" if ea.get(C.TEST_PASSED) in (True, "true") else "failed")
                    self._tests[key] = self._tests.get(key, 0) + 1
                elif ev.name == C.EVENT_OUTPUT_STATS:
                    okey = (component, str(ea.get(C.STATS_OUTPUT, "")), str(ea.get(C.STATS_COLUMN, "")))
                    runs = self._outputs.get(okey)
                    if runs is None:
                        if len(self._outputs) >= cap:
                            continue
                        runs = self._outputs[okey] = deque(maxlen=self.window_runs)
                    runs.appendleft(_OutputRun(
                        start, int(ea.get(C.STATS_COUNT, 0)), int(ea.get(C.STATS_NULLS, 0)),
                        _num(ea.get(C.STATS_MIN)), _num(ea.get(C.STATS_MAX)), _num(ea.get(C.STATS_MEAN)),
                        _num(ea.get(C.STATS_SUM)), str(ea.get(C.STATS_SKETCH, ""))))

    # --- Collector ------------------------------------------------------------------------
    def describe(self) -> list[Metric]:
        """Nothing up front (the series depend on the runs seen)."""
        return []

    def snapshot(self) -> Snapshot:
        """The state as a :class:`~.families.Snapshot` (a copy)."""
        snap = Snapshot()
        with self._lock:
            snap.runs = {k: RunSeries(v.runs, v.duration_sum_s, list(v.bucket_counts), v.last_end)
                         for k, v in self._runs.items()}
            snap.tests = dict(self._tests)
            outputs = {k: list(v) for k, v in self._outputs.items()}
        for key, runs in outputs.items():
            latest = runs[0]
            s = OutputSeries(latest.count, latest.nulls, latest.min, latest.max, latest.mean,
                             latest.sum, latest.start)
            s.quantiles = window_quantiles(runs, (1, self.window_runs))
            snap.outputs[key] = s
        return snap

    def collect(self) -> Iterator[Metric]:
        """The series of every run this process finished."""
        yield from render(self.snapshot(), self.limiter, self.window_runs)
        yield self.limiter.family()


def _num(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


@dataclass
class ProcessMetrics:
    """What :func:`serve_process_metrics` started: the processor, its registry and the server."""

    processor: MetricsSpanProcessor
    registry: CollectorRegistry
    port: int
    server: Any = None

    def stop(self) -> None:
        """Stop the HTTP server (the processor keeps recording)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def attach(processor: SpanProcessor, provider: Any = None) -> None:
    """Add a span processor to ``provider``, or to the mltrace SDK's own TracerProvider."""
    if provider is not None:
        provider.add_span_processor(processor)
        return
    from mltrace_otel.sdk import export

    hook = getattr(export, "add_span_processor", None)
    if hook is not None:  # survives the SDK rebuilding its pipeline (configure / set_address)
        hook(processor)
    else:  # pragma: no cover - until the SDK exposes the hook
        export._setup().provider.add_span_processor(processor)


def serve_process_metrics(port: int | None = None, *, host: str | None = None,
                          registry: CollectorRegistry | None = None, settings: Settings | None = None,
                          provider: Any = None, serve: bool = True,
                          window_runs: int = DEFAULT_WINDOW_RUNS) -> ProcessMetrics:
    """Expose this process's own run series on ``http://host:port/metrics``.

    For long-running processes (an endpoint component serving predictions): every run this
    process finishes updates the series right away, with no collector or store involved.

    Args:
        port: the port; ``settings.metrics_port`` (MLTRACE_METRICS_PORT, default 9464) when None;
            0 picks a free port (see ``ProcessMetrics.port``).
        host: address to bind; ``settings.host`` (MLTRACE_HOST, default 127.0.0.1) when None.
        registry: where to register; prometheus_client's default REGISTRY when None (so the
            process's other metrics are served alongside).
        settings: defaults for port, host and the label cap; from the environment when None.
        provider: the TracerProvider to watch; the mltrace SDK's own when None.
        serve: False to only register (the application already serves a registry).
        window_runs: runs merged for the wider output-distribution window.

    Returns:
        A :class:`ProcessMetrics` (``stop()`` stops the server).
    """
    settings = settings or Settings.from_env(lenient=True)
    registry = REGISTRY if registry is None else registry
    processor = MetricsSpanProcessor(settings, window_runs)
    registry.register(processor)
    attach(processor, provider)
    result = ProcessMetrics(processor, registry, 0)
    if serve:
        from prometheus_client import start_http_server

        server, _thread = start_http_server(settings.metrics_port if port is None else port,
                                            addr=host or settings.host, registry=registry)
        result.server = server
        result.port = server.server_address[1]
    return result
