"""Where run spans go: OTLP, the local spool, or a test exporter; flushing and delivery counts.

The SDK keeps its **own** TracerProvider (it never sets or replaces the global one, so an
application's own tracing is untouched), set up lazily at the first run from
``Settings.from_env(lenient=True)`` plus the overrides of :mod:`mltrace_otel.sdk.config`.

Destinations (``MLTRACE_EXPORT``):

* ``auto`` (default): OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``..._TRACES_ENDPOINT`` is set
  (``OTEL_EXPORTER_OTLP_PROTOCOL`` http/protobuf, http/json or grpc;
  ``OTEL_EXPORTER_OTLP_HEADERS`` sent along), else the durable spool under
  ``MLTRACE_DIR/spool`` that the store drains.
* ``otlp``: OTLP, to ``http://localhost:4318`` when no endpoint is set.
* ``spool``: the spool only.  ``none``: runs are not exported at all.

A batch the OTLP endpoint refuses, or that cannot reach it within :data:`OTLP_TIMEOUT_S`, goes
to the spool instead; after a failure OTLP is skipped for :data:`OTLP_RETRY_AFTER_S` so a dead
endpoint costs one timeout, not one per batch (nor minutes at shutdown). Above
``MLTRACE_SPOOL_MAX_MB`` the spool takes nothing more and the spans are counted as dropped.
Every span is counted (:func:`delivery_stats`); the first drop issues a RuntimeWarning.

Spans are batched on a background thread (BatchSpanProcessor): a decorated call never touches
the file system or the network itself. :func:`flush` exports what is queued; it also runs at
interpreter exit.

Testing hook (for this package's tests and other areas' tests)::

    from mltrace_otel.sdk import export
    export.configure(exporter=InMemorySpanExporter())   # spans go there, synchronously
    export.configure(settings=tmp_settings)              # runs go to tmp_settings.spool_dir
    export.configure(settings=tmp_settings, sync=True)   # ... each one written before the
                                                         #     decorated call returns
    mltrace_otel.flush()        # with sync=False: write what is queued, then open the store
    export.reset()              # back to the environment's settings, counters zeroed

``configure(settings=...)`` also makes :func:`mltrace_otel.sdk.config.current_settings` (and
so the query API) use those settings.

Imports: settings, conventions, spool and opentelemetry only.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, Tracer, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from mltrace_otel import conventions as C
from mltrace_otel import spool
from mltrace_otel.settings import Settings

_log = logging.getLogger("mltrace_otel.sdk")

OTLP_TIMEOUT_S = 4.0
"""Seconds one OTLP export may take (retries included) before its batch goes to the spool."""
OTLP_RETRY_AFTER_S = 30.0
"""After an OTLP failure, batches go straight to the spool for this long."""
MAX_QUEUE_SPANS = 20_000
"""Spans waiting for the background exporter; beyond this new spans are dropped (and counted)."""
SCHEDULE_DELAY_MS = 2000
"""How often the background thread exports what has queued up."""


@dataclass(frozen=True)
class DeliveryStats:
    """What happened to the spans this process emitted since set-up (or the last reset).

    Attributes:
        exported: spans an OTLP endpoint (or a configured test exporter) accepted.
        spooled: spans durably written to the local spool.
        dropped: spans lost (spool full or unwritable, queue overflow, encoding failure).
        export_failures: OTLP export attempts that failed (their spans went to the spool).
        queued: spans waiting in the background queue right now.
        last_error: the latest failure, "" if none.
        destination: where spans go: "otlp <url>", "spool <dir>", "none" or "custom".
    """

    exported: int = 0
    spooled: int = 0
    dropped: int = 0
    export_failures: int = 0
    queued: int = 0
    last_error: str = ""
    destination: str = ""

    @property
    def delivered(self) -> int:
        """Spans that reached an endpoint or the spool."""
        return self.exported + self.spooled


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
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


_counters = _Counters()


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
                    _counters.add("exported", n)
                    return result
                self._skip_otlp_until = time.monotonic() + OTLP_RETRY_AFTER_S
                _counters.add("export_failures", 1, error + "; spooled instead")
            return self._to_spool(spans)

    def _to_spool(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        n = len(spans)
        try:
            payload = encode_spans(spans).SerializeToString()
        except Exception as e:  # noqa: BLE001
            _counters.add("dropped", n, f"cannot encode spans: {e!r}")
            return SpanExportResult.FAILURE
        d = self._settings.spool_dir
        now = time.monotonic()
        if self._spool_bytes is None or now - self._spool_checked > 10:
            self._spool_bytes, self._spool_checked = spool.size_bytes(d), now
        cap = self._settings.spool_max_mb * 1024 * 1024
        if self._spool_bytes + len(payload) > cap:
            _counters.add("dropped", n, f"spool {d} is over MLTRACE_SPOOL_MAX_MB="
                                        f"{self._settings.spool_max_mb}")
            return SpanExportResult.FAILURE
        try:
            spool.write_batch(d, payload)
        except OSError as e:
            _counters.add("dropped", n, f"cannot write the spool {d}: {e}")
            return SpanExportResult.FAILURE
        self._spool_bytes += len(payload)
        _counters.add("spooled", n)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if self._otlp is not None:
            try:
                self._otlp.shutdown()
            except Exception:  # noqa: BLE001
                pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


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


class _CountingExporter(SpanExporter):
    """Wraps a test exporter so its spans are counted as exported."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as e:  # noqa: BLE001
            _counters.add("dropped", len(spans), f"exporter raised {e!r}")
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            _counters.add("exported", len(spans))
        else:
            _counters.add("dropped", len(spans), f"{type(self.inner).__name__} failed")
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _CountingBatchProcessor(BatchSpanProcessor):
    """BatchSpanProcessor that counts the spans its full queue drops."""

    def on_end(self, span: ReadableSpan) -> None:
        try:
            full = len(self._batch_processor._queue) >= MAX_QUEUE_SPANS  # type: ignore[attr-defined]
        except AttributeError:
            full = False
        if full:
            _counters.add("dropped", 1, "export queue full")
        super().on_end(span)

    def queued(self) -> int:
        try:
            return len(self._batch_processor._queue)  # type: ignore[attr-defined]
        except AttributeError:
            return 0


