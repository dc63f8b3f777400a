"""The indexer: journaled requests into otel_traces (and the mltrace tables), many per insert.

With the journaled acknowledgement (``MLTRACE_ACK=journaled``, the default on the embedded
store) the :class:`~.pipeline.IngestQueue` commits each batch of requests to the store's
ingest journal (``store/journal.py``: one append to a segment file) and answers it; the
indexer then inserts the journaled requests into ``otel_traces`` in index groups of up to
``group_spans`` spans. ClickHouse pays ~100 ms of fixed work per index insert (analysing the
materialized views, writing a part per table): one insert per 20,000-50,000 spans costs a few
µs per span, one per 2,000 (what a synchronous acknowledgement allows four pipelines with one
request in flight each) ~50.

A group is indexed when ``min_spans`` spans are journaled, ``delay_s`` after its oldest request
was, or at once when :meth:`Indexer.flush` or :meth:`Indexer.stop` asks. ``threads`` index
groups side by side, each on its own store connection.

Never lost, never twice: each group is a contiguous range of journaled requests, indexed with the
insert_deduplication_token of that range and recorded in the journal's progress table
(:mod:`mltrace_otel.store.journal`). A group whose insert fails because the store is
unavailable is retried (with back-off) until it lands; one that fails on its data is indexed
request by request, and a request the store still refuses is logged and counted
(``spans_rejected_total{reason="store"}``), never retried forever. On start, groups a crash
cut short are indexed again with their own token, then the journaled requests no group
covers. Journal segments wholly indexed are deleted.

Imports :mod:`mltrace_otel.store.journal` (entries, tokens) and :mod:`.pipeline` (error
classification).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from mltrace_otel.collector.pipeline import _data_error, _unavailable, join_threads, own_connections
from mltrace_otel.store.journal import Entry, group_token

log = logging.getLogger(__name__)

CLEANUP_EVERY_S = 5.0
"""How often at most the indexer deletes journal segments it has indexed."""


class Indexer:
    """Indexes journaled requests in the background (see module docstring).

    Args:
        store: the store (``journal_*``, ``insert_requests``, ``insert_requests_rendered``,
            ``sibling``). Each indexer thread uses a ``store.sibling()`` connection.
        threads: groups indexed side by side.
        min_spans, delay_s: index once this many spans are journaled, or this long after the
            oldest journaled request.
        group_spans: at most this many spans per index insert (at least one request).
        native_min_spans: groups of fewer spans are rendered in Python (no view analysis).
        retry_after_s: first back-off after a failed insert (doubles up to 30 s).
        metrics: a :class:`~.metrics.CollectorMetrics` or None.
    """

    def __init__(self, store: Any, *, threads: int = 2, min_spans: int = 20_000, delay_s: float = 1.0,
                 group_spans: int = 50_000, native_min_spans: int = 4000, retry_after_s: float = 1.0,
                 metrics: Any = None) -> None:
        self.store = store
        self.threads = max(1, threads)
        self.min_spans = max(1, min_spans)
        self.delay_s = max(0.0, delay_s)
        self.group_spans = max(1, group_spans)
        self.native_min_spans = native_min_spans
        self.retry_after_s = retry_after_s
        self.metrics = metrics
        self.last_seq = 0  # the highest Seq journaled (set by start() from the journal)
        self._cond = threading.Condition()
        self._pending: deque[tuple[Entry, float]] = deque()  # (entry, when journaled)
        self._pending_spans = 0
        self._replay: deque[list[Entry]] = deque()  # groups a crash cut short: their own tokens
        self._busy: dict[int, int] = {}  # first Seq of a group being indexed -> its spans
        self._flushing = 0
        self._stopping = False
        self._appending: int | None = None  # first Seq of a journal append in progress
        self._last_cleanup = 0.0
        self._threads: list[threading.Thread] = []
        self._siblings: list[Any] = []
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

    def appending(self, first_seq: int | None) -> None:
        """The journal writer is committing rows from ``first_seq`` on (None: done, handed over
        or failed): journal segments holding them are not deleted meanwhile."""
        with self._cond:
            self._appending = first_seq

    def add(self, entries: Sequence[Entry]) -> None:
        """Hand over requests just committed to the journal (in Seq order)."""
        if not entries:
            return
        now = time.monotonic()
        with self._cond:
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
        rec = self.store.journal_recover()
        self.last_seq = rec.last_seq
        if rec.groups or rec.entries:
            spans = sum(e.spans for g in rec.groups for e in g) + sum(e.spans for e in rec.entries)
            log.info("the ingest journal holds %d spans not yet indexed: indexing them", spans)
        self._replay.extend(rec.groups)
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
        """Index everything journaled, then stop the threads. True if they finished in time
        (what is left stays in the journal for the next start)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        return join_threads(self._threads, self._siblings, time.monotonic() + timeout)

    # --- indexer threads ----------------------------------------------------------------------
    def _take(self) -> list[Entry] | None:
        """The next group to index (waits until one is due), or None to stop."""
        with self._cond:
            while True:
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

    def _loop(self, store: Any) -> None:
        while True:
            group = self._take()
            if group is None:
                return
            try:
                self._index(store, group)
            finally:
                with self._cond:
                    self._busy.pop(group[0].seq, None)
                    self._cond.notify_all()
            self._cleanup(store)

    def _index(self, store: Any, group: list[Entry]) -> None:
        """Index one group until it lands (or its data is refused), recording its progress."""
        first, last = group[0].seq, group[-1].seq
        spans = sum(e.spans for e in group)
        backoff, attempts = self.retry_after_s, 0
        while True:
            t0 = time.perf_counter()
            try:
                store.journal_mark(first, last, False)
                self._insert(store, [e.payload for e in group], spans, group_token(first, last))
                store.journal_mark(first, last, True)
            except Exception as e:  # noqa: BLE001 - a failed group is retried or split, never lost
                attempts += 1
                if self.metrics is not None:
                    self.metrics.insert_failures.inc()
                if not _unavailable(e) and (_data_error(e) or attempts >= 3):
                    if len(group) > 1:
                        log.warning("indexing %d journaled requests failed (%s); indexing them one by one",
                                    len(group), e)
                        for one in group:
                            self._index(store, [one])
                        self._mark_done(store, first, last)
                        return
                    log.error("the store refuses a journaled request of %d spans (Seq %d), "
                              "left unindexed: %s", spans, first, e)
                    if self.metrics is not None:
                        self.metrics.rejected.labels("store").inc(spans)
                    self._mark_done(store, first, last)
                    return
                log.warning("indexing %d spans failed (%s); retrying in %.1f s", spans, e, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if self.metrics is not None:
                self.metrics.indexed.inc(spans)
                self.metrics.index_seconds.observe(time.perf_counter() - t0)
            return

    def _insert(self, store: Any, payloads: list[bytes], spans: int, token: str) -> None:
        if spans >= self.native_min_spans:
            store.insert_requests(payloads, spans=spans, dedup_token=token)
        else:
            store.insert_requests_rendered(payloads, dedup_token=token)

    def _mark_done(self, store: Any, first: int, last: int) -> None:
        try:
            store.journal_mark(first, last, True)
        except Exception as e:  # noqa: BLE001 - only costs a re-index (deduplicated) after a crash
            log.warning("could not record journal progress: %s", e)

    def _cleanup(self, store: Any) -> None:
        """Delete journal segments below the oldest Seq not yet indexed (at most every 5 s)."""
        now = time.monotonic()
        with self._cond:
            if now - self._last_cleanup < CLEANUP_EVERY_S:
                return
            self._last_cleanup = now
            # every journaled request below ``low`` is indexed: those being indexed, waiting, or being
            # appended start at or after it, and any later append is numbered from now on (a
            # segment deleted before requests are appended to it is just created again)
            starts = [seq for seq in self._busy] + [g[0].seq for g in self._replay]
            if self._pending:
                starts.append(self._pending[0][0].seq)
            if self._appending is not None:
                starts.append(self._appending)
            low = min(starts, default=time.time_ns())
        try:
            store.journal_drop_indexed(low)
        except Exception as e:  # noqa: BLE001 - retried next time
            log.warning("deleting indexed journal segments failed: %s", e)
