"""OTLP forwarding: every span the collector accepted, sent on unchanged to other OTLP receivers.

With ``MLTRACE_FORWARD_OTLP_ENDPOINTS`` set, ``mltrace collector`` and ``mltrace server`` also
hand each accepted request to a :class:`Forwarder`, which sends its bytes as received (several
queued requests joined into one export: protobuf concatenation appends repeated fields) to
Jaeger, Tempo or another collector.

Forwarding must never slow ingest down, so each endpoint has its own sender thread and its own
queue bounded in spans: :meth:`Forwarder.submit` only appends (or drops and counts when that
endpoint's queue is full) and returns. A sender retries what :mod:`mltrace_otel.otlp_send` calls
retryable with capped exponential backoff (or the receiver's ``Retry-After``) for as long as the
request is queued, and counts refusals as failed.

Imports :mod:`mltrace_otel.otlp_send` (the senders), :mod:`mltrace_otel.settings` and
:mod:`mltrace_otel.collector.metrics`.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Sequence

from mltrace_otel.collector.metrics import CollectorMetrics
from mltrace_otel.otlp_send import GrpcSender, HttpSender, sender_for
from mltrace_otel.settings import ForwardTarget

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 2 * 1024 * 1024
"""Queued requests are joined into one export up to this size (receivers often cap at 4 MiB);
a single larger request is still sent alone."""


class _Endpoint:
    """One target: a bounded queue of requests (counted in spans) and the thread that sends it.

    ``held`` counts every span not yet settled, queued or in flight, so the bound is exact and
    memory stays bounded while the endpoint is down. Every held span ends in exactly one outcome:
    ``sent``, ``failed`` (refused, or still held when :meth:`Forwarder.stop` gave up), and a
    submit that does not fit counts ``dropped_queue_full`` without ever being held.
    """

    def __init__(self, target: ForwardTarget, queue_spans: int, metrics: CollectorMetrics,
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
        self.sender: HttpSender | GrpcSender | None = None
        self.failing_since: float | None = None
        self._last_refusal_log = 0.0
        self._refusals_unlogged = 0

    # --- accounting (callers hold self.cond) -----------------------------------------------------
    def _count(self, outcome: str, spans: int) -> None:
        if spans > 0:
            self.metrics.forwarded.labels(self.label, outcome).inc(spans)

    def _gauge(self) -> None:
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
            self.sender = sender_for(self.target, "mltrace-otel-forwarder")
        except Exception as e:  # noqa: BLE001 - e.g. TLS set-up failed: count, never raise
            log.warning("cannot forward spans to %s: %s", self.label, e)
            self.abandon()
            return
        try:
            while (batch := self._take()) is not None:
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

    def _deliver(self, body: bytes, spans: int) -> None:
        attempt = 0
        while True:
            if self.abandoned.is_set():
                return
            assert self.sender is not None
            timeout = self.request_timeout_s
            if self.deadline is not None:  # stopping: never wait past stop()'s deadline
                timeout = min(timeout, max(0.05, self.deadline - time.monotonic()))
            outcome = self.sender.send(body, timeout)
            with self.cond:
                if self.abandoned.is_set():
                    return  # stop() already counted these spans as failed
                if outcome.ok or not outcome.retryable:
                    self.held -= spans
                    self._gauge()
                    failed = min(outcome.rejected, spans) if outcome.ok else spans
                    self._count("sent", spans - failed)
                    self._count("failed", failed)
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
    """Sends every accepted OTLP trace request, unchanged, to one or more OTLP endpoints, each
    with its own sender thread and bounded queue. Counts spans in ``metrics.forwarded`` by endpoint
    (``target.label``) and outcome (``sent``, ``dropped_queue_full``, ``failed``) and sets
    ``metrics.forward_queue`` to the spans held per endpoint.

    Args:
        targets: where to send (``Settings.forward_targets``).
        queue_spans: spans held per endpoint (queued or in flight) before new ones are dropped.
        metrics: the collector's metrics.
        request_timeout_s: longest one export waits for an answer.
        backoff_s: (first, longest) delay between retries of a retryable failure.
    """

    def __init__(self, targets: Sequence[ForwardTarget], *, queue_spans: int,
                 metrics: CollectorMetrics, request_timeout_s: float = 10.0,
                 backoff_s: tuple[float, float] = (0.5, 30.0)) -> None:
        self._endpoints = [_Endpoint(t, queue_spans, metrics, request_timeout_s, backoff_s) for t in targets]
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
