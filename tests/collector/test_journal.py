"""The journaled acknowledgement: a request is answered once its bytes are in the store's ingest
journal, and indexed later, exactly once, even across a crash; the indexer's backlog counts
toward the queue bound (429), and indexed journal partitions are dropped."""

from __future__ import annotations

import http.client
import threading
import time
from typing import Any

import pytest

from mltrace_otel.collector import indexer as indexer_module
from mltrace_otel.collector.server import Collector
from mltrace_otel.errors import ConfigError
from mltrace_otel.store import journal
from tests.collector.conftest import collector_settings, make_spans, run_ids, stored_runs


def _request(n: int, component: str) -> tuple[bytes, list[str]]:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    spans = make_spans(n, component=component)
    return encode_spans(spans).SerializeToString(), run_ids(spans)


def _post(c: Collector, body: bytes) -> int:
    conn = http.client.HTTPConnection(c.addresses.host, c.addresses.http_port, timeout=60)
    try:
        conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def _span_rows(store: Any, ids: list[str]) -> int:
    sql = "SELECT count() FROM otel_traces WHERE SpanId IN {ids:Array(String)}"
    return store.query("test_span_rows", sql, {"ids": ids})[0][0]


def test_a_restart_indexes_what_a_crash_left_in_the_journal_exactly_once(
        tmp_settings: Any, store: Any) -> None:
    """Left by a crash: a group whose index insert committed but whose progress row still says
    Done = 0, a group whose insert never ran, and journaled requests in no group yet. A new
    collector indexes all of them, and the committed group is not indexed twice."""
    (b1, ids1), (b2, ids2), (b3, ids3), (b4, ids4) = (_request(3, f"c{k}") for k in range(4))
    first = journal.next_seq(0)
    seqs = store.journal_append(first, [b1, b2, b3, b4], [3, 3, 3, 3])
    # group 1 (b1): the insert committed, then the crash, before its Done row (a group this
    # small is rendered in Python on the embedded store, as the indexer does: the same group
    # always takes the same path, so its token drops the replay)
    store.journal_mark(seqs[0], seqs[0], False)
    store.insert_requests_rendered([b1], dedup_token=journal.group_token(seqs[0], seqs[0]))
    # group 2 (b2, b3): started, nothing committed
    store.journal_mark(seqs[1], seqs[2], False)
    # b4: journaled (acknowledged), in no group
    assert _span_rows(store, ids1) == 3 and _span_rows(store, ids2 + ids3 + ids4) == 0

    with Collector(collector_settings(tmp_settings, ack="journaled"), store, drain_every_s=0) as c:
        assert c.flush(60)
        later, later_ids = _request(2, "after")
        assert _post(c, later) == 200  # numbered after what the journal held
        assert c.flush(60)
    every = ids1 + ids2 + ids3 + ids4 + later_ids
    assert set(stored_runs(store, every)) == set(every)
    assert _span_rows(store, every) == len(every)  # the committed group was not indexed again
    assert store.journal_recover().entries == []


def test_the_indexer_backlog_counts_toward_the_queue_bound(tmp_settings: Any, store: Any) -> None:
    """With indexing held up, requests are answered while they fit in the queue (journaled,
    not lost), then 429; once indexing resumes, every acknowledged span is queryable."""

    class HeldIndexing:
        def __init__(self, store: Any) -> None:
            self.store = store
            self.gate = threading.Event()

        def insert_requests(self, *args: Any, **kw: Any) -> Any:
            self.gate.wait(120)
            return self.store.insert_requests(*args, **kw)

        def insert_requests_rendered(self, *args: Any, **kw: Any) -> Any:
            self.gate.wait(120)
            return self.store.insert_requests_rendered(*args, **kw)

        def __getattr__(self, name: str) -> Any:  # journal_*: the real store (no sibling())
            if name == "sibling":
                raise AttributeError(name)
            return getattr(self.store, name)

    held = HeldIndexing(store)
    settings = collector_settings(tmp_settings, ack="journaled", queue_spans=20, index_spans=1)
    acked: list[str] = []
    with Collector(settings, held, drain_every_s=0) as c:
        statuses = []
        for k in range(6):  # 5 spans each: four fit in 20
            body, ids = _request(5, f"held{k}")
            statuses.append(_post(c, body))
            if statuses[-1] == 200:
                acked += ids
        assert statuses == [200, 200, 200, 200, 429, 429]
        assert c.queue.depth == 20
        held.gate.set()
        assert c.flush(60)
        assert c.queue.depth == 0
        text = c.metrics_body()[0].decode()
    assert set(stored_runs(store, acked)) == set(acked)
    assert "mltrace_collector_spans_indexed_total 20.0" in text
    assert 'mltrace_collector_spans_dropped_total{reason="queue_full"} 10.0' in text


def _journal_rows(store: Any, seq: int) -> int:
    sql = "SELECT count() FROM mltrace_ingest_journal WHERE Seq = {s:UInt64}"
    return store.query("test_journal_rows", sql, {"s": seq})[0][0]


def test_indexed_journal_partitions_are_dropped(tmp_settings: Any, store: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(indexer_module, "CLEANUP_EVERY_S", 0.0)
    old = time.time_ns() - 60 * 10**9  # a minute ago: a partition of its own
    body, ids = _request(2, "old")
    store.journal_append(old, [body], [2])
    with Collector(collector_settings(tmp_settings, ack="journaled"), store, drain_every_s=0) as c:
        assert c.flush(60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _journal_rows(store, old):
            time.sleep(0.05)
        body2, ids2 = _request(1, "new")
        assert _post(c, body2) == 200
    assert _journal_rows(store, old) == 0
    assert set(stored_runs(store, ids + ids2)) == set(ids + ids2)


def test_journaled_acknowledgement_is_refused_on_a_clickhouse_server(tmp_settings: Any, store: Any) -> None:
    """A server's journal would be shared by several collectors; auto picks indexed there."""
    server = tmp_settings.replace(store_url="http://clickhouse.invalid:8123/db")
    assert not server.journaled_ack  # auto
    with pytest.raises(ConfigError, match="MLTRACE_ACK=journaled needs the embedded store"):
        Collector(collector_settings(server, ack="journaled"), store).start()


def test_recovery_of_a_split_group(tmp_settings: Any, store: Any) -> None:
    """A group whose insert failed on its data is indexed request by request (each its own
    range, nested in the group's). A crash in the middle replays only the requests not yet
    indexed; once the group is done, nothing of it is indexed again."""
    bodies = [_request(1, f"split{k}")[0] for k in range(3)]
    seqs = store.journal_append(journal.next_seq(0), bodies, [1, 1, 1])
    store.journal_mark(seqs[0], seqs[2], False)
    store.journal_mark(seqs[0], seqs[0], False)
    store.journal_mark(seqs[0], seqs[0], True)  # the crash comes after the first request
    rec = store.journal_recover()
    assert [[e.seq for e in g] for g in rec.groups] == [seqs[1:]] and rec.entries == []
    for q in seqs[1:]:
        store.journal_mark(q, q, False)
        store.journal_mark(q, q, True)
    store.journal_mark(seqs[0], seqs[2], True)
    rec = store.journal_recover()
    assert rec.groups == [] and rec.entries == []
