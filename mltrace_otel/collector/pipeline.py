"""The ingest pipeline: a bounded queue of checked requests, a batcher and the journal writer.

Receivers :meth:`IngestQueue.submit` a checked request (serialized protobuf, see
:mod:`.otlp`) and wait on the returned :class:`Pending` until it is committed; only then do
they acknowledge.

One way in: the batcher thread adds each request as it arrives to the open batch and hands the
batch to the journal writer thread, which appends it to the ingest journal
(:mod:`mltrace_otel.store.journal`, one ``write``) and hands it to the
:class:`~.indexer.Indexer`, the one writer into the store. The journaled acknowledgement answers
the batch's requests once appended; the indexed one once the indexer has stored them. A batch
closes when it holds ``batch_rows`` spans, ``batch_delay_s`` after its first request arrived,
or, group commit, as soon as the journal writer is idle and arrivals pause for ``linger_s``.
While the writer is busy, arrivals keep joining the next batch (past ``batch_rows``, up to
``max_batch_rows``), so batches grow with the load. A spool drain runs on the journal writer's
thread between appends.

Backpressure, never a silent drop:

- the queue holds at most ``queue_spans`` spans (queued plus in flight); a request that does not
  fit is refused with :class:`QueueFull` (HTTP 429 / RESOURCE_EXHAUSTED), except into an empty
  queue, so one huge request still gets in;
- when a journal append has been running longer than ``stall_s``, or the last one failed less
  than ``retry_after_s`` ago, or the indexer cannot store (:attr:`.Indexer.failing`), new
  requests are refused with :class:`Unavailable` (HTTP 503 / UNAVAILABLE). A request already
  queued whose batch is not committed within ``ack_timeout_s`` is answered 503 too; it may
  still land later (the client's retry then duplicates spans, which the run tables absorb:
  they are ReplacingMergeTree by run id).

Imports :mod:`.indexer`, :mod:`mltrace_otel.errors` and :mod:`mltrace_otel.store.journal`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from typing import Any

from mltrace_otel.errors import AckTimeout, QueueFull, Rejected, Unavailable
from mltrace_otel.store.indexer import Committed, Indexer, join_threads
from mltrace_otel.store.journal import next_seq
from mltrace_otel.store.protocols import SpanSink

log = logging.getLogger(__name__)
_DRAIN = object()  # hand-off marker: the journal writer drains the spool
MAX_BATCH_ROWS = 20_000
"""Most spans a batch takes while the journal writer is busy (and, with the indexed
acknowledgement, the most spans of one index insert)."""


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

    def resolve(self, result: Committed | None, error: BaseException | None = None) -> None:
        """Answer the request: committed (``result``) or failed (``error``). The first answer
        counts: a request answered 503 while the store failed stays answered so when its
        journaled bytes are indexed later."""
        if self._done.is_set():
            return
        self._result, self._error = result, error
        self._done.set()

    def wait(self, timeout: float) -> Committed:
        """Block until committed. Raises Unavailable on a failed insert or after ``timeout``."""
        if not self._done.wait(timeout):
            raise AckTimeout(f"the store did not commit the batch within {timeout:g} s", 5.0)
        if self._error is not None:
            if isinstance(self._error, Rejected):
                raise self._error
            raise Unavailable(f"the store refused the batch: {self._error}", 1.0)
        assert self._result is not None
        return self._result


class IngestQueue:
    """Bounded queue, a batcher thread and a journal writer thread in front of the indexer.

    Args:
        store: the store (its ``drain_spool``, when it has one, moves the local spool in).
        indexer: the :class:`~.indexer.Indexer`, the one writer into the store: a batch is
            appended to its journal (``indexer.journal``, by one thread, so Seqs follow the
            commit order) and handed to it. Its backlog counts toward ``queue_spans``.
        answer_when_indexed: answer a batch's requests once the indexer has stored them (the
            indexed acknowledgement, a ClickHouse server's default); False: once journaled.
        batch_rows, batch_delay_s: close a batch at this many spans, or this long after its
            oldest request arrived.
        linger_max_s: group commit under load: while a batch holds fewer requests than the
            previous one, the idle journal writer waits for more up to this long after the batch
            opened (N senders answered together send again together).
        max_batch_rows: while an insert is running, the next batch keeps taking queued
            requests up to this many spans (then waits for the journal writer): under load inserts
            get bigger and fewer, each paying the store's fixed per-insert cost once.
        linger_s: also flush when the journal writer is idle and no request arrived for this long
            (group commit: at low load a request is not held back for ``batch_delay_s``;
            under load batches still fill up while the previous insert runs). None: only
            ``batch_rows`` / ``batch_delay_s`` close a batch.
        queue_spans: the bound (queued + in flight) above which submit raises QueueFull.
        stall_s: an insert running longer than this makes submit raise Unavailable.
        retry_after_s: how long after a failed insert submit keeps raising Unavailable.
        drain_every_s: when idle, drain the local spool this often (0 = never).
        metrics: a :class:`~.metrics.CollectorMetrics` or None.
    """

    def __init__(self, store: SpanSink, indexer: Indexer, *, answer_when_indexed: bool = False,
                 batch_rows: int = 5000, batch_delay_s: float = 1.0,
                 queue_spans: int = 200_000, stall_s: float = 10.0, retry_after_s: float = 1.0,
                 drain_every_s: float = 0.0, linger_s: float | None = 0.005, metrics: Any = None,
                 max_batch_rows: int = MAX_BATCH_ROWS, linger_max_s: float = 0.05) -> None:
        self.store = store
        self.batch_rows = max(1, batch_rows)
        self.max_batch_rows = max(self.batch_rows, max_batch_rows)
        self.linger_max_s = linger_max_s
        self._expect = 1  # requests the last batch carried (group commit waits for as many)
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
        self._running: dict[int, float] = {}  # journal writer thread id -> when its append started
        self._failed_at: float | None = None
        self.linger_s = linger_s
        self._last_arrival = 0.0
        self._threads: list[threading.Thread] = []
        self._handoff: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.indexer = indexer
        self.answer_when_indexed = answer_when_indexed
        self._idle = 1  # the journal writer waits for a batch
        self.last_error = ""
        if metrics is not None:
            metrics.queue_depth.set_function(lambda: self.depth)  # read at each scrape

    def _append(self, batch: list[Pending]) -> None:
        """Commit a batch to the ingest journal and hand it to the indexer (with its requests to
        answer once indexed, under the indexed acknowledgement)."""
        first = next_seq(self.indexer.last_seq, len(batch))  # one slot: all journaled, or none
        self.indexer.appending(first)
        try:
            records = self.indexer.journal.append(first, [p.payload for p in batch], [p.spans for p in batch])
            self.indexer.last_seq = records[-1].seq
            self.indexer.add(records, batch if self.answer_when_indexed else None)
        finally:
            self.indexer.appending(None)
        for p in batch:  # the indexer reads the journal's copy (the receiver may still hold its own)
            p.payload = b""

    # --- producer side ---------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Spans queued, being journaled, or not yet indexed."""
        return self._queued + self._inflight + self.indexer.backlog

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
            started = min(self._running.values(), default=None)
            if started is not None and now - started > self.stall_s:
                raise Unavailable(f"the store has not finished an insert for {now - started:.0f} s", 5.0)
            if self._failed_at is not None and now - self._failed_at < self.retry_after_s:
                raise Unavailable(f"the store is failing: {self.last_error}", self.retry_after_s)
            failing = self.indexer.failing
            if failing:  # acknowledged spans wait for the store; take no more meanwhile
                raise Unavailable(f"the store cannot index now (acknowledged spans are kept and "
                                  f"retried): {failing}", 5.0)
            depth = self.depth
            if depth and depth + spans > self.queue_spans:
                raise QueueFull(f"the collector queue is full ({depth} of {self.queue_spans} spans)",
                                1.0)
            p = Pending(payload, spans)
            self._last_arrival = p.enqueued
            self._items.append(p)
            self._queued += spans
            self._cond.notify_all()
        return p

    # --- writer side ---------------------------------------------------------------------------
    # The batcher takes requests from the queue into the open batch; the journal writer appends
    # the previous batch meanwhile. At most one closed batch waits between them.

    def start(self) -> None:
        """Start the indexer, the batcher and the journal writer."""
        self.indexer.start()  # first: it recovers the journal's last Seq
        self._threads = [
            threading.Thread(target=self._batch_loop, name="mltrace-collector-batch", daemon=True),
            threading.Thread(target=self._append_loop, name="mltrace-collector-journal", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 60.0) -> bool:
        """Refuse new requests, journal everything queued, index it (within ``timeout``), stop
        the threads. True if they finished."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        done = join_threads(self._threads, [], deadline)
        indexed = self.indexer.stop(max(0.0, deadline - time.monotonic()))
        if done and indexed:  # nothing appends any more, and everything is indexed
            self.indexer.clear()
        return indexed and done

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every request answered so far is indexed (queryable); True if in time."""
        return self.indexer.flush(timeout)

    def _next(self, batch: list[Pending], rows: int, opened: float, last_drain: float) -> tuple[str, Any]:
        """What the batcher does next: ("take", item), ("flush", pieces), ("drain", None) or
        ("stop", None). Waits (on the condition) until one of them is due."""
        with self._cond:
            while True:
                now = time.monotonic()
                # while an insert runs, the next batch may grow past batch_rows (to
                # max_batch_rows): each insert pays a large fixed cost (the views), so under
                # load fewer, bigger inserts commit more spans per second
                idle_writer = self._idle > 0  # the journal writer
                limit = self.batch_rows if idle_writer else self.max_batch_rows
                if self._items and rows < limit:
                    item = self._items.popleft()
                    self._queued -= item.spans
                    self._inflight += item.spans
                    return "take", item
                if batch:
                    idle = self.linger_s is not None and idle_writer
                    linger_until = 0.0
                    if idle:
                        linger_until = self._last_arrival + self.linger_s
                        if len(batch) < self._expect:
                            # the requests answered together last time are likely on their
                            # way again: wait for them a little, rather than pay the insert's
                            # fixed cost twice (at most linger_max_s after the batch opened)
                            linger_until = max(linger_until, opened + self.linger_max_s)
                    if ((rows >= self.batch_rows and idle_writer) or rows >= limit
                            or self._stopping or now >= opened + self.batch_delay_s
                            or (idle and now >= linger_until)):
                        self._expect = len(batch)
                        self._idle -= 1
                        return "flush", None
                    timeout = opened + self.batch_delay_s - now
                    if idle:
                        timeout = min(timeout, linger_until - now)
                    self._cond.wait(max(timeout, 0.0005))
                elif self._stopping:
                    return "stop", None
                elif self.drain_every_s and now - last_drain >= self.drain_every_s:
                    if self._idle:  # the journal writer drains, between appends
                        self._idle -= 1
                        return "drain", None
                    self._cond.wait(self.drain_every_s)
                else:
                    self._cond.wait(self.drain_every_s or None)

    def _batch_loop(self) -> None:
        """Take each request as it arrives into the open batch; hand the batch to the journal writer
        at ``batch_rows``, after ``batch_delay_s``, or (group commit) as soon as the journal writer is
        idle and arrivals pause for ``linger_s``. While an insert runs, arrivals keep joining
        the next batch, so batches grow with the load."""
        batch: list[Pending] = []
        rows, opened, last_drain = 0, 0.0, time.monotonic()
        try:
            while True:
                what, item = self._next(batch, rows, opened, last_drain)
                if what == "stop":
                    return
                if what == "drain":
                    last_drain = time.monotonic()
                    self._handoff.put(_DRAIN)
                elif what == "flush":
                    self._handoff.put(batch)
                    batch, rows = [], 0
                else:
                    if not batch:
                        opened = item.enqueued
                    batch.append(item)
                    rows += item.spans
        finally:
            self._handoff.put(None)

    def _append_loop(self) -> None:
        me = threading.get_ident()
        while True:
            batch = self._handoff.get()
            if batch is None:
                return
            try:
                if batch is _DRAIN:
                    self._drain_spool()
                    continue
                t0 = time.perf_counter()
                try:
                    with self._cond:
                        self._running[me] = time.monotonic()
                    self._append(batch)
                except BaseException as e:  # noqa: BLE001 - a failed append fails the batch, not the thread
                    self._finish(batch, e, 0.0)
                else:
                    self._finish(batch, None, time.perf_counter() - t0)
            finally:
                with self._cond:
                    self._running.pop(me, None)
                    self._idle += 1
                    self._cond.notify_all()

    def _finish(self, batch: list[Pending], error: BaseException | None, elapsed: float) -> None:
        """A batch is journaled (its requests answered now, or by the indexer once indexed), or
        its append failed (answered 503: nothing of it was acknowledged)."""
        rows = sum(p.spans for p in batch)
        m = self.metrics
        with self._cond:
            self._inflight -= rows
            if error is None:
                self._failed_at = None
            else:
                self._failed_at = time.monotonic()
                self.last_error = str(error) or type(error).__name__
        if error is not None:
            log.warning("journaling %d spans failed: %s", rows, error)
            if m is not None:
                m.insert_failures.inc()
                m.dropped.labels("store_error").inc(rows)
            for p in batch:
                p.resolve(None, error)
            return
        if m is not None:
            m.insert_seconds.observe(elapsed)
            m.batches.inc()
            m.committed.inc(rows)
        if not self.answer_when_indexed:
            for p in batch:
                p.resolve(Committed())

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
