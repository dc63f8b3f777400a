"""The export machinery behind :mod:`mltrace_otel.sdk.export`: delivery counters, the time range
a span must fall in, and (for test exporters) a batch processor that counts what it drops. The
OTLP and spool destinations are :mod:`.durable`'s.

Nothing here raises into user code: failures are counted in :data:`COUNTERS` and logged.
Imports: opentelemetry only.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import warnings
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

_log = logging.getLogger("mltrace_otel.sdk")

MIN_TIME_NS = 0
"""The earliest span time: OTLP carries times as unsigned nanoseconds since 1970-01-01."""
MAX_TIME_NS = 2**63 - 1
"""The latest span time the store holds: DateTime64(9) is Int64 nanoseconds, up to
2262-04-11T23:47:16.854775807Z (the collector refuses later spans)."""


def in_range(start_ns: int | None, end_ns: int | None) -> bool:
    """Whether a span with these times can be encoded, exported and stored."""
    return (start_ns is not None and end_ns is not None
            and MIN_TIME_NS <= start_ns <= end_ns <= MAX_TIME_NS)


class Counters:
    """What happened to the spans of this process (thread-safe); the first drop warns once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.exported = self.spooled = self.dropped = self.export_failures = 0
            self.last_error = ""
            self.warned = False

    def add(self, field: str, n: int, error: str = "") -> None:
        with self.lock:
            setattr(self, field, getattr(self, field) + n)
            if error:
                self.last_error = error
            warn = field == "dropped" and n > 0 and not self.warned
            if warn:
                self.warned = True
        if warn:
            try:
                warnings.warn(
                    f"mltrace: {n} run span(s) could not be delivered ({error or 'unknown reason'}); "
                    "see mltrace_otel.delivery_stats()",
                    RuntimeWarning,
                    stacklevel=2,
                )
            except Exception:  # noqa: BLE001 - warnings turned into errors must not break a run
                _log.warning("mltrace: %d run span(s) could not be delivered (%s)", n, error)


COUNTERS = Counters()
"""The process's delivery counts (zeroed by export.configure / export.reset)."""


class CountingExporter(SpanExporter):
    """Wraps a test exporter so its spans are counted as exported (or dropped)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as e:  # noqa: BLE001
            COUNTERS.add("dropped", len(spans), f"exporter raised {e!r}")
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            COUNTERS.add("exported", len(spans))
        else:
            COUNTERS.add("dropped", len(spans), f"{type(self.inner).__name__} failed")
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class BatchProcessor(SpanProcessor):
    """Queues ended spans and exports them in batches on a background thread.

    Like OTel's BatchSpanProcessor, but a full queue refuses the *new* span and counts it as
    dropped, exactly (the stock one evicts the oldest and only logs). ``on_end`` takes a lock
    and appends: it never blocks on the exporter. Survives fork (the child gets a fresh thread).
    """

    def __init__(self, exporter: SpanExporter, max_queue: int, delay_s: float, batch: int = 512) -> None:
        self._exporter = exporter
        self._max_queue = max_queue
        self._delay_s = delay_s
        self._batch = max(1, min(batch, max_queue))
        self._init_state()
        if hasattr(os, "register_at_fork"):
            import weakref

            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: (p := ref()) and p._init_state())

    def _init_state(self) -> None:
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._lock = threading.Lock()
        self._export_lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopped = False
        self._thread = threading.Thread(target=self._worker, name="mltrace-export", daemon=True)
        self._thread.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            if self._stopped or len(self._queue) >= self._max_queue:
                full = True
            else:
                full = False
                self._queue.append(span)
                if len(self._queue) >= self._batch:
                    self._wake.notify()
        if full:
            COUNTERS.add("dropped", 1, "export queue full" if not self._stopped else "exporter shut down")

    def queued(self) -> int:
        return len(self._queue)

    def _take(self) -> list[ReadableSpan]:
        with self._lock:
            n = min(self._batch, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _export_all(self) -> None:
        with self._export_lock:
            while True:
                batch = self._take()
                if not batch:
                    return
                try:
                    self._exporter.export(batch)
                except Exception as e:  # noqa: BLE001 - exporters must not raise; count if one does
                    COUNTERS.add("dropped", len(batch), f"exporter raised {e!r}")

    def _worker(self) -> None:
        while True:
            with self._lock:
                if not self._stopped and len(self._queue) < self._batch:
                    self._wake.wait(self._delay_s)
                stopped = self._stopped
            self._export_all()
            if stopped:
                return

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now, in the calling thread."""
        self._export_all()
        return True

    def shutdown(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._wake.notify()
        self._thread.join(30)
        self._export_all()
        try:
            self._exporter.shutdown()
        except Exception:  # noqa: BLE001
            _log.debug("mltrace: exporter shutdown failed", exc_info=True)
