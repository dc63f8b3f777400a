"""The ingest pipeline: a bounded queue of checked requests and ONE writer thread.

Receivers :meth:`IngestQueue.submit` a :class:`~.otlp.Decoded` request and wait on the returned
:class:`Pending` until the batch it joined is committed; only then do they acknowledge. The
writer takes queued requests until ``batch_rows`` spans, or ``batch_delay_s`` after the oldest
arrived (whichever comes first), concatenates their serialized requests (protobuf messages
concatenate into one valid message) and calls ``Store.insert_otlp`` once. Only this thread
touches the store for writing, so inserts (and periodic spool drains) never interleave.

Backpressure, never a silent drop:

- the queue holds at most ``queue_spans`` spans (queued plus in flight); a request that does not
  fit is refused with :class:`QueueFull` (HTTP 429 / RESOURCE_EXHAUSTED), except into an empty
  queue, so one huge request still gets in;
- when an insert has been running longer than ``stall_s``, or the last one failed less than
  ``retry_after_s`` ago, new requests are refused with :class:`Unavailable` (HTTP 503 /
  UNAVAILABLE). A request already queued whose batch is not committed within ``ack_timeout_s``
  is answered 503 too; it may still land later (the client's retry then duplicates spans, which
  the run tables absorb: they are ReplacingMergeTree by run id).

Imports the store only through the object it is given (duck-typed ``insert_otlp`` /
``drain_spool``), plus :mod:`mltrace_otel.errors`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from mltrace_otel.errors import MltraceError

log = logging.getLogger(__name__)


class QueueFull(MltraceError):
    """The queue cannot take the request now; retry after :attr:`retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, hint=f"retry after {retry_after:g} s")
        self.retry_after = retry_after


class Unavailable(MltraceError):
    """The store is stalled or failing (or the collector is stopping); retry later."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, hint=f"retry after {retry_after:g} s")
        self.retry_after = retry_after


class AckTimeout(Unavailable):
    """The request's batch was not committed in time (it may still land later)."""


@dataclass(frozen=True)
class Committed:
    """What the batch a request joined did: spans the store refused, and why (usually none)."""

    store_rejected: int = 0
    store_error: str = ""


class Pending:
    """A submitted request: :meth:`wait` returns once its batch is committed, or raises."""

    __slots__ = ("payload", "spans", "enqueued", "_done", "_result", "_error")

    def __init__(self, payload: bytes, spans: int) -> None:
        self.payload = payload
        self.spans = spans
        self.enqueued = time.monotonic()
        self._done = threading.Event()
        self._result: Committed | None = None
        self._error: BaseException | None = None

    def _resolve(self, result: Committed | None, error: BaseException | None = None) -> None:
        self._result, self._error = result, error
        self._done.set()

    def wait(self, timeout: float) -> Committed:
        """Block until committed. Raises Unavailable on a failed insert or after ``timeout``."""
        if not self._done.wait(timeout):
            raise AckTimeout(f"the store did not commit the batch within {timeout:g} s", 5.0)
        if self._error is not None:
            raise Unavailable(f"the store refused the batch: {self._error}", 1.0)
        assert self._result is not None
        return self._result


class IngestQueue:
    """Bounded queue + single writer thread in front of a store.

    Args:
        store: anything with ``insert_otlp(bytes) -> IngestResult`` (and optionally
            ``drain_spool() -> int``). Only the writer thread calls it.
        batch_rows, batch_delay_s: flush when this many spans are queued, or this long after
            the oldest queued request arrived.
        queue_spans: the bound (queued + in flight) above which submit raises QueueFull.
        stall_s: an insert running longer than this makes submit raise Unavailable.
        retry_after_s: how long after a failed insert submit keeps raising Unavailable.
        drain_every_s: when idle, drain the local spool this often (0 = never).
        metrics: a :class:`~.metrics.CollectorMetrics` or None.
    """

    def __init__(self, store: Any, *, batch_rows: int = 5000, batch_delay_s: float = 1.0,
                 queue_spans: int = 200_000, stall_s: float = 10.0, retry_after_s: float = 1.0,
                 drain_every_s: float = 0.0, metrics: Any = None) -> None:
        self.store = store
        self.batch_rows = max(1, batch_rows)
        self.batch_delay_s = max(0.0, batch_delay_s)
        self.queue_spans = max(1, queue_spans)
        self.stall_s = stall_s
        self.retry_after_s = retry_after_s
        self.drain_every_s = drain_every_s
        self.metrics = metrics
        self._items: deque[Pending] = deque()
        self._queued = 0  # spans waiting in _items
        self._inflight = 0  # spans in the batch being inserted
        self._cond = threading.Condition()
        self._stopping = False
        self._insert_started: float | None = None
        self._failed_at: float | None = None
        self._thread: threading.Thread | None = None
        self.last_error = ""

    # --- producer side ---------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Spans queued or being inserted."""
        return self._queued + self._inflight

    def submit(self, payload: bytes, spans: int) -> Pending:
        """Queue one checked request (``spans`` spans, serialized). Never blocks.

        Raises:
            QueueFull: the queue has no room for it now.
            Unavailable: the store is stalled or failing, or the collector is stopping.
        """
        now = time.monotonic()
        with self._cond:
            if self._stopping:
                raise Unavailable("the collector is shutting down", 2.0)
            started = self._insert_started
            if started is not None and now - started > self.stall_s:
                raise Unavailable(f"the store has not finished an insert for {now - started:.0f} s", 5.0)
            if self._failed_at is not None and now - self._failed_at < self.retry_after_s:
                raise Unavailable(f"the store is failing: {self.last_error}", self.retry_after_s)
            depth = self._queued + self._inflight
            if depth and depth + spans > self.queue_spans:
                raise QueueFull(f"the collector queue is full ({depth} of {self.queue_spans} spans)",
                                1.0)
            p = Pending(payload, spans)
            self._items.append(p)
            self._queued += spans
            if self._queued >= self.batch_rows or len(self._items) == 1:
                self._cond.notify()
        if self.metrics is not None:
            self.metrics.queue_depth.set(self.depth)
        return p

    # --- writer side ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="mltrace-collector-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> bool:
        """Refuse new requests, commit everything queued, stop the writer. True if it finished."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _take_batch(self) -> list[Pending] | None:
        """Wait for a full batch, the delay, or stop; None when stopped and empty."""
        with self._cond:
            last_drain = time.monotonic()
            while not self._items:
                if self._stopping:
                    return None
                wait = self.drain_every_s or None
                self._cond.wait(wait)
                if (not self._items and self.drain_every_s
                        and time.monotonic() - last_drain >= self.drain_every_s and not self._stopping):
                    return []  # idle: time for a spool drain
            deadline = self._items[0].enqueued + self.batch_delay_s
            while self._queued < self.batch_rows and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch: list[Pending] = []
            rows = 0
            while self._items and (not batch or rows + self._items[0].spans <= self.batch_rows):
                p = self._items.popleft()
                batch.append(p)
                rows += p.spans
            self._queued -= rows
            self._inflight = rows
            self._insert_started = time.monotonic()
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if not batch:
                self._drain_spool()
                continue
            self._insert(batch)

    def _insert(self, batch: list[Pending]) -> None:
        rows = sum(p.spans for p in batch)
        payload = b"".join(p.payload for p in batch)
        t0 = time.perf_counter()
        error: BaseException | None = None
        result: Any = None
        try:
            result = self.store.insert_otlp(payload)
        except BaseException as e:  # noqa: BLE001 - any store failure fails the batch, not the thread
            error = e
        elapsed = time.perf_counter() - t0
        with self._cond:
            self._inflight = 0
            self._insert_started = None
            if error is None:
                self._failed_at = None
            else:
                self._failed_at = time.monotonic()
                self.last_error = str(error) or type(error).__name__
        m = self.metrics
        if error is not None:
            log.warning("insert of %d spans failed: %s", rows, self.last_error)
            if m is not None:
                m.insert_failures.inc()
                m.dropped.labels("store_error").inc(rows)
            for p in batch:
                p._resolve(None, error)
        else:
            rejected = int(getattr(result, "rejected", 0) or 0)
            errors = getattr(result, "errors", ()) or ()
            committed = Committed(rejected, "; ".join(errors)[:500] if rejected else "")
            if rejected:
                log.warning("store rejected %d of %d spans: %s", rejected, rows, committed.store_error)
            if m is not None:
                m.insert_seconds.observe(elapsed)
                m.batches.inc()
                m.committed.inc(rows - rejected)
                if rejected:
                    m.rejected.labels("store").inc(rejected)
            for p in batch:
                p._resolve(committed)
        if m is not None:
            m.queue_depth.set(self.depth)

    def _drain_spool(self) -> None:
        drain = getattr(self.store, "drain_spool", None)
        if drain is None:
            return
        try:
            moved = drain()
        except Exception as e:  # noqa: BLE001 - a failing drain is retried next time
            log.warning("spool drain failed: %s", e)
            return
        if moved:
            log.info("drained %d spans from the local spool", moved)
            if self.metrics is not None:
                self.metrics.spool_drained.inc(moved)
