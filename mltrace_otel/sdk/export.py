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

A run that returned is never lost (:mod:`.durable`): each run span is appended to this process's
segment of the durable queue in ``MLTRACE_DIR/spool`` before the decorated call returns (one
``write``: it survives SIGTERM, kill -9 and ``os._exit``), and delivered from there by a
background thread: sent to the OTLP endpoint (then deleted), or sealed for the store's drain.
A batch the OTLP endpoint refuses, or that cannot reach it within :data:`OTLP_TIMEOUT_S`, stays
in the spool instead; after a failure OTLP is skipped for :data:`OTLP_RETRY_AFTER_S` so a dead
endpoint costs one timeout, not one per batch (nor minutes at shutdown). Above
``MLTRACE_SPOOL_MAX_MB`` the spool takes nothing more and the spans are counted as dropped.
Every span is counted (:func:`delivery_stats`); the first drop issues a RuntimeWarning.
:func:`flush` delivers what is waiting; it also runs at interpreter exit.

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

Imports: settings, conventions, spool, otlp_send and opentelemetry only.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, Tracer, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from mltrace_otel import conventions as C
from mltrace_otel.sdk.courier import OTLP_RETRY_AFTER_S
from mltrace_otel.sdk.durable import DurableProcessor, Send
from mltrace_otel.sdk.exporters import (
    COUNTERS,
    BatchProcessor,
    CountingExporter,
)
from mltrace_otel.settings import Settings

__all__ = ["DeliveryStats", "configure", "reset", "flush", "delivery_stats", "tracer", "add_span_processor",
           "count_unreadable_file",
           "OTLP_TIMEOUT_S", "OTLP_RETRY_AFTER_S", "MAX_QUEUE_SPANS", "SCHEDULE_DELAY_MS"]

_log = logging.getLogger("mltrace_otel.sdk")

OTLP_TIMEOUT_S = 4.0
"""Seconds one OTLP export may take (retries included) before its batch goes to the spool."""
MAX_QUEUE_SPANS = 20_000
"""Runs waiting for the OTLP endpoint beyond which a decorated call waits for it (back-pressure;
with a test exporter and ``batch=True``, new spans are dropped and counted instead)."""
SCHEDULE_DELAY_MS = 2000
"""How often the background thread delivers what was appended."""


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
        unreadable_files: pointers naming a local file that got no content version because it
            could not be read (vanished, no permission, a FIFO or device); each path is also
            logged once as a WARNING.
        waits: decorated calls that waited for the OTLP endpoint to catch up (back-pressure:
            more than MAX_QUEUE_SPANS runs were waiting to be sent); nothing is dropped for that.
    """

    exported: int = 0
    spooled: int = 0
    dropped: int = 0
    export_failures: int = 0
    queued: int = 0
    last_error: str = ""
    destination: str = ""
    unreadable_files: int = 0
    waits: int = 0

    @property
    def delivered(self) -> int:
        """Spans that reached an endpoint or the spool."""
        return self.exported + self.spooled


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
_extra_processors: list[SpanProcessor] = []
_unreadable_lock = threading.Lock()
_unreadable_files = 0


def count_unreadable_file() -> None:
    """Count one pointer whose local file could not be read for its version (see
    :mod:`mltrace_otel.sdk.files`); reported as ``delivery_stats().unreadable_files``."""
    global _unreadable_files
    with _unreadable_lock:
        _unreadable_files += 1


def _zero_unreadable_files() -> None:
    global _unreadable_files
    with _unreadable_lock:
        _unreadable_files = 0


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


def _otlp_sender(settings: Settings) -> tuple[Send, str]:
    """What sends the durable queue's requests to the configured OTLP endpoint, and its URL."""
    from mltrace_otel.otlp_send import exporter_sender

    ep = otlp_endpoint(settings)
    return exporter_sender(settings.otlp_protocol, ep, dict(settings.otlp_headers)).send, ep


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
        counting = CountingExporter(exporter)
        processor = (BatchProcessor(counting, MAX_QUEUE_SPANS, SCHEDULE_DELAY_MS / 1000)
                     if batch else SimpleSpanProcessor(counting))
    elif settings.export == "none":
        destination = "none"
    else:
        send = None
        endpoint = None
        destination = f"spool {settings.spool_dir}"
        if settings.export == "otlp" or (settings.export == "auto" and settings.traces_endpoint):
            try:
                send, ep = _otlp_sender(settings)
                endpoint = (settings.otlp_protocol, ep, dict(settings.otlp_headers))
                destination = f"otlp {ep}"
            except ImportError as e:  # OTLP/gRPC without the grpc extra: never break the pipeline
                from mltrace_otel.errors import missing_extra

                _log.warning("mltrace: %s; runs are kept in the spool %s", missing_extra(
                    f"OTLP/{settings.otlp_protocol} export", "grpc", e.name), settings.spool_dir)
        # OTEL_BSP_*: the OTel spec's batch span processor settings, for the same jobs here
        processor = DurableProcessor(settings, send, endpoint=endpoint,
                                     delay_s=settings.bsp_schedule_delay_ms / 1000,
                                     batch=settings.bsp_max_export_batch_size,
                                     max_pending=settings.bsp_max_queue_size,
                                     timeout_s=(otlp_timeout_s or settings.bsp_export_timeout_ms / 1000
                                                or OTLP_TIMEOUT_S),
                                     sync=sync)
    if processor is not None:
        provider.add_span_processor(processor)  # type: ignore[arg-type]
    for extra in _extra_processors:
        provider.add_span_processor(_Borrowed(extra))
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


