"""A run that returned is never lost: every run span goes to the local durable queue before the
decorated call returns, and is delivered from there.

:class:`DurableProcessor` is the SDK's span processor for the OTLP and spool destinations. Its
``on_end`` runs inside the decorated call (the SDK ends the run's span before returning):
it encodes the span (:mod:`.wire`) and appends it to a segment of this process's own in the
spool directory (:mod:`mltrace_otel.spool`, one ``write``; no fsync: the page cache outlives
the process, so SIGTERM, SIGINT, kill -9, ``os._exit`` and an exception all leave the run on
disk; a power cut may not). Then, every ``delay_s`` (``OTEL_BSP_SCHEDULE_DELAY``) or once
``batch`` runs wait (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``, 4,096 by default rather than the OTel
SDK's 512: the runs are on disk already, so fewer, larger deliveries lose nothing):

- with an OTLP endpoint: the process's **courier** (:mod:`.courier`, a process of its own,
  started at the first run; ``MLTRACE_DELIVERY=thread`` or a platform without it: a thread of
  this process) sends the segment's requests as they are (:mod:`mltrace_otel.otlp_send`) and
  deletes the segment once they are accepted; when the endpoint fails, it seals the segment for
  the store's drain instead (and skips OTLP for ``OTLP_RETRY_AFTER_S``). Every ``batch`` runs
  this process starts a new segment, so the courier can delete the sent ones. A thread would
  cost the calls more than the delivery does (:mod:`.courier` says why);
- without one: a thread seals the segment; any process that opens the embedded store drains it.

A process that dies leaves its open segment behind, named with its pid: its courier sends it (it
notices the death), the store's drain takes segments of dead writers, and so does the next SDK
process that has an OTLP endpoint (it sends them, then deletes them), so a run reaches the store
either way. Delivery is at least once: a segment sent over OTLP whose deletion a crash prevented
is sent again; the store keeps one run per run id.

Back-pressure instead of loss: while more than ``max_pending`` runs wait for an OTLP endpoint
that answers, ``on_end`` waits for the delivery (counted in ``DeliveryStats.waits``); nothing is
dropped for a full queue. Spans are dropped (and counted) only when they cannot be encoded or
written (times outside 1970-2262, a full or read-only disk, the spool over
``MLTRACE_SPOOL_MAX_MB``).

Imports settings, spool, otlp_send, the courier, the SDK's counters and the OpenTelemetry SDK.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from mltrace_otel import spool
from mltrace_otel.sdk import courier
from mltrace_otel.sdk.courier import LEFTOVERS_EVERY_S, OTLP_RETRY_AFTER_S, Send, deliver_leftovers, send_all
from mltrace_otel.sdk.exporters import COUNTERS, MAX_TIME_NS, MIN_TIME_NS
from mltrace_otel.sdk.wire import Envelope
from mltrace_otel.settings import Settings

_log = logging.getLogger("mltrace_otel.sdk")
_monotonic = time.monotonic
_time_ns = time.time_ns
_HEAD_SIZE = spool.HEAD.size
COURIER_RESTART_S = 30.0
"""A courier that dies is replaced if it ran at least this long; else delivery falls back to a
thread of this process (a courier that cannot run here would die again)."""
STALL_S = 60.0
"""Back-pressure waits at most this long for a courier that delivers nothing (the runs are on
disk: a stuck courier must not stop the pipeline)."""


class DurableProcessor(SpanProcessor):
    """Appends every ended span to the durable queue before returning, then delivers it.

    Args:
        settings: where the spool is (``spool_dir``), its size cap, and ``delivery`` (a courier
            process or a thread).
        send: delivers requests over OTLP from this process; None: the spool is the destination.
        endpoint: the same OTLP endpoint for a courier (``protocol``, ``endpoint``, ``headers``
            of :class:`~.courier.Config`); None: no courier (a thread delivers with ``send``).
        delay_s: deliver at least this often.
        batch: deliver early once this many spans wait; at most half of ``max_pending``, so a
            delivery starts well before calls have to wait (a queue of the OTel SDK's 2,048
            with the default 4,096 would make every 2,048th call wait for the delivery).
        max_pending: with ``send``, spans waiting beyond this make ``on_end`` wait.
        timeout_s: one OTLP attempt's timeout.
        sync: deliver each span before ``on_end`` returns, from this thread (tests).
    """

    def __init__(self, settings: Settings, send: Send | None, *,
                 endpoint: tuple[str, str, dict[str, str]] | None = None, delay_s: float = 2.0,
                 batch: int = 4096, max_pending: int = 20_000, timeout_s: float = 4.0,
                 sync: bool = False) -> None:
        self.settings = settings
        self.directory = settings.spool_dir
        self.send = send
        self.endpoint = endpoint if (send is not None and not sync and settings.delivery == "process"
                                     and courier.supported()) else None
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
        """Fresh state (also in a forked child: the parent's open segment, pending spans and
        courier are the parent's to deliver)."""
        old = getattr(self, "_courier", None)
        if old is not None:
            old.abandon()
        self._pid = os.getpid()
        self._writer: spool.SegmentWriter | None = None
        # reentrant: COUNTERS.add may warn while it is held, and a warning hook may end a span
        self._lock = threading.RLock()  # on_end takes it bare (a C call); waits go through _cond
        self._cond = threading.Condition(self._lock)
        self._cycle_lock = threading.Lock()
        self._pending: list[bytes] = []  # thread delivery: the requests appended since the last
        self._appended = 0  # runs in the open segment
        self._last_seq = 0
        self._stopped = False
        self._skip_until = 0.0
        self._leftovers_at = 0.0
        self._spool_bytes: int | None = None
        self._spool_checked = 0.0
        self._thread: threading.Thread | None = None
        self._courier: courier.Courier | None = None
        self._courier_at = 0.0
        self._acked = courier.Acks()  # the courier's report, as counted in COUNTERS
        self._closed: deque[tuple[Path, int]] = deque()  # courier: closed segments, their runs
        self._closed_runs = 0
        self._sent_seq = 0  # the highest Seq a courier reported sent
        self._progress_at = 0.0  # when a closed segment was last found delivered
        self._handover: list[Path] = []  # segments the thread delivers from _pending (see _to_thread)

    # --- the caller's side ---------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        """Encode the span and append it to this process's segment (never raises)."""
        try:
            start, end = span._start_time, span._end_time
        except AttributeError:  # not the SDK's ReadableSpan
            start = end = None
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
            if self.send is not None and (self._appended + self._closed_runs if self.endpoint is not None
                                          else len(self._pending)) >= self.max_pending:
                try:  # (the test is _waiting(), inlined)
                    self._wait_for_delivery()
                except Exception:  # noqa: BLE001 - the run is appended all the same: never lost here
                    _log.warning("mltrace: waiting for the delivery failed", exc_info=True)
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
            if self.endpoint is not None:
                if self._appended >= self.batch:
                    try:
                        self._next_segment()
                    except Exception:  # noqa: BLE001 - the run is on disk; the courier finds it
                        _log.warning("mltrace: closing the spool segment failed", exc_info=True)
            else:
                if self.send is not None:
                    self._pending.append(payload)
                else:
                    COUNTERS.add("spooled", 1)
                if self._appended >= self.batch:
                    self._cond.notify_all()
        if self.sync:
            self._cycle()
        elif self._thread is None and self._courier is None:
            self._start_delivery()

    def _waiting(self) -> int:
        """Runs appended and not yet delivered (for the courier: runs in segments it has not
        deleted yet, the open one counted whole)."""
        if self.endpoint is None:
            return len(self._pending)
        return self._appended + self._closed_runs

    def _wait_for_delivery(self) -> None:
        """Back-pressure (the lock held): wait while ``max_pending`` runs wait for an endpoint
        that answers; a failing one is not waited for (the runs go to the spool)."""
        while self._waiting() >= self.max_pending and not self._stopped:
            if self.endpoint is None:
                if self._thread is None or not self._thread.is_alive():
                    return
                self.waits += 1  # the endpoint is slower than the pipeline
                self._cond.notify_all()
                self._cond.wait(0.5)
                continue
            c = self._courier
            if c is None:
                return
            alive = c.poll()
            self._count_acks()
            before = self._closed_runs
            self._forget_sent()
            if self._closed_runs < before:
                self._progress_at = time.monotonic()
            if not alive or c.acks.failing or self._waiting() < self.max_pending:
                return  # a dead courier is replaced at the next segment; a failing one seals
            if time.monotonic() - self._progress_at > STALL_S:  # the runs are on disk: go on
                _log.warning("mltrace: the delivery process sent nothing for %.0f s; not waiting for "
                             "it (the runs stay in the spool %s)", STALL_S, self.directory)
                self._progress_at = time.monotonic()
                return
            self.waits += 1  # the endpoint is slower than the pipeline
            c.poll(0.5)  # the courier reports after each delivery

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
        with self._lock:
            if self._courier is not None:
                self._courier.poll()
                self._count_acks()
                self._forget_sent()
            return self._waiting()

    # --- delivery by a courier -------------------------------------------------------------------
    def _next_segment(self) -> None:
        """(The lock held.) Close the open segment, so the courier can delete it once sent; look
        at the courier's reports and health."""
        assert self._writer is not None
        paths = self._writer.detach()
        for path in paths:  # (more than one when a Seq slot ended the first): counted on the newest
            self._closed.append((path, self._appended if path is paths[-1] else 0))
        self._closed_runs += self._appended
        self._appended = 0
        c = self._courier
        if c is not None:
            if paths:
                c.send_line(f"C {paths[-1].name}\n".encode())  # a hint: it may delete it once sent
            if c.poll() and c.alive():
                self._count_acks()
                self._forget_sent()
            else:
                self._courier_died()

    def _forget_sent(self) -> None:
        """Drop the closed segments the courier has deleted (sent) or sealed (for the drain)."""
        if self._closed:
            kept = deque(pn for pn in self._closed if pn[0].exists())
            if len(kept) != len(self._closed):
                self._closed, self._closed_runs = kept, sum(n for _, n in kept)

    def _count_acks(self) -> None:
        """Add what the courier reported since the last look to the process's counts."""
        c = self._courier
        if c is None or c.acks == self._acked:
            return
        new, old = c.acks, self._acked
        self._acked = new
        self._sent_seq = max(self._sent_seq, new.sent)
        if new.exported > old.exported:
            COUNTERS.add("exported", new.exported - old.exported)
        if new.spooled > old.spooled:
            COUNTERS.add("spooled", new.spooled - old.spooled)
        if new.failures > old.failures:
            COUNTERS.add("export_failures", new.failures - old.failures, new.last_error)

    def _start_delivery(self) -> None:
        if self.endpoint is None:
            self._start_thread()
            return
        with self._lock:
            if self._courier is not None or self._writer is None or self.endpoint is None:
                return
            if self._stopped:  # (closing: this thread delivers, at the flush that follows)
                self._to_thread()
                return
            protocol, url, headers = self.endpoint
            try:
                self._courier = courier.Courier(courier.Config(
                    str(self.directory), self._writer.writer, self._pid, protocol, url, dict(headers),
                    self.delay_s, self.batch, self.timeout_s, skip_to=self._sent_seq,
                    closed=self._closed[-1][0].name if self._closed else ""))
            except OSError as e:  # no courier here: this process delivers itself
                _log.warning("mltrace: cannot start the delivery process (%s); delivering from a thread", e)
                self._to_thread()
                return
            self._courier_at = self._progress_at = time.monotonic()
            self._acked = courier.Acks()

    def _courier_died(self) -> None:
        """(The lock held.) The courier is gone: a new one (it skips the runs this one reported
        sent), or, if it died young or the pipeline is closing, a thread of this process."""
        c = self._courier
        assert c is not None
        c.poll()
        self._count_acks()
        code = c.proc.poll()
        self._courier = None
        young = time.monotonic() - self._courier_at < COURIER_RESTART_S or self._stopped
        _log.warning("mltrace: the delivery process ended (exit code %s); %s", code,
                     "delivering from a thread" if young else "starting another")
        if young:
            self._to_thread()
        else:
            self._start_delivery()

    def _to_thread(self) -> None:
        """(The lock held.) Deliver from a thread from now on: the runs of this process's
        segments that no courier reported sent are read back for it (it sends them, then deletes
        the segments; a segment that cannot be read is sealed for the drain)."""
        self.endpoint = None
        paths = [path for path, _ in self._closed]
        if self._writer is not None:
            paths += self._writer.detach()
            self._appended = 0
        self._closed.clear()
        self._closed_runs = 0
        for path in paths:
            try:
                entries, _ = spool.follow(path, 0, True)
            except FileNotFoundError:  # deleted (sent) or taken by a drain
                continue
            except (OSError, ValueError):
                courier.seal(path)
                continue
            self._pending.extend(e.payload for e in entries if e.seq > self._sent_seq)
            self._handover.append(path)
        self._start_thread()
        self._cond.notify_all()

    # --- delivery by a thread of this process ---------------------------------------------------
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
        """Deliver what was appended since the last cycle (one segment), then leftovers (not with
        a courier: it delivers the segments)."""
        if self.endpoint is not None:
            return
        with self._cycle_lock:
            with self._cond:
                paths = self._handover + (self._writer.detach() if self._writer is not None else [])
                self._handover = []
                payloads, self._pending, self._appended = self._pending, [], 0
                self._cond.notify_all()
            if paths:
                self._deliver(paths, payloads)
            if self.send is not None and time.monotonic() >= self._leftovers_at \
                    and time.monotonic() >= self._skip_until:
                self._leftovers_at = time.monotonic() + LEFTOVERS_EVERY_S
                sent, error, _ = deliver_leftovers(self.directory, self.send, self.timeout_s)
                if sent:
                    COUNTERS.add("exported", sent)
                if error is not None:
                    self._skip_until = time.monotonic() + OTLP_RETRY_AFTER_S

    def _deliver(self, paths: list[Path], payloads: list[bytes]) -> None:
        n = len(payloads)
        if self.send is None or time.monotonic() < self._skip_until:
            for path in paths:
                courier.seal(path)
            if self.send is not None:
                COUNTERS.add("spooled", n)
            return
        error = send_all(self.send, payloads, self.timeout_s)
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
            courier.seal(path)

    # --- lifecycle -------------------------------------------------------------------------------
    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Deliver everything appended so far (by the courier, waited for; else in the calling
        thread)."""
        if os.getpid() != self._pid:
            return True
        with self._lock:
            if self.endpoint is not None and self._courier is None and self._writer is not None:
                self._start_delivery()  # (a flush right after the first run, or after a death)
            c = self._courier
            if c is not None:
                if self._appended:
                    self._next_segment()
                c = self._courier  # (a dead one was just replaced)
                last = self._closed[-1][0].name if self._closed else "-"
                seq = self._last_seq
        if c is None:
            self._cycle()
            return True
        done = c.flush(seq, last, timeout_millis / 1000)
        with self._lock:
            self._count_acks()
            self._forget_sent()
            if not done and self._courier is c and not c.alive():
                self._courier_died()
                if self._courier is None:
                    self._cycle()
                    return True
        return done

    def shutdown(self) -> None:
        if os.getpid() != self._pid:
            return
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            self._cond.notify_all()
            thread = self._thread
        if self.endpoint is not None:
            self.force_flush(int((self.timeout_s + 30) * 1000))
        if self.endpoint is not None:  # (no fallback to a thread meanwhile)
            with self._lock:
                c = self._courier
                paths = self._writer.detach() if self._writer is not None else []
                if paths and c is not None:  # runs ended since the flush: the courier takes them too
                    c.send_line(f"C {paths[-1].name}\n".encode())
            if c is not None:
                c.close(self.timeout_s + 10)
                with self._lock:
                    self._count_acks()
                    self._courier = None
            return
        if thread is not None:
            thread.join(self.timeout_s + 30)
        self._cycle()
