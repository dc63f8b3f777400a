"""The ingest pipeline: a bounded queue of checked requests, a batcher and inserters.

Receivers :meth:`IngestQueue.submit` a checked request (serialized protobuf, see
:mod:`.otlp`) and wait on the returned :class:`Pending` until the batch it joined is
committed; only then do they acknowledge.

The batcher thread adds each request as it arrives to the open batch and hands the batch to an
inserter (which stores it through :func:`mltrace_otel.store.writer.write`, or, with the journaled
acknowledgement, appends it to the ingest journal for the indexer) when it holds
``batch_rows`` spans, ``batch_delay_s`` after its first request arrived, or, group commit, as
soon as an inserter is idle and arrivals pause for ``linger_s``. While every inserter is busy,
arrivals keep joining the next batch (past ``batch_rows``, up to ``max_batch_rows``), so batches
grow with the load (ClickHouse pays a large fixed cost per insert: analysing the materialized
views). ``inserters`` threads (default 2), each on its own store connection, insert batches
side by side: the engine runs each insert mostly on one core, so two use both cores of a small
machine (ClickHouse releases the GIL). A spool drain runs only while no insert does. A batch
whose insert fails for a reason other than :class:`~mltrace_otel.errors.StoreUnavailable` is
inserted again request by request, so one request the store refuses (:class:`Rejected`, HTTP
400) cannot sink the others.

Backpressure, never a silent drop:

- the queue holds at most ``queue_spans`` spans (queued plus in flight); a request that does not
  fit is refused with :class:`QueueFull` (HTTP 429 / RESOURCE_EXHAUSTED), except into an empty
  queue, so one huge request still gets in;
- when an insert has been running longer than ``stall_s``, or the last one failed less than
  ``retry_after_s`` ago, new requests are refused with :class:`Unavailable` (HTTP 503 /
  UNAVAILABLE). A request already queued whose batch is not committed within ``ack_timeout_s``
  is answered 503 too; it may still land later (the client's retry then duplicates spans, which
  the run tables absorb: they are ReplacingMergeTree by run id).

Imports :mod:`mltrace_otel.errors`, :mod:`mltrace_otel.store.writer` (every insert) and
:mod:`mltrace_otel.store.journal` (the journaled acknowledgement's entries).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from mltrace_otel.errors import AckTimeout, QueueFull, Rejected, Unavailable, store_failure
from mltrace_otel.store import writer
from mltrace_otel.store.journal import Entry, next_seq
from mltrace_otel.store.models import IngestResult
from mltrace_otel.store.writer import ENGINE_MIN_SPANS

log = logging.getLogger(__name__)
_DRAIN = object()  # hand-off marker: the inserter drains the spool


@dataclass(frozen=True)
class Committed:
    """A committed request: spans of it the store's renderer refused, and why (usually none)."""

    store_rejected: int = 0
    store_error: str = ""


_OK = Committed()


def _unavailable(e: BaseException) -> bool:
    """The store cannot write now (unreachable, no space, too many parts …): retry later,
    rather than the store refusing this data."""
    return store_failure(e)[0] == "storage"


def _data_error(e: BaseException) -> bool:
    """The insert failed on the data itself (a value the column type cannot hold)."""
    return store_failure(e)[0] == "data"


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
            if isinstance(self._error, Rejected):
                raise self._error
            raise Unavailable(f"the store refused the batch: {self._error}", 1.0)
        assert self._result is not None
        return self._result


def _halves(batch: list[Pending]) -> list[tuple[int, int]]:
    """Two slices of a batch (at least one request each) holding about half its spans each."""
    total, acc, cut = sum(p.spans for p in batch), 0, 1
    for i, p in enumerate(batch[:-1]):
        acc += p.spans
        if acc * 2 >= total:
            cut = i + 1
            break
    else:
        cut = len(batch) - 1
    return [(0, cut), (cut, len(batch))]


