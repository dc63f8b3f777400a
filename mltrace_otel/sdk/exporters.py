"""The export machinery behind :mod:`mltrace_otel.sdk.export`: delivery counters, the OTLP-or-
spool exporter, an OTLP/JSON exporter, and a batch processor that counts what it drops.

Nothing here raises into user code: failures are counted in :data:`COUNTERS` and logged.
Imports: settings, spool and opentelemetry only.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import warnings
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from mltrace_otel import spool
from mltrace_otel.settings import Settings

_log = logging.getLogger("mltrace_otel.sdk")

OTLP_RETRY_AFTER_S = 30.0
"""After an OTLP failure, batches go straight to the spool for this long."""
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


class DeliveringExporter(SpanExporter):
    """OTLP first (when configured), the spool when OTLP fails or is absent; counts everything.

    Must not raise; runs on the batch processor's background thread.
    """

    def __init__(self, settings: Settings, otlp: SpanExporter | None) -> None:
        self._settings = settings
        self._otlp = otlp
        self._skip_otlp_until = 0.0
        self._spool_bytes: int | None = None
        self._spool_checked = 0.0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        spans = _exportable(spans)
        n = len(spans)
        if not n:
            return SpanExportResult.SUCCESS
        with self._lock:
            if self._otlp is not None and time.monotonic() >= self._skip_otlp_until:
                try:
                    result = self._otlp.export(spans)
                    error = "" if result is SpanExportResult.SUCCESS else "OTLP export failed"
                except Exception as e:  # noqa: BLE001
                    result, error = SpanExportResult.FAILURE, f"OTLP export raised {e!r}"
                if result is SpanExportResult.SUCCESS:
                    COUNTERS.add("exported", n)
                    return result
                self._skip_otlp_until = time.monotonic() + OTLP_RETRY_AFTER_S
                COUNTERS.add("export_failures", 1, error + "; spooled instead")
            return self._to_spool(spans)

    def _to_spool(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        n = len(spans)
        try:
            payload = encode_spans(spans).SerializeToString()
        except Exception as e:  # noqa: BLE001
            COUNTERS.add("dropped", n, f"cannot encode spans: {e!r}")
            return SpanExportResult.FAILURE
        d = self._settings.spool_dir
        now = time.monotonic()
        if self._spool_bytes is None or now - self._spool_checked > 10:
            self._spool_bytes, self._spool_checked = spool.size_bytes(d), now
        cap = self._settings.spool_max_mb * 1024 * 1024
        if self._spool_bytes + len(payload) > cap:
            COUNTERS.add("dropped", n, f"spool {d} is over MLTRACE_SPOOL_MAX_MB="
                                       f"{self._settings.spool_max_mb}")
            return SpanExportResult.FAILURE
        try:
            spool.secure_home(self._settings.mltrace_dir)  # 0700, before the spool in it
            spool.write_batch(d, payload, n)
        except OSError as e:
            COUNTERS.add("dropped", n, f"cannot write the spool {d}: {e}")
            return SpanExportResult.FAILURE
        self._spool_bytes += len(payload)
        COUNTERS.add("spooled", n)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if self._otlp is not None:
            try:
                self._otlp.shutdown()
            except Exception:  # noqa: BLE001
                pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _exportable(spans: Sequence[ReadableSpan]) -> Sequence[ReadableSpan]:
    """The spans whose times can be encoded; the others are counted as dropped, so one bad
    span never fails its batch (protobuf refuses a negative time for the whole request).
    Hand-built runs are clamped before they get here (:func:`.spans.clamp_run_times`)."""
    if all(in_range(s.start_time, s.end_time) for s in spans):
        return spans
    good = [s for s in spans if in_range(s.start_time, s.end_time)]
    bad = [s for s in spans if not in_range(s.start_time, s.end_time)]
    COUNTERS.add("dropped", len(bad), f"span {bad[0].name!r} has times outside 1970-2262 "
                                      f"(start {bad[0].start_time}, end {bad[0].end_time} ns)")
    return good


class OTLPJsonExporter(SpanExporter):
    """OTLP/HTTP with JSON bodies (the Python OTel SDK ships only protobuf): the same request,
    rendered per the OTLP/JSON rules (lowerCamelCase fields, hex trace/span ids, integer enums).
    One attempt per batch; a failure is reported, and the caller spools the batch."""

    def __init__(self, endpoint: str, headers: dict[str, str], timeout_s: float) -> None:
        self.endpoint = endpoint
        self.headers = {"Content-Type": "application/json", **headers}
        self.timeout_s = timeout_s

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        import json
        import urllib.request

        from google.protobuf.json_format import MessageToDict
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        try:
            body = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
            for rs in body.get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    for sp in ss.get("spans", []):
                        _hex_ids(sp, ("traceId", "spanId", "parentSpanId"))
                        for lk in sp.get("links", []):
                            _hex_ids(lk, ("traceId", "spanId"))
            req = urllib.request.Request(self.endpoint, data=json.dumps(body).encode(), method="POST",
                                         headers=self.headers)
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                ok = 200 <= resp.status < 300
        except Exception as e:  # noqa: BLE001
            _log.warning("mltrace: OTLP/JSON export to %s failed: %s", self.endpoint, e)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


def _hex_ids(d: dict, keys: tuple[str, ...]) -> None:
    import base64

    for k in keys:
        if k in d:
            d[k] = base64.b64decode(d[k]).hex()


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
