"""OTLP forwarding: every span the collector accepted, sent on unchanged to other OTLP receivers.

``mltrace collector`` and ``mltrace server`` land spans in the store; with
``MLTRACE_FORWARD_OTLP_ENDPOINTS`` set they also hand each accepted request to a
:class:`Forwarder`, which sends it to Jaeger, Tempo or another collector. The request bytes are
sent as received (one serialized ``ExportTraceServiceRequest`` per submit; several queued requests
are joined into one export, which is still one valid message because protobuf concatenation
appends repeated fields), so nothing is re-encoded or lost in translation.

Forwarding must never slow ingest down, so each endpoint has its own sender thread and its own
queue bounded in spans: :meth:`Forwarder.submit` only appends (or drops and counts when that
endpoint's queue is full) and returns. A sender retries retryable failures (OTLP's list: HTTP
429/502/503/504 honouring ``Retry-After``, connection errors and timeouts; gRPC UNAVAILABLE,
RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ABORTED, …) with capped exponential backoff for as long as
the request is queued, and counts refusals (HTTP 400, gRPC INVALID_ARGUMENT, …) as failed.

Imports: the stdlib (``http.client`` for OTLP/HTTP), :mod:`mltrace_otel.settings` (ForwardTarget)
and :mod:`mltrace_otel.collector.metrics`; ``grpc`` and ``opentelemetry.proto`` only where used.
"""

from __future__ import annotations

import collections
import email.utils
import gzip
import http.client
import logging
import random
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mltrace_otel.collector.metrics import CollectorMetrics
from mltrace_otel.settings import ForwardTarget

log = logging.getLogger(__name__)

GRPC_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
"""The OTLP/gRPC trace export method."""

GZIP_MIN_BYTES = 4096
"""OTLP/HTTP bodies larger than this are sent gzip-compressed."""

MAX_BATCH_BYTES = 2 * 1024 * 1024
"""Queued requests are joined into one export up to this size (receivers often cap at 4 MiB);
a single larger request is still sent alone."""

MAX_RETRY_AFTER_S = 60.0
"""Longest ``Retry-After`` / RetryInfo delay honoured."""

_RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
_RETRYABLE_GRPC = frozenset({"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE",
                             "UNAVAILABLE", "DATA_LOSS", "RESOURCE_EXHAUSTED"})
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_OWN_HEADERS = frozenset({"content-type", "content-encoding", "content-length", "host"})


@dataclass(frozen=True)
class _Outcome:
    """What one export attempt came to."""

    ok: bool
    retryable: bool = False
    reason: str = ""
    retry_after: float | None = None
    rejected: int = 0  # spans the receiver refused in an otherwise successful answer (partial success)


def _rejected_spans(response: bytes) -> tuple[int, str]:
    """(rejected_spans, error_message) of a serialized ExportTraceServiceResponse; (0, "") if none
    or unreadable."""
    if not response:
        return 0, ""
    try:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        msg = trace_service_pb2.ExportTraceServiceResponse.FromString(response)
    except Exception:  # noqa: BLE001 - an answer we cannot read still means delivered
        return 0, ""
    return int(msg.partial_success.rejected_spans), msg.partial_success.error_message


def _retry_after(value: str | None) -> float | None:
    """Seconds from an HTTP ``Retry-After`` header (delay seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, min(float(value), MAX_RETRY_AFTER_S))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), MAX_RETRY_AFTER_S))


class _HttpSender:
    """OTLP/HTTP protobuf over one keep-alive ``http.client`` connection."""

    def __init__(self, target: ForwardTarget) -> None:
        parts = urlsplit(target.url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/v1/traces") + (f"?{parts.query}" if parts.query else "")
        self.headers = {k: v for k, v in target.headers.items() if k.lower() not in _OWN_HEADERS}
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        with self._lock:
            if self._conn is None:
                cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
                self._conn = cls(self.host, self.port, timeout=timeout)
            conn = self._conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def send(self, body: bytes, timeout: float) -> _Outcome:
        headers = {**self.headers, "Content-Type": "application/x-protobuf",
                   "User-Agent": "mltrace-otel-forwarder"}
        if len(body) > GZIP_MIN_BYTES:
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        retry_stale = True
        while True:
            conn = self._connection(timeout)
            reused = conn.sock is not None
            try:
                conn.request("POST", self.path, body=body, headers=headers)
                resp = conn.getresponse()
                answer = resp.read()
                break
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if reused and retry_stale and isinstance(e, _STALE):
                    retry_stale = False  # the server closed an idle keep-alive connection: reconnect now
                    continue
                return _Outcome(False, True, f"{type(e).__name__}: {e}".rstrip(": "))
        if resp.will_close:
            self.close()
        status = resp.status
        if 200 <= status < 300:
            rejected, message = _rejected_spans(answer)
            return _Outcome(True, reason=message, rejected=rejected)
        snippet = answer[:200].decode("utf-8", "replace").strip()
        reason = f"HTTP {status}" + (f": {snippet}" if snippet else "")
        if status in _RETRYABLE_HTTP:
            return _Outcome(False, True, reason, _retry_after(resp.getheader("Retry-After")))
        return _Outcome(False, False, reason)

    def close(self) -> None:
        """Close the connection; called from another thread it interrupts a blocked request."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is None:
            return
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        conn.close()


