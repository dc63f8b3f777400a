"""The indexer: journaled requests into otel_traces (and the mltrace tables), many per insert.

The one writer into the store. With the journaled acknowledgement (``MLTRACE_ACK=journaled``,
the default on the embedded store) the collector's queue
(:class:`~mltrace_otel.collector.pipeline.IngestQueue`) commits each batch of requests to the
store's ingest journal (:mod:`.journal`: one append to a segment file) and answers it; the
indexer then inserts the journaled requests into ``otel_traces`` in index groups of up to
``group_spans`` spans. ClickHouse pays ~100 ms of fixed work per index insert (analysing the
materialized views, writing a part per table): one insert per 20,000-25,000 spans costs a few
µs per span, one per 2,000 (what a synchronous acknowledgement allows four pipelines with one
request in flight each) ~50.

A group is indexed when ``min_spans`` spans are journaled, ``delay_s`` after its oldest request
was, or at once when :meth:`Indexer.flush` or :meth:`Indexer.stop` asks. ``threads`` index
groups side by side, each on its own store connection.

Never lost, never twice: each group is a contiguous range of journaled requests, indexed with the
insert_deduplication_token of that range and recorded in the journal's progress file
(:mod:`mltrace_otel.store.journal`). Every failure is classified once, by exception type and
ClickHouse error code (:func:`mltrace_otel.errors.store_failure`):

- the store cannot write now (unreachable, no space, too many parts, out of memory, a timeout,
  I/O): the same insert is retried with back-off (1 s doubling to 30 s) for as long as it takes,
  counted in ``store_retries_total{reason}``; meanwhile :attr:`Indexer.failing` makes the
  collector answer new requests 503. Nothing acknowledged is dropped;
- the data itself is refused: a group is split into its requests (a request the engine refuses
  is rendered in Python first: :func:`mltrace_otel.store.writer.write`); a request that still
  fails is split into its spans, each stored alone, and a span that still fails is stored
  stripped to its ids, name, times and status (logged at ERROR, counted
  ``spans_rejected_total{reason="store_stripped"}``); a span not even that can hold is set
  aside in a file beside the journal (``rejected/``, counted ``reason="store"``), never deleted;
- an unknown error is retried twice, then handled as refused data.

:meth:`Indexer.stop` indexes what is journaled until its deadline, then gives up: a group left
half-done stays in the journal (progress Done = 0) and is indexed again, with its own token, by
the next indexer. On start, groups a crash cut short are indexed again with their own token, then
the journaled requests no group covers. Journal segments wholly indexed are deleted, and after a
stop that indexed everything, all of them (:meth:`Indexer.clear`). :func:`index_left_over` runs
an indexer once, for a process that opens the embedded store after a collector was killed on it.

Imports :mod:`mltrace_otel.errors` (failure classes), :mod:`mltrace_otel.settings`,
:mod:`mltrace_otel.store.journal` (the journal, its entries and tokens),
:mod:`mltrace_otel.store.writer` (every insert) and :mod:`mltrace_otel.store.ingest` (splitting
and stripping requests).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mltrace_otel import spool
from mltrace_otel.errors import Rejected, StoreUnavailable, store_failure
from mltrace_otel.settings import Settings
from mltrace_otel.spool import Record
from mltrace_otel.store import writer
from mltrace_otel.store.ingest import one_request_per_span, stripped
from mltrace_otel.store.journal import Entry, Journal, group_token, recover
from mltrace_otel.store.models import IngestResult
from mltrace_otel.store.protocols import SpanSink
from mltrace_otel.store.writer import ENGINE_MIN_SPANS

log = logging.getLogger(__name__)

CLEANUP_EVERY_S = 5.0
"""How often at most the indexer deletes journal segments it has indexed."""
MAX_BACKOFF_S = 30.0
"""Longest wait between two tries of a write the store cannot take now."""
OTHER_TRIES = 3
"""Tries of a write failing for an unknown reason before it is handled as refused data."""


@dataclass(frozen=True)
class Committed:
    """A committed request: spans of it the store's renderer refused, and why (usually none)."""

    store_rejected: int = 0
    store_error: str = ""


class Waiter(Protocol):
    """A request waiting for its answer (:class:`~mltrace_otel.collector.pipeline.Pending`)."""

    def resolve(self, result: Committed | None, error: BaseException | None = None) -> None:
        """Answer it: committed, or failed with ``error``."""
        ...


def own_connections(store: SpanSink, n: int, siblings: list[Any]) -> list[Any]:
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


class _Stopped(Exception):
    """The indexer was told to give up (stop's deadline passed) while a write kept failing."""


