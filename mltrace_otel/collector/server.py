"""Running the collector: the :class:`Collector` object (receivers, queue, indexer, metrics) over
an open store. The processes ``mltrace collector`` and ``mltrace server`` (the collector plus the
UI and the query API they announce) are composed above it, in :mod:`mltrace_otel.server`.

Imports: settings, errors, store (``open_store``), the collector modules, the store metrics.
Never the Dash app or the query API: the collector depends on neither.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mltrace_otel.collector.grpc_server import GrpcReceiver
from mltrace_otel.collector.http_server import TRACES_PATH, OTLPHTTPServer
from mltrace_otel.collector.metrics import CollectorMetrics
from mltrace_otel.collector.pipeline import MAX_BATCH_ROWS, IngestQueue
from mltrace_otel.collector.receiver import Exporter
from mltrace_otel.errors import ConfigError
from mltrace_otel.settings import Settings, mask_url
from mltrace_otel.store import journal, writer
from mltrace_otel.store.indexer import Indexer
from mltrace_otel.store.metrics_queries import engine_memory

if TYPE_CHECKING:  # types only
    from mltrace_otel.store.core import Store

log = logging.getLogger("mltrace_otel.collector")

GROUP_FACTOR = 1.25
"""Under the journaled acknowledgement an index insert takes at most this many times
``MLTRACE_INDEX_SPANS``: a backlog is indexed in inserts of that size, not in one big one. Each
insert holds engine memory in proportion to its spans (two run side by side), so this bounds
the collector's peak: 1.1-1.2 GiB at 1.25 against 1.6-1.7 GiB at 2.5, at about the same rate
(docs/benchmarks.md)."""


@dataclass(frozen=True)
class Addresses:
    """Where a started collector listens (real ports, also when 0 was asked for)."""

    host: str
    http_port: int
    grpc_port: int | None

    @property
    def _host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def http_url(self) -> str:
        """Base URL of the OTLP/HTTP receiver (append /v1/traces, or use as OTLP endpoint)."""
        return f"http://{self._host}:{self.http_port}"

    @property
    def traces_url(self) -> str:
        """Full OTLP/HTTP traces URL."""
        return self.http_url + TRACES_PATH

    @property
    def grpc_target(self) -> str | None:
        """``host:port`` of the OTLP/gRPC receiver (None when gRPC is off)."""
        return None if self.grpc_port is None else f"{self._host}:{self.grpc_port}"


class Collector:
    """OTLP/HTTP + OTLP/gRPC receivers, a bounded queue and one writer into a store.

    Args:
        settings: host, ports (0 = any free port), token, limits, batch sizes.
        store: an open store to write into; when None, :meth:`start` opens the one the
            settings name (and :meth:`stop` closes it).
        grpc: serve OTLP/gRPC too.
        ack_timeout_s: longest a request waits for its batch's commit before a 503.
        stall_s: an insert running longer than this makes new requests 503.
        drain_every_s: drain the local spool this often when idle (0 = never).
        linger_s: group commit: close a batch early when the inserter is idle and no request
            came for this long (None: only batch_rows / batch_delay_s close a batch).
        native_min_spans: batches of at least this many spans are rendered by the engine
            (tests: 0 always, a huge number never); None: :func:`.writer.engine_min_spans`.
    """

    def __init__(self, settings: Settings, store: Store | None = None, *, grpc: bool = True,
                 ack_timeout_s: float = 30.0, stall_s: float = 10.0, drain_every_s: float = 2.0,
                 linger_s: float | None = 0.005, native_min_spans: int | None = None) -> None:
        self.settings = settings
        auto = writer.engine_min_spans(settings)  # None: never the engine (a cluster, or turned off)
        self.min_engine_spans = auto if native_min_spans is None or auto is None else native_min_spans
        self.store = store
        self._own_store = store is None
        self._grpc_enabled = grpc
        self.ack_timeout_s = ack_timeout_s
        self.stall_s = stall_s
        self.drain_every_s = drain_every_s
        self.linger_s = linger_s
        self.metrics = CollectorMetrics()
        self._engine_memory_failed = False  # warned once that the engine did not report its memory
        self.queue: IngestQueue | None = None
        self.forwarder: Any = None  # a .forward.Forwarder when settings.forward_targets
        self._http: OTLPHTTPServer | None = None
        self._grpc: GrpcReceiver | None = None
        self.addresses: Addresses | None = None
        self._started = False
        self._stopped = False
        self._clean = True

    # --- life cycle ------------------------------------------------------------------------------
    def start(self) -> Addresses:
        """Open the store (if needed), bind both ports, start serving; the real addresses.

        Raises:
            StoreUnavailable: the store cannot be opened.
            ConfigError: a port cannot be bound.
        """
        s = self.settings
        if s.journaled_ack and not s.is_embedded:
            # several collectors share a server's journal table, and each would recover (and
            # drop) what the others journaled and still hold: one journal, one collector
            raise ConfigError("MLTRACE_ACK=journaled needs the embedded store; a ClickHouse server "
                              "is shared by several collectors",
                              hint="unset MLTRACE_ACK (indexed is the default on a server)")
        if self.store is None:
            from mltrace_otel.store import open_store

            self.store = open_store(s, index_journal=False)  # the indexer recovers the journal
        try:
            # the one writer into the store: it indexes the journal in big groups (journaled
            # acknowledgement), or as soon as a batch is journaled (indexed: the batch waits)
            jr = journal.for_store(self.store)
            if s.journaled_ack:
                indexer = Indexer(self.store, jr, min_spans=s.index_spans, delay_s=s.batch_delay_s,
                                  stall_s=max(30.0, 3 * self.stall_s),
                                  group_spans=int(GROUP_FACTOR * s.index_spans),
                                  min_engine_spans=self.min_engine_spans, metrics=self.metrics)
            else:
                indexer = Indexer(self.store, jr, min_spans=1, delay_s=0.0, stall_s=self.stall_s,
                                  group_spans=MAX_BATCH_ROWS, min_engine_spans=self.min_engine_spans,
                                  metrics=self.metrics)
            self.queue = IngestQueue(
                self.store, indexer, answer_when_indexed=not s.journaled_ack,
                batch_rows=s.batch_rows, batch_delay_s=s.batch_delay_s,
                queue_spans=s.queue_spans, stall_s=self.stall_s, drain_every_s=self.drain_every_s,
                linger_s=self.linger_s, metrics=self.metrics)
            if s.forward_targets:
                from mltrace_otel.collector.forward import Forwarder

                self.forwarder = Forwarder(s.forward_targets, queue_spans=s.forward_queue_spans,
                                           metrics=self.metrics)
            exporter = Exporter(self.queue, self.metrics, max_body_bytes=s.max_body_bytes,
                                ack_timeout_s=self.ack_timeout_s, token=s.token,
                                forward=self.forwarder.submit if self.forwarder is not None else None)
            try:  # runs, durations, staleness ... read from the store: the collector runs without them
                from mltrace_otel.metrics import register_store_metrics

                register_store_metrics(self.metrics.registry, self.store, s)
            except Exception as e:  # noqa: BLE001 - optional feature, logged
                log.warning("store metrics are not available: %s", e)
            try:
                self._http = OTLPHTTPServer((s.host, s.otlp_http_port), exporter, self.metrics_body)
            except OSError as e:
                raise ConfigError(f"cannot bind OTLP/HTTP on {s.host}:{s.otlp_http_port}: {e.strerror or e}",
                                  hint="choose another --http-port / MLTRACE_OTLP_HTTP_PORT") from None
            grpc_port = None
            if self._grpc_enabled:
                try:
                    self._grpc = GrpcReceiver(s.host, s.otlp_grpc_port, exporter)
                except OSError as e:
                    raise ConfigError(f"cannot bind OTLP/gRPC on {s.host}:{s.otlp_grpc_port}: {e}",
                                      hint="choose another --grpc-port / MLTRACE_OTLP_GRPC_PORT") from None
                grpc_port = self._grpc.port
            self.queue.start()
            if self.forwarder is not None:
                self.forwarder.start()
            threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.2},
                             name="mltrace-collector-http", daemon=True).start()
            if self._grpc is not None:
                self._grpc.start()
        except BaseException:
            self._stopped = True  # stop() is then a no-op: nothing was serving
            self._teardown(failed=True)
            raise
        self._started = True
        self.addresses = Addresses(s.host, self._http.server_address[1], grpc_port)
        return self.addresses

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, commit everything queued, answer in-flight requests, close -- all
        within ``timeout`` seconds (default ``settings.stop_grace_s``), even when the store
        cannot be written: journaled spans not yet indexed then stay in the journal and are
        indexed at the next start; requests not yet journaled are answered 503 (the client
        retries them). Safe to call twice. Closes the store only when :meth:`start` opened it.
        """
        if self._stopped or not self._started:
            return
        self._stopped = True
        timeout = self.settings.stop_grace_s if timeout is None else timeout
        deadline = time.monotonic() + timeout

        def left(reserve: float = 0.0) -> float:
            return max(0.0, deadline - time.monotonic() - reserve)

        grpc_done = None
        if self._http is not None:
            self._http.stopping.set()
            self._http.shutdown()  # no new connections; keep-alive ones get 503 + close
        if self._grpc is not None:
            grpc_done = self._grpc.stop(grace=left())
        finished = True
        if self.queue is not None:
            finished = self.queue.stop(left(1.0))
            if not finished:
                log.error("the store did not take the queued spans within %g s; stopping anyway: "
                          "journaled spans are indexed when the collector starts again, the others "
                          "were answered 503 and are retried by their clients", timeout)
        if self._http is not None:
            self._http.wait_idle(min(5.0, left()))
        if grpc_done is not None:
            grpc_done.wait(min(5.0, left()))
        if self.forwarder is not None:  # last: every answered request has been handed to it
            self.forwarder.stop(min(5.0, left()))
        self._teardown(close_store=finished)

    def stop_clean(self) -> bool:
        """:meth:`stop`, then whether every writer finished (so the store may be closed: a
        writer still stuck in a stalled store holds its connection)."""
        self.stop()
        return self._clean

    def _teardown(self, failed: bool = False, close_store: bool = True) -> None:
        self._clean = close_store
        if self._http is not None:
            self._http.server_close()
        if failed and self._grpc is not None:
            self._grpc.stop(grace=0)
        if failed and self.queue is not None:
            self.queue.stop(5.0)
        if failed and self.forwarder is not None:
            self.forwarder.stop(1.0)
        # a writer still stuck in a stalled store holds its connection: closing the store under
        # it could wait as long; the process is exiting anyway
        if self._own_store and self.store is not None and close_store:
            self.store.close()
            self.store = None

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every request answered so far is queryable (journaled acknowledgement:
        indexed); True if in time. Tests and embedding code call it before reading back."""
        return self.queue is None or self.queue.flush(timeout)

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- /metrics --------------------------------------------------------------------------------
    def metrics_body(self) -> tuple[bytes, str]:
        """The registry in Prometheus text format, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self.store is not None and self.settings.is_embedded:
            try:  # the engine is in this process: its memory is the collector's
                mem = engine_memory(self.store)
            except Exception as e:  # noqa: BLE001 - the other series are still served
                self.metrics.engine_memory.clear()  # no stale values: left out until a read works
                if not self._engine_memory_failed:
                    self._engine_memory_failed = True
                    log.warning("the engine did not report its memory (%s): "
                                "mltrace_collector_engine_memory_bytes is left out meanwhile", e)
            else:
                for kind in ("tracked", "allocated", "resident"):
                    self.metrics.engine_memory.labels(kind).set(getattr(mem, kind))
        return generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST

    def describe(self) -> str:
        """One line naming every address and the store (password masked)."""
        a = self.addresses
        if a is None:
            return "collector not started"
        parts = [f"OTLP/HTTP {a.traces_url}"]
        if a.grpc_target:
            parts.append(f"OTLP/gRPC {a.grpc_target}")
        parts.append(f"metrics {a.http_url}/metrics")
        url = getattr(self.store, "url", None) or self.settings.resolved_store_url
        parts.append(f"store {mask_url(url)}")
        if self.settings.token:
            parts.append("bearer token required")
        return ", ".join(parts)


# --- entry points --------------------------------------------------------------------------------

def setup_logging() -> None:
    """INFO lines of mltrace's own loggers on stderr (a process that configured logging keeps
    its handlers; only mltrace's level is raised to INFO)."""
    root = logging.getLogger()
    ours = logging.getLogger("mltrace_otel")
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    elif ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)


class StopSignals:
    """SIGTERM/SIGINT set :attr:`stop` from the moment this is entered (before anything starts,
    so a signal during start-up is not lost or fatal); the old handlers come back on exit."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, lambda signum, frame: self.stop.set())
        return self

    def wait(self) -> None:
        """Block until a signal arrives."""
        while not self.stop.wait(1.0):
            pass

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