class _Borrowed(SpanProcessor):
    """Forwards spans to a processor the SDK does not own (never shuts it down)."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.inner.on_end(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def add_span_processor(processor: SpanProcessor) -> None:
    """Also hand every run span to ``processor`` (e.g. in-process metrics).

    It stays attached when the pipeline is rebuilt (configure, set_address) and is dropped by
    :func:`reset`; the SDK never shuts it down.
    """
    with _lock:
        _extra_processors.append(processor)
        if _pipeline is not None:
            _pipeline.provider.add_span_processor(_Borrowed(processor))


def has_added_processors() -> bool:
    """Whether :func:`add_span_processor` added a processor whose ``on_start`` may read a run's
    attributes (runs then start with them; one that declares ``reads_start_attributes = False``,
    like mltrace's metrics processor, does not count)."""
    return bool(_extra_processors) and any(getattr(p, "reads_start_attributes", True)
                                           for p in _extra_processors)


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
    global _configured_settings
    with _lock:
        _configured_settings = settings
        COUNTERS.reset()
        _zero_unreadable_files()
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
    global _pipeline, _configured_settings
    from mltrace_otel.sdk.config import clear_overrides

    clear_overrides()
    with _lock:
        old, _pipeline = _pipeline, None
        if old is not None:
            old.close()
        _configured_settings = None
        _extra_processors.clear()
        COUNTERS.reset()
        _zero_unreadable_files()
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
    proc = p.processor if p is not None else None
    queued = proc.queued() if isinstance(proc, (BatchProcessor, DurableProcessor)) else 0
    waits = proc.waits if isinstance(proc, DurableProcessor) else 0
    c = COUNTERS
    with c.lock:
        return DeliveryStats(c.exported, c.spooled, c.dropped, c.export_failures, queued,
                             c.last_error, p.destination if p is not None else "", _unreadable_files, waits)


def _at_exit() -> None:
    p = _pipeline
    if p is not None:
        try:
            p.flush(OTLP_TIMEOUT_S + 10)
            p.close()
        except KeyboardInterrupt:  # Ctrl-C while the endpoint is slow: the runs are on disk
            _log.warning("mltrace: interrupted while delivering at exit; the runs not sent stay in the "
                         "spool %s (sent by the next process or taken by the store's drain)",
                         p.settings.spool_dir)