@dataclass
class _Pipeline:
    settings: Settings
    provider: TracerProvider
    tracer: Tracer
    processor: object
    destination: str

    def flush(self, timeout_s: float) -> bool:
        return bool(self.provider.force_flush(int(timeout_s * 1000)))

    def close(self) -> None:
        try:
            self.provider.shutdown()
        except Exception:  # noqa: BLE001
            _log.debug("mltrace: provider shutdown failed", exc_info=True)


_lock = threading.RLock()
_pipeline: _Pipeline | None = None
_configured_settings: Settings | None = None
_atexit_registered = False
_reset_hooks: list[Callable[[], None]] = []


def resource_for(settings: Settings) -> Resource:
    """The Resource of every run span: OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME."""
    from opentelemetry.sdk.resources import (
        TELEMETRY_SDK_LANGUAGE,
        TELEMETRY_SDK_NAME,
        TELEMETRY_SDK_VERSION,
    )
    from opentelemetry.sdk.version import __version__ as sdk_version

    attrs: dict[str, str] = {TELEMETRY_SDK_LANGUAGE: "python", TELEMETRY_SDK_NAME: "opentelemetry",
                             TELEMETRY_SDK_VERSION: sdk_version}
    attrs.update(settings.resource_attributes)
    attrs["service.name"] = (settings.service_name or settings.resource_attributes.get("service.name")
                             or C.DEFAULT_SERVICE_NAME)
    return Resource(attrs)


def otlp_endpoint(settings: Settings) -> str:
    """The URL (http) or target (grpc) spans are sent to, following the OTel spec: the
    signal-specific endpoint as given; the generic one plus ``/v1/traces`` for HTTP."""
    grpc = settings.otlp_protocol == "grpc"
    if settings.otlp_traces_endpoint:
        return settings.otlp_traces_endpoint
    if settings.otlp_endpoint:
        return settings.otlp_endpoint if grpc else settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    return "http://localhost:4317" if grpc else "http://localhost:4318/v1/traces"


def _otlp_exporter(settings: Settings, timeout_s: float) -> tuple[SpanExporter, str]:
    ep = otlp_endpoint(settings)
    headers = dict(settings.otlp_headers)
    if settings.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=ep, insecure=not ep.startswith("https://"), headers=headers or None,
                            timeout=timeout_s), ep
    if settings.otlp_protocol == "http/json":
        return OTLPJsonExporter(ep, headers, timeout_s), ep
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=ep, headers=headers, timeout=timeout_s), ep


def _build(settings: Settings, exporter: SpanExporter | None, sync: bool,
           otlp_timeout_s: float | None, batch: bool = False) -> _Pipeline:
    from mltrace_otel import __version__

    limits = SpanLimits(max_attributes=256, max_events=4096, max_links=1024,
                        max_event_attributes=64, max_link_attributes=16, max_attribute_length=None)
    provider = TracerProvider(resource=resource_for(settings), span_limits=limits, sampler=ALWAYS_ON,
                              shutdown_on_exit=False)
    processor: object = None
    if exporter is not None:
        destination = "custom"
        counting = _CountingExporter(exporter)
        processor = (_CountingBatchProcessor(counting, max_queue_size=MAX_QUEUE_SPANS,
                                             schedule_delay_millis=SCHEDULE_DELAY_MS)
                     if batch else SimpleSpanProcessor(counting))
    elif settings.export == "none":
        destination = "none"
    else:
        otlp = None
        if settings.export == "otlp" or (settings.export == "auto" and settings.traces_endpoint):
            otlp, ep = _otlp_exporter(settings, otlp_timeout_s or OTLP_TIMEOUT_S)
            destination = f"otlp {ep}"
        else:
            destination = f"spool {settings.spool_dir}"
        delivering = DeliveringExporter(settings, otlp)
        if sync:
            processor = SimpleSpanProcessor(delivering)
        else:
            processor = _CountingBatchProcessor(delivering, max_queue_size=MAX_QUEUE_SPANS,
                                                schedule_delay_millis=SCHEDULE_DELAY_MS,
                                                max_export_batch_size=512)
    if processor is not None:
        provider.add_span_processor(processor)  # type: ignore[arg-type]
    tracer = provider.get_tracer(C.SCOPE_NAME, __version__)
    return _Pipeline(settings, provider, tracer, processor, destination)