class Indexer:
    """Indexes journaled requests in the background (see module docstring).

    Args:
        store: the store (``insert_requests``, ``insert_requests_rendered``, ``sibling``). Each
            indexer thread uses a ``store.sibling()`` connection.
        journal: the store's ingest journal (:func:`mltrace_otel.store.journal.for_store`): the
            indexer recovers it, records each group's progress in it and deletes what is indexed.
        threads: groups indexed side by side.
        min_spans, delay_s: index once this many spans are journaled, or this long after the
            oldest journaled request.
        group_spans: at most this many spans per index insert (at least one request).
        min_engine_spans: groups of fewer spans are rendered in Python (no view analysis);
            None: every group (see :mod:`mltrace_otel.store.writer`).
        retry_after_s: first back-off after a failed insert (doubles up to MAX_BACKOFF_S).
        stall_s: an index insert running longer than this counts as a stalled store
            (:attr:`failing`).
        metrics: a :class:`~mltrace_otel.collector.metrics.CollectorMetrics` or None.
    """

    def __init__(self, store: SpanSink, journal: Journal, *, threads: int = 2, min_spans: int = 20_000,
                 delay_s: float = 1.0, group_spans: int = 50_000,
                 min_engine_spans: int | None = ENGINE_MIN_SPANS, retry_after_s: float = 1.0,
                 stall_s: float = 60.0, metrics: Any = None) -> None:
        self.store = store
        self.journal = journal
        self.stall_s = stall_s
        self.threads = max(1, threads)
        self.min_spans = max(1, min_spans)
        self.delay_s = max(0.0, delay_s)
        self.group_spans = max(1, group_spans)
        self.min_engine_spans = min_engine_spans
        self.retry_after_s = retry_after_s
        self.metrics = metrics
        self.last_seq = 0  # the highest Seq journaled (set by start() from the journal)
        self._cond = threading.Condition()
        # (a request, when journaled): where the journal writer put it, or, after a restart, the
        # request as recovery read it; a group can hold both
        self._pending: deque[tuple[Entry | Record, float]] = deque()
        self._pending_spans = 0
        # groups to index first, with their own tokens: a crash cut them short, or stop() left them
        self._replay: deque[list[Entry | Record]] = deque()
        self._busy: dict[int, int] = {}  # first Seq of a group being indexed -> its spans
        self._flushing = 0
        self._stopping = False
        self._abort = threading.Event()  # stop's deadline passed: stop retrying, leave the rest
        self._failing: str | None = None  # the last storage error, until a write succeeds again
        self._writing: dict[int, float] = {}  # indexer thread id -> when its current write started
        self._appending: int | None = None  # first Seq of a journal append in progress
        self._last_cleanup = 0.0
        self._threads: list[threading.Thread] = []
        self._siblings: list[Any] = []
        self._waiting: dict[int, Waiter] = {}  # Seq -> its request, answered once indexed
        if metrics is not None:
            metrics.index_backlog.set_function(lambda: self.backlog)  # read at each scrape

    # --- producer side ---------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Spans journaled and not yet indexed. Under the indexer's lock: the collector's
        submit path and the metrics scrape read it while indexer threads change the groups."""
        with self._cond:
            return (self._pending_spans + sum(self._busy.values())
                    + sum(e.spans for g in self._replay for e in g))

    @property
    def failing(self) -> str | None:
        """Why the store cannot take index inserts now -- the last write failed, or one has
        been running longer than ``stall_s`` -- or None. The collector answers new requests
        503 meanwhile: the journal would only grow."""
        started = min(tuple(self._writing.values()), default=None)
        if started is not None and time.monotonic() - started > self.stall_s:
            return f"an index insert has been running for {time.monotonic() - started:.0f} s"
        return self._failing

    def appending(self, first_seq: int | None) -> None:
        """The journal writer is committing rows from ``first_seq`` on (None: done, handed over
        or failed): journal segments holding them are not deleted meanwhile."""
        with self._cond:
            self._appending = first_seq

    def add(self, entries: Sequence[Record], waiters: Sequence[Waiter] | None = None) -> None:
        """Hand over requests just committed to the journal (in Seq order): where each lies, read
        back when its group is indexed (no copy is held meanwhile); ``waiters`` (the indexed
        acknowledgement): each entry's request, answered once it is indexed, refused (400: stored
        only stripped, or set aside) or failing (503: its bytes stay journaled)."""
        if not entries:
            return
        now = time.monotonic()
        with self._cond:
            if waiters is not None:
                self._waiting.update((e.seq, w) for e, w in zip(entries, waiters, strict=True))
            for e in entries:
                self._pending.append((e, now))
                self._pending_spans += e.spans
            self._appending = None
            self._cond.notify_all()

    def flush(self, timeout: float = 60.0) -> bool:
        """Index everything journaled so far now; True once it is (False after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._pending or self._busy or self._replay:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(min(left, 0.5))
                return True
            finally:
                self._flushing -= 1

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Recover what the journal holds unindexed (a crash, or a stop that timed out), then
        start the indexer threads."""
        rec = recover(self.store, self.journal)
        self.last_seq = rec.last_seq
        if rec.corrupt and self.metrics is not None:
            self.metrics.journal_corrupt.inc(rec.corrupt)
        if rec.groups or rec.entries:
            spans = sum(e.spans for g in rec.groups for e in g) + sum(e.spans for e in rec.entries)
            log.info("the ingest journal holds %d spans not yet indexed: indexing them", spans)
        for g in rec.groups:
            replayed: list[Entry | Record] = list(g)
            self._replay.append(replayed)
        now = time.monotonic() - self.delay_s  # due at once
        for e in rec.entries:
            self._pending.append((e, now))
            self._pending_spans += e.spans
        # every indexer thread on a connection of its own: the journal writer uses ``store``'s,
        # and one connection runs one query at a time (an index insert takes ~1 s)
        stores = own_connections(self.store, self.threads, self._siblings)
        self._threads = [threading.Thread(target=self._loop, args=(st,), name=f"mltrace-collector-index-{k}",
                                          daemon=True) for k, st in enumerate(stores)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 60.0) -> bool:
        """Index everything journaled, then stop the threads. True if they finished in time.

        At the deadline the threads stop retrying a failing store and return; what is not
        indexed stays in the journal for the next start (nothing is lost, only delayed)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic() - 1.0))
        self._abort.set()  # give up on a failing store: the journal keeps the rest
        with self._cond:
            self._cond.notify_all()
        done = join_threads(self._threads, self._siblings, max(deadline, time.monotonic() + 0.5))
        with self._cond:
            unanswered = list(self._waiting)
        self._answer(unanswered, error=StoreUnavailable("the collector stopped before indexing it"))
        left = self.backlog
        if left:
            log.warning("%d acknowledged spans are not indexed yet (%s); they stay in the ingest journal "
                        "and are indexed at the next start", left, self._failing or "out of time")
        return done

    def clear(self) -> bool:
        """After a :meth:`stop` that indexed everything, with nothing appending any more: delete
        every journal segment, so the next process to open the store finds no journal to read.
        False (and nothing deleted) when something is still to index."""
        with self._cond:
            if self.backlog or self._busy:
                return False
        self.journal.drop_indexed((self.last_seq // spool.SEGMENT_NS + 1) * spool.SEGMENT_NS)
        return True

    # --- indexer threads ----------------------------------------------------------------------
    def _take(self) -> list[Entry | Record] | None:
        """The next group to index (waits until one is due), or None to stop."""
        with self._cond:
            while True:
                if self._abort.is_set():
                    return None
                if self._replay:
                    group = self._replay.popleft()
                    self._busy[group[0].seq] = sum(e.spans for e in group)
                    return group
                if self._pending:
                    oldest = self._pending[0][1]
                    now = time.monotonic()
                    due = (self._pending_spans >= self.min_spans or now - oldest >= self.delay_s
                           or self._flushing or self._stopping)
                    if due:
                        group, spans = [], 0
                        while self._pending and (
                                not group or spans + self._pending[0][0].spans <= self.group_spans):
                            e, _ = self._pending.popleft()
                            group.append(e)
                            spans += e.spans
                        self._pending_spans -= spans
                        self._busy[group[0].seq] = spans
                        return group
                    self._cond.wait(max(0.001, oldest + self.delay_s - now))
                elif self._stopping:
                    return None
                else:
                    self._cond.wait()

    def _loop(self, store: SpanSink) -> None:
        while True:
            group = self._take()
            if group is None:
                return
            try:
                self._index(store, group)
            except _Stopped:  # it stays in the journal (Done = 0 or unrecorded): the next start
                with self._cond:
                    self._replay.appendleft(group)  # still counted in the backlog
                return
            finally:
                with self._cond:
                    self._busy.pop(group[0].seq, None)
                    self._cond.notify_all()
            self._cleanup()

    def _retrying(self, what: str, fn: Any, seqs: Sequence[int] = ()) -> Exception | None:
        """Run ``fn()`` until it succeeds (None) or the data is refused (the error). A store
        that cannot write now is retried with back-off for as long as it takes; an unknown
        error OTHER_TRIES times. Raises _Stopped when stop()'s deadline passes meanwhile."""
        backoff, others, me = self.retry_after_s, 0, threading.get_ident()
        while True:
            if self._abort.is_set():
                raise _Stopped
            self._writing[me] = time.monotonic()
            try:
                fn()
                error = None
            except Exception as e:  # noqa: BLE001 - classified below; nothing is dropped here
                error = e
            finally:
                self._writing.pop(me, None)
            if error is None:
                if self._failing is not None:
                    log.info("the store takes writes again (%s)", what)
                    self._failing = None
                return None
            kind, reason = store_failure(error)
            others += kind == "other"
            if kind == "data" or (kind == "other" and others >= OTHER_TRIES):
                return error
            if self.metrics is not None:
                self.metrics.store_retries.labels(reason).inc()
                self.metrics.insert_failures.inc()
            if self._failing is None or backoff >= MAX_BACKOFF_S:
                log.warning("%s failed (%s); retrying in %.0f s, nothing is dropped", what, error, backoff)
            self._failing = str(error) or type(error).__name__
            self._answer(seqs, error=error)  # 503 now; the journal keeps them, indexed later
            if self._abort.wait(backoff):
                raise _Stopped
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _index(self, store: SpanSink, group: Sequence[Entry | Record]) -> None:
        """Index one group until it is stored (see the module docstring), recording its progress."""
        first, last = group[0].seq, group[-1].seq
        spans = sum(e.spans for e in group)
        seqs = [e.seq for e in group]
        t0 = time.perf_counter()
        loaded: list[Entry] = []
        results: list[IngestResult] = []
        read = False  # read back once: a retry of a failed insert does not count a lost record again

        def insert() -> None:
            nonlocal read
            if not read:
                try:
                    loaded.extend(self._load(group))
                except OSError:  # retried like a store that cannot write now (reason io / no_space)
                    raise
                except Exception as e:  # e.g. MemoryError: retried too, never taken for refused data
                    raise StoreUnavailable(f"reading {len(group)} journaled requests back failed: {e}") from e
                read = True
            self.journal.mark(first, last, False)
            if loaded:
                results.append(writer.write(store, [e.payload for e in loaded], sum(e.spans for e in loaded),
                                            self.min_engine_spans, dedup_token=group_token(first, last)))

        refused = self._retrying(f"indexing {spans} spans", insert, seqs)
        if refused is not None:
            if len(loaded) > 1:
                log.warning("indexing %d journaled requests failed (%s); indexing them one by one",
                            len(loaded), refused)
                for one in loaded:
                    self._index(store, [one])
            elif loaded:
                self._index_refused(store, loaded[0], refused)
        self._mark_done(first, last)
        if refused is None and results:
            stored = sum(e.spans for e in loaded)
            rejected, errors = results[-1].rejected, results[-1].errors  # spans the renderer refused
            if self.metrics is not None:
                self.metrics.indexed.inc(stored - rejected)
                self.metrics.index_seconds.observe(time.perf_counter() - t0)
                if rejected:
                    self.metrics.rejected.labels("store").inc(rejected)
            self._answer([e.seq for e in loaded],
                         Committed(rejected, "; ".join(errors)[:500]) if rejected else Committed())

    def _load(self, group: Sequence[Entry | Record]) -> list[Entry]:
        """The group's requests with their bytes, in order: a request the journal's recovery read
        is as it is; one the journal writer handed over is read back from its segment. A record no longer
        there whole (a segment deleted or damaged meanwhile: logged at ERROR by
        :func:`mltrace_otel.spool.load`) is counted as damaged, and its request, if it waits for
        the indexed acknowledgement, is answered 503: the client sends it again.

        Raises:
            OSError: a segment could not be read (retried like a store that cannot write now).
        """
        records = [e for e in group if isinstance(e, Record)]
        if not records:
            return [e for e in group if isinstance(e, Entry)]
        read, lost = spool.load(records)
        if lost:
            if self.metrics is not None:
                self.metrics.journal_corrupt.inc(len(lost))
            self._answer([r.seq for r in lost], error=StoreUnavailable(
                "its journaled bytes were lost before they were indexed"))
        by_seq = {e.seq: e for e in read}
        return [e if isinstance(e, Entry) else by_seq[e.seq] for e in group
                if isinstance(e, Entry) or e.seq in by_seq]

    def _index_refused(self, store: SpanSink, entry: Entry, error: Exception) -> None:
        """A single request whose insert was refused for its data (by both renderers): span by
        span, then stripped spans, then set aside. Each step has its own dedup token."""
        token = group_token(entry.seq, entry.seq)

        def rendered(payload: bytes, suffix: str) -> Exception | None:
            return self._retrying(f"indexing Seq {entry.seq} ({suffix})", lambda: (
                store.insert_requests_rendered([payload], dedup_token=f"{token}-{suffix}")), [entry.seq])

        whole = 0  # spans stored with everything they carry
        log.warning("a journaled request of %d spans (Seq %d) cannot be stored whole (%s); storing "
                    "its spans one by one", entry.spans, entry.seq, error)
        for i, one in enumerate(one_request_per_span(entry.payload)):
            if (error := rendered(one, f"s{i}")) is None:
                self._count(indexed=1)
                whole += 1
            elif (last := rendered(stripped(one), f"x{i}")) is None:
                log.error("span %d of journaled request Seq %d was stored without its attributes, events "
                          "and links: the store refused them (%s)", i, entry.seq, error)
                self._count(indexed=1, rejected=("store_stripped", 1))
            else:
                name = f"{entry.seq}-{i}"
                while self._retrying("setting a span aside",  # until a file is written (or stop)
                                     lambda n=name, p=one: self.journal.set_aside(n, p)) is not None:
                    if self._abort.wait(MAX_BACKOFF_S):
                        raise _Stopped
                log.error("span %d of journaled request Seq %d cannot be stored at all (%s); kept in "
                          "the journal's rejected/%s.otlp", i, entry.seq, last, name)
                self._count(rejected=("store", 1))
        if whole == entry.spans:
            self._answer([entry.seq], Committed())
        else:
            self._answer([entry.seq], error=Rejected(
                f"the store cannot hold this request's data ({entry.spans - whole} of {entry.spans} "
                f"spans kept stripped or set aside): {error}"))

    def _answer(self, seqs: Sequence[int], result: Committed | None = None,
                error: BaseException | None = None) -> None:
        """Answer the requests waiting on these Seqs (the indexed acknowledgement), once."""
        if not self._waiting:
            return
        with self._cond:
            waiters = [w for q in seqs if (w := self._waiting.pop(q, None)) is not None]
        for w in waiters:
            w.resolve(result, error)

    def _count(self, indexed: int = 0, rejected: tuple[str, int] | None = None) -> None:
        if self.metrics is None:
            return
        if indexed:
            self.metrics.indexed.inc(indexed)
        if rejected is not None:
            self.metrics.rejected.labels(rejected[0]).inc(rejected[1])

    def _mark_done(self, first: int, last: int) -> None:
        """Record the group as indexed (retried like an insert: until then a restart would
        only index it again, deduplicated by its token)."""
        failed = self._retrying("recording journal progress", lambda: self.journal.mark(first, last, True))
        if failed is not None:
            log.warning("could not record journal progress: %s", failed)

    def _cleanup(self) -> None:
        """Delete journal segments below the oldest Seq not yet indexed (at most every 5 s)."""
        now = time.monotonic()
        with self._cond:
            if now - self._last_cleanup < CLEANUP_EVERY_S:
                return
            self._last_cleanup = now
            # every journaled request below ``low`` is indexed: those being indexed, waiting, or being
            # appended start at or after it, and any later append is numbered past ``last_seq``
            # (not "from now": an append numbered before this look and written after it would
            # have its segment deleted under it, and the journal holds its only copy)
            starts = [seq for seq in self._busy] + [g[0].seq for g in self._replay]
            if self._pending:
                starts.append(self._pending[0][0].seq)
            if self._appending is not None:
                starts.append(self._appending)
            low = min(starts, default=self.last_seq + 1)
        try:
            self.journal.drop_indexed(low)
        except Exception as e:  # noqa: BLE001 - retried next time
            log.warning("deleting indexed journal segments failed: %s", e)


def index_left_over(store: SpanSink, journal: Journal, settings: Settings) -> int:
    """Index what a collector that stopped short or was killed left in the embedded store's
    journal, before this process reads the store (it holds the store alone, so no collector
    appends meanwhile); spans indexed. Cheap when the journal is empty (a clean stop leaves it
    so). What the store cannot take within ``settings.stop_grace_s`` stays in the journal."""
    if not journal.holds_records():
        return 0
    indexer = Indexer(store, journal, threads=1, min_spans=1, delay_s=0.0,
                      min_engine_spans=writer.engine_min_spans(settings))
    indexer.start()
    spans = indexer.backlog
    if indexer.stop(settings.stop_grace_s):
        indexer.clear()
    if spans:
        log.info("indexed %d spans a stopped collector had acknowledged and left in the ingest journal",
                 spans - indexer.backlog)
    return spans - indexer.backlog