def own_connections(store: Any, n: int, siblings: list[Any]) -> list[Any]:
    """``n`` connections of their own to ``store`` (``store.sibling()``, also appended to
    ``siblings`` to close later); a wrapper without ``sibling`` (tests) is shared instead."""
    sibling = getattr(store, "sibling", None)
    if sibling is None:
        return [store] * n
    own = [sibling() for _ in range(n)]
    siblings.extend(own)
    return own


def join_threads(threads: list[threading.Thread], siblings: list[Any], deadline: float) -> bool:
    """Wait for the threads until ``deadline`` (monotonic); once all have finished, close the
    connections they owned. True if they all finished."""
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    done = not any(t.is_alive() for t in threads)
    if done:
        for st in siblings:
            st.close()
        siblings.clear()
    return done


class IngestQueue:
    """Bounded queue, a batcher thread and ``inserters`` inserter threads in front of a store.

    Args:
        store: the store (``insert_requests`` or ``insert_columns``, and ``drain_spool``). Only
            the inserter threads write to it (inserter k > 0 through ``store.sibling()``).
        batch_rows, batch_delay_s: close a batch at this many spans, or this long after its
            oldest request arrived.
        linger_max_s: group commit under load: while a batch holds fewer requests than the
            previous one, the idle inserter waits for more up to this long after the batch
            opened (N senders answered together send again together).
        max_batch_rows: while an insert is running, the next batch keeps taking queued
            requests up to this many spans (then waits for the inserter): under load inserts
            get bigger and fewer, each paying the store's fixed per-insert cost once.
        linger_s: also flush when the inserter is idle and no request arrived for this long
            (group commit: at low load a request is not held back for ``batch_delay_s``;
            under load batches still fill up while the previous insert runs). None: only
            ``batch_rows`` / ``batch_delay_s`` close a batch.
        queue_spans: the bound (queued + in flight) above which submit raises QueueFull.
        stall_s: an insert running longer than this makes submit raise Unavailable.
        retry_after_s: how long after a failed insert submit keeps raising Unavailable.
        drain_every_s: when idle, drain the local spool this often (0 = never).
        metrics: a :class:`~.metrics.CollectorMetrics` or None.
        min_engine_spans: batches of at least this many spans are rendered by the engine,
            smaller ones in Python; None: always Python (see :mod:`mltrace_otel.store.writer`,
            which every insert goes through).
        inserters: batches inserted side by side, each inserter on its own connection (the
            engine runs them on separate cores; one insert runs mostly on one core).
        indexer: the journaled acknowledgement (an :class:`~.indexer.Indexer`): a batch is
            appended to the store's ingest journal (``store.journal_append``, one writer,
            so Seqs follow the commit order), its requests are answered, and the indexer
            indexes them later, many batches per insert. Its backlog counts toward
            ``queue_spans``. None: a batch is answered once indexed.
    """

    def __init__(self, store: Any, *, batch_rows: int = 5000, batch_delay_s: float = 1.0,
                 queue_spans: int = 200_000, stall_s: float = 10.0, retry_after_s: float = 1.0,
                 drain_every_s: float = 0.0, linger_s: float | None = 0.005, metrics: Any = None,
                 max_batch_rows: int = 20_000, linger_max_s: float = 0.05, inserters: int = 2,
                 min_engine_spans: int | None = ENGINE_MIN_SPANS, indexer: Any = None) -> None:
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
        self._running: dict[int, float] = {}  # inserter thread id -> when its insert started
        self._failed_at: float | None = None
        self.linger_s = linger_s
        self._last_arrival = 0.0
        self._threads: list[threading.Thread] = []
        self._handoff: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.indexer = indexer
        self.inserters = 1 if indexer is not None else max(1, inserters)
        self.min_engine_spans = min_engine_spans
        self._idle = self.inserters  # inserters waiting for a batch
        self._siblings: list[Any] = []
        self.last_error = ""
        if metrics is not None:
            metrics.queue_depth.set_function(lambda: self.depth)  # read at each scrape

    def _insert(self, store: Any, batch: list[Pending]) -> IngestResult | None:
        """Store a batch (indexed acknowledgement), or commit it to the ingest journal and hand
        it to the indexer (journaled)."""
        if self.indexer is None:
            return writer.write(store, [p.payload for p in batch], sum(p.spans for p in batch),
                                self.min_engine_spans)
        first = next_seq(self.indexer.last_seq)
        self.indexer.appending(first)
        try:
            seqs = store.journal_append(first, [p.payload for p in batch], [p.spans for p in batch])
            self.indexer.last_seq = seqs[-1]
            self.indexer.add([Entry(q, p.spans, p.payload) for q, p in zip(seqs, batch, strict=True)])
        finally:
            self.indexer.appending(None)
        return None

    # --- producer side ---------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Spans queued, being inserted, or (journaled acknowledgement) not yet indexed."""
        backlog = self.indexer.backlog if self.indexer is not None else 0
        return self._queued + self._inflight + backlog

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
            failing = self.indexer.failing if self.indexer is not None else None
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
    # The batcher takes requests from the queue into the open batch; the inserters insert the
    # previous batches meanwhile (ClickHouse releases the GIL). At most one closed batch waits
    # between them.

    def start(self) -> None:
        """Start the batcher and the inserter threads (inserter k > 0 on its own connection,
        ``store.sibling()``, so inserts run side by side on the engine)."""
        if self.indexer is not None:
            self.indexer.start()  # first: it recovers the journal's last Seq
        stores = [self.store, *own_connections(self.store, self.inserters - 1, self._siblings)]
        self._threads = [
            threading.Thread(target=self._batch_loop, name="mltrace-collector-batch", daemon=True),
            *(threading.Thread(target=self._insert_loop, args=(st,), name=f"mltrace-collector-insert-{k}",
                               daemon=True) for k, st in enumerate(stores)),
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 60.0) -> bool:
        """Refuse new requests, commit everything queued, stop the threads. True if they finished."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        done = join_threads(self._threads, self._siblings, deadline)
        if self.indexer is not None:
            done = self.indexer.stop(max(0.0, deadline - time.monotonic())) and done
        return done

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every request answered so far is indexed (queryable); True if in time.
        Immediate without an indexer: a request is answered once indexed."""
        return self.indexer is None or self.indexer.flush(timeout)

    def _next(self, batch: list[Pending], rows: int, opened: float, last_drain: float) -> tuple[str, Any]:
        """What the batcher does next: ("take", item), ("flush", pieces), ("drain", None) or
        ("stop", None). Waits (on the condition) until one of them is due."""
        with self._cond:
            while True:
                now = time.monotonic()
                # while an insert runs, the next batch may grow past batch_rows (to
                # max_batch_rows): each insert pays a large fixed cost (the views), so under
                # load fewer, bigger inserts commit more spans per second
                idle_inserter = self._idle > 0
                limit = self.batch_rows if idle_inserter else self.max_batch_rows
                if self._items and rows < limit:
                    item = self._items.popleft()
                    self._queued -= item.spans
                    self._inflight += item.spans
                    return "take", item
                if batch:
                    idle = self.linger_s is not None and idle_inserter
                    linger_until = 0.0
                    if idle:
                        linger_until = self._last_arrival + self.linger_s
                        if len(batch) < self._expect:
                            # the requests answered together last time are likely on their
                            # way again: wait for them a little, rather than pay the insert's
                            # fixed cost twice (at most linger_max_s after the batch opened)
                            linger_until = max(linger_until, opened + self.linger_max_s)
                    if ((rows >= self.batch_rows and idle_inserter) or rows >= limit
                            or self._stopping or now >= opened + self.batch_delay_s
                            or (idle and now >= linger_until)):
                        self._expect = len(batch)
                        # a small batch with writers to spare goes to two of them in halves:
                        # two inserts side by side, each paying the fixed cost on its own core,
                        # answer sooner than one (only while the writers are idle, so not when
                        # the CPU is the limit)
                        pieces = 2 if (self._idle >= 2 and len(batch) >= 2 and rows < self.batch_rows
                                       and not self._stopping) else 1
                        self._idle -= pieces
                        return "flush", pieces
                    timeout = opened + self.batch_delay_s - now
                    if idle:
                        timeout = min(timeout, linger_until - now)
                    self._cond.wait(max(timeout, 0.0005))
                elif self._stopping:
                    return "stop", None
                elif self.drain_every_s and now - last_drain >= self.drain_every_s:
                    if self._idle == self.inserters:  # a drain never runs beside an insert
                        self._idle -= 1
                        return "drain", None
                    self._cond.wait(self.drain_every_s)
                else:
                    self._cond.wait(self.drain_every_s or None)

    def _batch_loop(self) -> None:
        """Take each request as it arrives into the open batch; hand the batch to an inserter
        at ``batch_rows``, after ``batch_delay_s``, or (group commit) as soon as an inserter is
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
                    for lo, hi in _halves(batch) if item == 2 else [(0, len(batch))]:
                        self._handoff.put(batch[lo:hi])
                    batch, rows = [], 0
                else:
                    if not batch:
                        opened = item.enqueued
                    batch.append(item)
                    rows += item.spans
        finally:
            for _ in range(self.inserters):
                self._handoff.put(None)

    def _insert_loop(self, store: Any) -> None:
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
                    result = self._insert(store, batch)
                except BaseException as e:  # noqa: BLE001 - a store failure fails the batch, not the thread
                    if len(batch) > 1 and not _unavailable(e):
                        # maybe one request's data: insert each alone, so it cannot sink the others
                        log.warning("insert of %d requests failed (%s); inserting them one by one",
                                    len(batch), e)
                        self._insert_each(store, batch)
                    else:
                        self._finish(batch, None, e, 0.0, store_failed=_unavailable(e))
                else:
                    self._finish(batch, result, None, time.perf_counter() - t0)
            finally:
                with self._cond:
                    self._running.pop(me, None)
                    self._idle += 1
                    self._cond.notify_all()

    def _insert_each(self, store: Any, batch: list[Pending]) -> None:
        me = threading.get_ident()
        for p in batch:
            with self._cond:
                self._running[me] = time.monotonic()
            t0 = time.perf_counter()
            try:
                result = self._insert(store, [p])
            except BaseException as e:  # noqa: BLE001
                self._finish([p], None, e, 0.0, store_failed=_unavailable(e))
            else:
                self._finish([p], result, None, time.perf_counter() - t0)

    def _finish(self, batch: list[Pending], result: IngestResult | None, error: BaseException | None,
                elapsed: float, *, store_failed: bool = True) -> None:
        """Resolve a batch's requests: committed, or failed with ``error``."""
        rows = sum(p.spans for p in batch)
        with self._cond:
            self._inflight -= rows
            if error is None:
                self._failed_at = None
            elif store_failed:
                self._failed_at = time.monotonic()
                self.last_error = str(error) or type(error).__name__
        m = self.metrics
        if error is not None and len(batch) == 1 and _data_error(error):
            log.warning("the store refused a request of %d spans: %s", rows, error)
            if m is not None:
                m.rejected.labels("store").inc(rows)
            batch[0]._resolve(None, Rejected(f"the store cannot hold this request's data: {error}"))
        elif error is not None:
            log.warning("insert of %d spans failed: %s", rows, error)
            if m is not None:
                m.insert_failures.inc()
                m.dropped.labels("store_error").inc(rows)
            for p in batch:
                p._resolve(None, error)
        else:
            rejected = result.rejected if result is not None else 0
            if rejected:
                log.warning("store rejected %d of %d spans", rejected, rows)
            if m is not None:
                m.insert_seconds.observe(elapsed)
                m.batches.inc()
                m.committed.inc(rows - rejected)
                if self.indexer is None:  # answered once indexed: committed is queryable
                    m.indexed.inc(rows - rejected)
                if rejected:
                    m.rejected.labels("store").inc(rejected)
            for p in batch:
                p._resolve(Committed(rejected, "; ".join(result.errors)[:500])
                           if result is not None and rejected else _OK)

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