class _GrpcSender:
    """OTLP/gRPC: the raw request bytes through ``TraceService/Export`` (no re-encoding)."""

    def __init__(self, target: ForwardTarget) -> None:
        import grpc

        self._grpc = grpc
        # reconnect soon after the endpoint comes back (gRPC's default backoff reaches 120 s)
        options = [("grpc.initial_reconnect_backoff_ms", 500), ("grpc.max_reconnect_backoff_ms", 5000)]
        if target.tls:
            self._channel = grpc.secure_channel(target.url, grpc.ssl_channel_credentials(), options)
        else:
            self._channel = grpc.insecure_channel(target.url, options)
        self._export = self._channel.unary_unary(GRPC_METHOD, request_serializer=None,
                                                 response_deserializer=None)
        self.metadata: list[tuple[str, str | bytes]] = [
            (k.lower(), v.encode() if k.lower().endswith("-bin") else v) for k, v in target.headers.items()]

    def send(self, body: bytes, timeout: float) -> _Outcome:
        grpc = self._grpc
        try:
            answer = self._export(body, timeout=timeout, metadata=self.metadata or None)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
            name = code.name if code is not None else "UNKNOWN"
            details = e.details() if hasattr(e, "details") else ""
            reason = f"gRPC {name}" + (f": {details}" if details else "")
            if name in _RETRYABLE_GRPC:
                trailers = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
                return _Outcome(False, True, reason, _grpc_retry_delay(trailers))
            return _Outcome(False, False, reason)
        except Exception as e:  # noqa: BLE001 - e.g. metadata gRPC refuses: every call would fail
            return _Outcome(False, False, f"{type(e).__name__}: {e}")
        rejected, message = _rejected_spans(answer or b"")
        return _Outcome(True, reason=message, rejected=rejected)

    def close(self) -> None:
        """Close the channel; in-flight calls end (CANCELLED)."""
        try:
            self._channel.close()
        except Exception:  # noqa: BLE001 - closing twice / during shutdown
            pass


def _grpc_retry_delay(trailers: Any) -> float | None:
    """The ``google.rpc.RetryInfo`` delay in a failed call's status details, if any."""
    for key, value in trailers or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        try:
            from google.rpc import error_details_pb2, status_pb2

            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    d = info.retry_delay
                    return max(0.0, min(d.seconds + d.nanos / 1e9, MAX_RETRY_AFTER_S))
        except Exception:  # noqa: BLE001 - unreadable details: use our own backoff
            return None
    return None