def _install(pipeline: _Pipeline) -> _Pipeline:
    global _pipeline, _atexit_registered
    old, _pipeline = _pipeline, pipeline
    if old is not None:
        old.close()
    if not _atexit_registered:
        atexit.register(_at_exit)
        _register_fork_flush()
        _atexit_registered = True
    return pipeline


class _ForkHook:
    """Weak-referenceable anchor for multiprocessing's after-fork registry."""


_fork_hook = _ForkHook()


def _register_fork_flush() -> None:
    """multiprocessing's fork children leave through os._exit (no atexit): flush there too,
    whether the pipeline was set up before the fork or first in the child."""
    try:
        import sys
        from multiprocessing import util

        def after_fork(_: object) -> None:
            util.Finalize(None, _at_exit, exitpriority=10)

        util.register_after_fork(_fork_hook, after_fork)
        mp = sys.modules.get("multiprocessing")
        if mp is not None and mp.parent_process() is not None:  # set up inside a worker
            util.Finalize(None, _at_exit, exitpriority=10)
    except Exception:  # noqa: BLE001
        _log.debug("mltrace: cannot hook multiprocessing", exc_info=True)


def _setup() -> _Pipeline:
    with _lock:
        if _pipeline is not None:
            return _pipeline
        from mltrace_otel.sdk.config import current_settings

        return _install(_build(current_settings(), None, False, None))


def tracer() -> Tracer:
    """The SDK's tracer (set up on first use)."""
    p = _pipeline
    if p is None:
        p = _setup()
    return p.tracer


def configured_settings() -> Settings | None:
    """The settings given to :func:`configure`, if any (else the environment's are used)."""
    return _configured_settings


def configure(settings: Settings | None = None, exporter: SpanExporter | None = None, *,
              sync: bool = False, otlp_timeout_s: float | None = None, batch: bool = False) -> None:
    """Replace the export pipeline now (the old one is flushed and shut down) and zero the counts.

    Args:
        settings: settings to use instead of the environment's (spool dir, OTLP endpoint...);
            they also become what :func:`mltrace_otel.sdk.config.current_settings` returns.
        exporter: send spans to this exporter synchronously (e.g. an InMemorySpanExporter),
            instead of OTLP / the spool; with ``batch=True`` through a BatchSpanProcessor.
        sync: export each span as it ends instead of batching in the background (tests).
        otlp_timeout_s: the OTLP timeout (default :data:`OTLP_TIMEOUT_S`).
    """
    global _configured_settings, _counters
    with _lock:
        _configured_settings = settings
        _counters = _Counters()
        from mltrace_otel.sdk.config import current_settings

        _install(_build(current_settings(), exporter, sync, otlp_timeout_s, batch))


def reconfigure() -> None:
    """Rebuild the pipeline from the current settings if one is set up (after set_address)."""
    with _lock:
        if _pipeline is not None and _pipeline.destination != "custom":
            from mltrace_otel.sdk.config import current_settings

            _install(_build(current_settings(), None, False, None))


def reset() -> None:
    """Flush and drop the pipeline, forget :func:`configure`'s settings and set_address /
    set_db_uri, zero the counts and the same-process link memory; the next run sets up from the
    environment again."""
    global _pipeline, _configured_settings, _counters
    from mltrace_otel.sdk.config import clear_overrides

    clear_overrides()
    with _lock:
        old, _pipeline = _pipeline, None
        if old is not None:
            old.close()
        _configured_settings = None
        _counters = _Counters()
        for hook in _reset_hooks:
            hook()


def flush(timeout_s: float = 30.0) -> bool:
    """Export every run span emitted so far (to OTLP or the spool); True when all were handled.

    Call before opening the store in the same process, or before a process ends abruptly.
    """
    p = _pipeline
    if p is None:
        return True
    try:
        return p.flush(timeout_s)
    except Exception as e:  # noqa: BLE001
        _log.warning("mltrace: flush failed: %s", e)
        return False


def delivery_stats() -> DeliveryStats:
    """Counts of spans exported, spooled and dropped (see :class:`DeliveryStats`)."""
    p = _pipeline
    queued = p.processor.queued() if p is not None and isinstance(p.processor, _CountingBatchProcessor) \
        else 0
    c = _counters
    with c.lock:
        return DeliveryStats(c.exported, c.spooled, c.dropped, c.export_failures, queued,
                             c.last_error, p.destination if p is not None else "")


def _at_exit() -> None:
    p = _pipeline
    if p is not None:
        p.flush(OTLP_TIMEOUT_S + 10)
        p.close()
