"""A run that returned is never lost: every run span goes to the local durable queue before the
decorated call returns, and is delivered from there.

:class:`DurableProcessor` is the SDK's span processor for the OTLP and spool destinations. Its
``on_end`` runs inside the decorated call (the SDK ends the run's span before returning):
it encodes the span (:mod:`.wire`) and appends it to a segment of this process's own in the
spool directory (:mod:`mltrace_otel.spool`, one ``write``; no fsync: the page cache outlives
the process, so SIGTERM, SIGINT, kill -9, ``os._exit`` and an exception all leave the run on
disk; a power cut may not). A background thread then, every ``delay_s`` (``OTEL_BSP_SCHEDULE_DELAY``)
or once ``batch`` spans are waiting (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``, 4,096 by default rather
than the OTel SDK's 512: the runs are on disk already, and each delivery needs this process's GIL
a dozen times; while the thread waits for it, every system call of the pipeline wakes it, which
costs the pipeline's calls more than the delivery itself, so fewer, larger deliveries cost them
less, measured in ``bench/bench_sdk.py``):

- with an OTLP endpoint: sends the segment's requests as they are (:mod:`mltrace_otel.otlp_send`)
  and deletes the segment once they are accepted; when the endpoint fails, seals the segment
  for the store's drain instead (and skips OTLP for ``OTLP_RETRY_AFTER_S``);
- without one: seals the segment; any process that opens the embedded store drains it.

A process that dies leaves its open segment behind, named with its pid: the store's drain takes
segments of dead writers, and so does the next SDK process that has an OTLP endpoint (it sends
them, then deletes them), so a run reaches the store either way. Delivery is at least once: a
segment sent over OTLP whose deletion a crash prevented is sent again; the store keeps one run
per run id.

Back-pressure instead of loss: while more than ``max_pending`` spans wait for an OTLP endpoint,
``on_end`` waits for the sender (counted in ``DeliveryStats.waits``); nothing is dropped for a
full queue. Spans are dropped (and counted) only when they cannot be encoded or written (times
outside 1970-2262, a full or read-only disk, the spool over ``MLTRACE_SPOOL_MAX_MB``).

Imports settings, spool, otlp_send, the SDK's counters and the OpenTelemetry SDK.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from mltrace_otel import spool
from mltrace_otel.sdk.exporters import COUNTERS, MAX_TIME_NS, MIN_TIME_NS, OTLP_RETRY_AFTER_S
from mltrace_otel.sdk.wire import Envelope
from mltrace_otel.settings import Settings

if TYPE_CHECKING:  # http.client, email and ssl load only when something is sent
    from mltrace_otel.otlp_send import Outcome

_log = logging.getLogger("mltrace_otel.sdk")
_monotonic = time.monotonic
_time_ns = time.time_ns
_HEAD_SIZE = spool.HEAD.size

MAX_SEND_BYTES = 2 * 1024 * 1024
"""Requests are joined into one OTLP export up to this size."""
SEND_TRIES = 5
"""Tries of an export a busy endpoint answers with 429/503 before its runs stay in the spool."""
LEFTOVERS_EVERY_S = 60.0
"""How often (at most) an SDK with an OTLP endpoint looks for segments dead processes left."""

Send = Callable[[bytes, float], "Outcome"]
"""Sends serialized requests (one request, or several concatenated) within a timeout."""


class DurableProcessor(SpanProcessor):
    """Appends every ended span to the durable queue before returning, then delivers it.

    Args:
        settings: where the spool is (``spool_dir``) and its size cap.
        send: delivers requests over OTLP; None: the spool is the destination.
        delay_s: deliver at least this often.
        batch: deliver early once this many spans wait; at most half of ``max_pending``, so a
            delivery starts well before calls have to wait (a queue of the OTel SDK's 2,048
            with the default 4,096 would make every 2,048th call wait for the delivery thread).
        max_pending: with ``send``, spans waiting beyond this make ``on_end`` wait.
        timeout_s: one OTLP attempt's timeout.
        sync: deliver each span before ``on_end`` returns (tests).
    """

    def __init__(self, settings: Settings, send: Send | None, *, delay_s: float = 2.0, batch: int = 4096,
                 max_pending: int = 20_000, timeout_s: float = 4.0, sync: bool = False) -> None:
        self.settings = settings
        self.directory = settings.spool_dir
        self.send = send
        self.delay_s = max(0.001, delay_s)
        self.max_pending = max(1, max_pending)
        self.batch = max(1, min(batch, self.max_pending // 2))
        self.timeout_s = timeout_s
        self.sync = sync
        self.waits = 0
        self._envelope: tuple[Any, Any, Envelope | None] = (None, None, None)  # of the latest span
        self._cap = settings.spool_max_mb * 1024 * 1024
        self._init_state()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: (p := ref()) and p._init_state())

    def _init_state(self) -> None:
        """Fresh state (also in a forked child: the parent's open segment and pending spans are
        the parent's to deliver)."""
        self._pid = os.getpid()
        self._writer: spool.SegmentWriter | None = None
        # reentrant: COUNTERS.add may warn while it is held, and a warning hook may end a span
        self._lock = threading.RLock()  # on_end takes it bare (a C call); waits go through _cond
        self._cond = threading.Condition(self._lock)
        self._cycle_lock = threading.Lock()
        self._pending: list[bytes] = []
        self._appended = 0  # runs in the open segment
        self._last_seq = 0
        self._stopped = False
        self._skip_until = 0.0
        self._leftovers_at = 0.0
        self._spool_bytes: int | None = None
        self._spool_checked = 0.0
        self._thread: threading.Thread | None = None

    # --- the caller's side ---------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        """Encode the span and append it to this process's segment (never raises)."""
        start, end = getattr(span, "_start_time", None), getattr(span, "_end_time", None)
        if start is None or end is None or not MIN_TIME_NS <= start <= end <= MAX_TIME_NS:
            COUNTERS.add("dropped", 1, f"span {span.name!r} has times outside 1970-2262 "
                                       f"(start {span.start_time}, end {span.end_time} ns)")
            return
        try:
            resource, scope = span._resource, span._instrumentation_scope
            last = self._envelope
            if last[0] is not resource or last[1] is not scope:
                # the objects are kept with their envelope: they are what it encodes
                last = self._envelope = (resource, scope, Envelope.of(span))
            payload = last[2].request((span,))
        except Exception as e:  # noqa: BLE001 - telemetry never breaks the host program
            COUNTERS.add("dropped", 1, f"cannot encode span {span.name!r}: {e!r}")
            return
        if os.getpid() != self._pid:  # forked without the hook (e.g. os.fork in C code)
            self._init_state()
        n = len(payload)
        with self._lock:
            if self.send is not None and len(self._pending) >= self.max_pending:
                while (len(self._pending) >= self.max_pending and not self._stopped
                       and self._thread is not None and self._thread.is_alive()):
                    self.waits += 1  # back-pressure: the endpoint is slower than the pipeline
                    self._cond.notify_all()
                    self._cond.wait(0.5)
            size = self._spool_bytes
            if (size is None or size + n > self._cap or _monotonic() - self._spool_checked > 10) \
                    and not self._fits(n):
                return
            try:
                if self._writer is None:
                    spool.secure_home(self.settings.mltrace_dir)
                    self._writer = spool.SegmentWriter(self.directory, seal_on_rotate=False)
                seq = _time_ns()  # spool.next_seq(), inlined
                if seq <= self._last_seq:
                    seq = self._last_seq + 1
                self._writer.append_one(seq, 1, payload)
            except OSError as e:
                COUNTERS.add("dropped", 1, f"cannot write the spool {self.directory}: {e}")
                return
            self._last_seq = seq
            self._appended += 1
            if self._spool_bytes is not None:
                self._spool_bytes += n + _HEAD_SIZE
            if self.send is not None:
                self._pending.append(payload)
            else:
                COUNTERS.add("spooled", 1)
            if self._appended >= self.batch:
                self._cond.notify_all()
        if self.sync:
            self._cycle()
        elif self._thread is None:
            self._start_thread()

    def _fits(self, n: int) -> bool:
        """Whether the spool stays under MLTRACE_SPOOL_MAX_MB (its size read every 10 s)."""
        now = time.monotonic()
        if self._spool_bytes is None or now - self._spool_checked > 10:
            self._spool_bytes, self._spool_checked = spool.size_bytes(self.directory), now
        if self._spool_bytes + n > self._cap:
            COUNTERS.add("dropped", 1, f"spool {self.directory} is over MLTRACE_SPOOL_MAX_MB="
                                       f"{self.settings.spool_max_mb}")
            return False
        return True

    def queued(self) -> int:
        """Spans appended and not yet delivered over OTLP."""
        return len(self._pending)

    # --- delivery ------------------------------------------------------------------------------
    def _start_thread(self) -> None:
        with self._cond:
            if self._thread is not None or self._stopped:
                return
            self._thread = threading.Thread(target=self._loop, name="mltrace-deliver", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._stopped and self._appended < self.batch:
                    self._cond.wait(self.delay_s)
                stopped = self._stopped
            try:
                self._cycle()
            except Exception:  # noqa: BLE001 - the runs stay in the spool; keep delivering
                _log.warning("mltrace: delivering runs from the spool failed", exc_info=True)
            if stopped:
                return

    def _cycle(self) -> None:
        """Deliver what was appended since the last cycle (one segment), then leftovers."""
        with self._cycle_lock:
            with self._cond:
                paths = self._writer.detach() if self._writer is not None else []
                payloads, self._pending, self._appended = self._pending, [], 0
                self._cond.notify_all()
            if paths:
                self._deliver(paths, payloads)
            if self.send is not None and time.monotonic() >= self._leftovers_at:
                self._leftovers_at = time.monotonic() + LEFTOVERS_EVERY_S
                self._deliver_leftovers()

    def _deliver(self, paths: list[Any], payloads: list[bytes]) -> None:
        n = len(payloads)
        if self.send is None or time.monotonic() < self._skip_until:
            for path in paths:
                self._seal(path)
            if self.send is not None:
                COUNTERS.add("spooled", n)
            return
        error = self._send_all(payloads)
        if error is None:
            for path in paths:
                try:
                    path.unlink()
                except OSError:
                    pass
            COUNTERS.add("exported", n)
            return
        self._skip_until = time.monotonic() + OTLP_RETRY_AFTER_S
        _log.warning("mltrace: OTLP export failed (%s); %d run(s) stay in the spool %s for the store's "
                     "drain or the next process; OTLP is skipped for %.0f s", error, n, self.directory,
                     OTLP_RETRY_AFTER_S)
        COUNTERS.add("export_failures", 1, f"OTLP export failed ({error}); spooled instead")
        COUNTERS.add("spooled", n)
        for path in paths:
            self._seal(path)

    def _send_all(self, payloads: list[bytes]) -> str | None:
        """Send requests in exports of up to MAX_SEND_BYTES; None, or why it failed."""
        assert self.send is not None
        k = 0
        while k < len(payloads):
            size, j = 0, k
            while j < len(payloads) and (j == k or size + len(payloads[j]) <= MAX_SEND_BYTES):
                size += len(payloads[j])
                j += 1
            body, backoff, tries = b"".join(payloads[k:j]), 0.5, 0
            while True:
                try:
                    outcome = self.send(body, self.timeout_s)
                except Exception as e:  # noqa: BLE001 - a sender must not raise; treat as a failure
                    return f"{type(e).__name__}: {e}"
                if outcome.ok:
                    break
                tries += 1
                # a busy collector (429/503 with Retry-After) is waited for, a few times, as OTel
                # exporters do; a dead one or a refusal leaves the runs in the spool at once
                if not outcome.busy or tries >= SEND_TRIES:
                    return outcome.reason or "refused"
                time.sleep(min(outcome.retry_after if outcome.retry_after is not None else backoff, 5.0))
                backoff *= 2
            k = j
        return None

    def _seal(self, path: Any) -> None:
        try:
            spool.seal_path(path)
        except OSError as e:  # left .open: drained as a dead writer's once this process ends
            _log.warning("mltrace: cannot seal spool segment %s: %s", path, e)

    def _deliver_leftovers(self) -> None:
        """Send the segments dead processes (or failed exports) left in the spool, then delete
        them; stop at the first failure (they stay for the next try or the store's drain)."""
        for claimed in spool.claim_all(self.directory):
            try:
                entries, _ = claimed.entries()
            except OSError:
                claimed.release()
                continue
            error = self._send_all([e.payload for e in entries]) if entries else None
            if error is not None:
                claimed.release()
                self._skip_until = time.monotonic() + OTLP_RETRY_AFTER_S
                return
            claimed.done()
            COUNTERS.add("exported", sum(max(e.spans, 1) for e in entries))

    # --- lifecycle -------------------------------------------------------------------------------
    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Deliver everything appended so far, in the calling thread."""
        if os.getpid() != self._pid:
            return True
        self._cycle()
        return True

    def shutdown(self) -> None:
        if os.getpid() != self._pid:
            return
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(self.timeout_s + 30)
        self._cycle()