class _Endpoint:
    """One target: a bounded queue of requests (counted in spans) and the thread that sends it.

    ``held`` counts every span not yet settled, queued or in flight, so the bound is exact and
    memory stays bounded while the endpoint is down. Every held span ends in exactly one outcome:
    ``sent``, ``failed`` (refused, or still held when :meth:`Forwarder.stop` gave up), and a
    submit that does not fit counts ``dropped_queue_full`` without ever being held.
    """

    def __init__(self, target: ForwardTarget, queue_spans: int, metrics: CollectorMetrics | None,
                 request_timeout_s: float, backoff_s: tuple[float, float]) -> None:
        self.target = target
        self.label = target.label
        self.capacity = queue_spans
        self.metrics = metrics
        self.request_timeout_s = request_timeout_s
        self.backoff_initial, self.backoff_max = backoff_s
        self.queue: collections.deque[tuple[bytes, int]] = collections.deque()
        self.held = 0
        self.cond = threading.Condition()
        self.stopping = False
        self.closed = False  # the sender is gone: nothing offered now can be sent
        self.deadline: float | None = None
        self.abandoned = threading.Event()
        self.thread: threading.Thread | None = None
        self.sender: _HttpSender | _GrpcSender | None = None
        self.failing_since: float | None = None
        self._last_refusal_log = 0.0
        self._refusals_unlogged = 0

    # --- accounting (callers hold self.cond) -----------------------------------------------------
    def _count(self, outcome: str, spans: int) -> None:
        if self.metrics is not None and spans > 0:
            self.metrics.forwarded.labels(self.label, outcome).inc(spans)

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.forward_queue.labels(self.label).set(self.held)

    # --- request thread --------------------------------------------------------------------------
    def offer(self, payload: bytes, spans: int) -> None:
        with self.cond:
            if self.closed:
                self._count("failed", spans)  # acknowledged after stop(): cannot be sent any more
                return
            if self.held + spans > self.capacity:
                self._count("dropped_queue_full", spans)
                return
            self.queue.append((payload, spans))
            self.held += spans
            self._gauge()
            self.cond.notify()

    # --- sender thread ---------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.sender = (_GrpcSender(self.target) if self.target.protocol == "grpc"
                           else _HttpSender(self.target))
        except Exception as e:  # noqa: BLE001 - e.g. TLS set-up failed: count, never raise
            log.warning("cannot forward spans to %s: %s", self.label, e)
            self.abandon()
            return
        try:
            while True:
                batch = self._take()
                if batch is None:
                    return
                self._deliver(*batch)
        except Exception:  # a bug here must not leave spans held forever: settle them as failed
            log.exception("forwarding to %s stopped", self.label)
            self.abandon()
        finally:
            self.sender.close()

    def _take(self) -> tuple[bytes, int] | None:
        """The next export: the oldest request plus those queued after it, up to MAX_BATCH_BYTES;
        None when stopping with nothing left."""
        with self.cond:
            while not self.queue and not self.stopping and not self.abandoned.is_set():
                self.cond.wait()
            if not self.queue or self.abandoned.is_set():
                self.closed = True
                return None
            payload, spans = self.queue.popleft()
            parts, size = [payload], len(payload)
            while self.queue and size + len(self.queue[0][0]) <= MAX_BATCH_BYTES:
                more, n = self.queue.popleft()
                parts.append(more)
                size += len(more)
                spans += n
        return (payload if len(parts) == 1 else b"".join(parts)), spans

    def _timeout(self) -> float:
        t = self.request_timeout_s
        if self.deadline is not None:
            t = min(t, max(0.05, self.deadline - time.monotonic()))
        return t

    def _deliver(self, body: bytes, spans: int) -> None:
        attempt = 0
        while True:
            if self.abandoned.is_set():
                return
            assert self.sender is not None
            outcome = self.sender.send(body, self._timeout())
            with self.cond:
                if self.abandoned.is_set():
                    return  # stop() already counted these spans as failed
                if outcome.ok or not outcome.retryable:
                    self.held -= spans
                    self._gauge()
                    if outcome.ok:
                        rejected = min(outcome.rejected, spans)
                        self._count("sent", spans - rejected)
                        self._count("failed", rejected)
                    else:
                        self._count("failed", spans)
            if outcome.ok:
                self._recovered()
                if outcome.rejected:
                    self._refused(f"the receiver rejected {outcome.rejected} span(s): {outcome.reason}",
                                  outcome.rejected)
                return
            if not outcome.retryable:
                self._refused(outcome.reason, spans)
                return
            self._failing(outcome.reason)
            delay = outcome.retry_after
            if delay is None:
                delay = min(self.backoff_max, self.backoff_initial * 2 ** attempt)
                delay *= random.uniform(0.8, 1.2)
            attempt += 1
            if not self._backoff(delay):
                return

    def _backoff(self, delay: float) -> bool:
        """Sleep before a retry, cut short by stop()'s deadline; False once abandoned."""
        with self.cond:
            end = time.monotonic() + delay
            while not self.abandoned.is_set():
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    # out of time: stop() is about to abandon the endpoint and count what it holds
                    self.cond.wait(0.05)
                    continue
                limit = end if self.deadline is None else min(end, self.deadline)
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    return True
                self.cond.wait(remaining)
        return False

    # --- logs: one line when an endpoint starts failing and one when it recovers -----------------
    def _failing(self, reason: str) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.warning("forwarding spans to %s is failing (%s); retrying while they are queued "
                        "(up to %d spans, then new spans are dropped)", self.label, reason, self.capacity)

    def _recovered(self) -> None:
        if self.failing_since is not None:
            log.info("forwarding spans to %s recovered after %.1f s", self.label,
                     time.monotonic() - self.failing_since)
            self.failing_since = None

    def _refused(self, reason: str, spans: int) -> None:
        """A non-retryable failure: WARNING, at most one line a minute per endpoint."""
        now = time.monotonic()
        self._refusals_unlogged += spans
        if now - self._last_refusal_log >= 60.0 or self._last_refusal_log == 0.0:
            log.warning("forwarding spans to %s: %d span(s) not delivered, the endpoint refused them "
                        "(%s); not retried", self.label, self._refusals_unlogged, reason)
            self._last_refusal_log = now
            self._refusals_unlogged = 0

    # --- stop ------------------------------------------------------------------------------------
    def begin_stop(self, deadline: float) -> None:
        with self.cond:
            self.stopping = True
            self.deadline = deadline
            self.cond.notify_all()

    def abandon(self) -> int:
        """Give up: count every held span as failed, interrupt a blocked send; the spans counted."""
        with self.cond:
            if self.abandoned.is_set():
                return 0
            self.abandoned.set()
            self.closed = True
            lost, self.held = self.held, 0
            self.queue.clear()
            self._count("failed", lost)
            self._gauge()
            self.cond.notify_all()
        if self.sender is not None:
            self.sender.close()
        return lost


class Forwarder:
    """Sends every accepted OTLP trace request, unchanged, to one or more OTLP endpoints.

    One sender thread and one bounded queue per endpoint, so a slow or dead endpoint affects
    neither ingest nor the other endpoints. Counts spans in ``metrics.forwarded`` by endpoint
    (``target.label``) and outcome (``sent``, ``dropped_queue_full``, ``failed``) and sets
    ``metrics.forward_queue`` to the spans held per endpoint.

    Args:
        targets: where to send (``Settings.forward_targets``).
        queue_spans: spans held per endpoint (queued or in flight) before new ones are dropped.
        metrics: the collector's metrics, or None to count nothing.
        request_timeout_s: longest one export waits for an answer.
        backoff_s: (first, longest) delay between retries of a retryable failure.
    """

    def __init__(self, targets: Sequence[ForwardTarget], *, queue_spans: int,
                 metrics: CollectorMetrics | None = None, request_timeout_s: float = 10.0,
                 backoff_s: tuple[float, float] = (0.5, 30.0)) -> None:
        self.targets = tuple(targets)
        self._endpoints = [_Endpoint(t, queue_spans, metrics, request_timeout_s, backoff_s)
                           for t in self.targets]
        self._started = False
        self._stopped = False

    def start(self) -> None:
        """Start one sender thread per endpoint (requests submitted before are kept and sent)."""
        if self._started or self._stopped:
            return
        self._started = True
        for i, ep in enumerate(self._endpoints):
            ep.thread = threading.Thread(target=ep.run, name=f"mltrace-forward-{i}", daemon=True)
            ep.thread.start()
        if self._endpoints:
            log.info("forwarding received spans to %s",
                     ", ".join(f"{ep.label} ({ep.target.protocol})" for ep in self._endpoints))

    def submit(self, payload: bytes, spans: int) -> None:
        """Queue one serialized ExportTraceServiceRequest holding ``spans`` accepted spans for
        every endpoint. Never blocks and never raises: an endpoint whose queue cannot take the
        spans drops them and counts ``dropped_queue_full``."""
        if spans <= 0 or not payload:
            return
        for ep in self._endpoints:
            try:
                ep.offer(payload, spans)
            except Exception:  # noqa: BLE001 - forwarding must never break ingest
                log.debug("forward submit failed for %s", ep.label, exc_info=True)

    def flush(self, timeout: float) -> bool:
        """Wait until every endpoint holds nothing (all sent, or settled as failed); True if in
        time. For tests and embedding code; :meth:`stop` is what a shutdown calls."""
        deadline = time.monotonic() + timeout
        for ep in self._endpoints:
            while True:
                with ep.cond:
                    if ep.held == 0:
                        break
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
        return True

    def stop(self, timeout: float) -> None:
        """Send what is queued for up to ``timeout`` seconds, then count what is left as
        ``failed`` and return, also when an endpoint hangs (its blocked request is interrupted).
        Submits after this count as ``failed``. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + max(0.0, timeout)
        for ep in self._endpoints:
            ep.begin_stop(deadline)
        for ep in self._endpoints:
            if ep.thread is not None:
                ep.thread.join(max(0.0, deadline - time.monotonic()))
        for ep in self._endpoints:
            if ep.thread is None or ep.thread.is_alive():
                n = ep.abandon()
                if n:
                    log.warning("forwarding: %d span(s) for %s were not sent before shutdown",
                                n, ep.label)
        for ep in self._endpoints:  # interrupted senders end promptly; never wait past a moment
            if ep.thread is not None and ep.thread.is_alive():
                ep.thread.join(0.2)
