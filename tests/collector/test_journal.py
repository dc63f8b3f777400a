"""The journaled acknowledgement: a request is answered once its bytes are in the store's ingest
journal, and indexed later, exactly once, even across a crash; the indexer's backlog counts
toward the queue bound (429), and indexed journal partitions are dropped."""

from __future__ import annotations

import http.client
import os
import threading
import time
from typing import Any

import pytest

from mltrace_otel import spool
from mltrace_otel.collector.server import Collector
from mltrace_otel.errors import ConfigError
from mltrace_otel.store import indexer as indexer_module
from mltrace_otel.store import journal
from tests.collector.conftest import (
    StoreWrapper,
    collector_settings,
    make_spans,
    recovered,
    run_ids,
    stored_runs,
)


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
    j = journal.for_store(store)
    seqs = [r.seq for r in j.append(first, [b1, b2, b3, b4], [3, 3, 3, 3])]
    # group 1 (b1): the insert committed, then the crash, before its Done row (a group this
    # small is rendered in Python on the embedded store, as the indexer does: the same group
    # always takes the same path, so its token drops the replay)
    j.mark(seqs[0], seqs[0], False)
    store.insert_requests_rendered([b1], dedup_token=journal.group_token(seqs[0], seqs[0]))
    # group 2 (b2, b3): started, nothing committed
    j.mark(seqs[1], seqs[2], False)
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
    assert recovered(store).entries == []


def test_the_indexer_backlog_counts_toward_the_queue_bound(tmp_settings: Any, store: Any) -> None:
    """With indexing held up, requests are answered while they fit in the queue (journaled,
    not lost), then 429; once indexing resumes, every acknowledged span is queryable."""

    class HeldIndexing(StoreWrapper):
        def __init__(self, store: Any) -> None:
            self.store = store
            self.gate = threading.Event()

        def insert_requests(self, *args: Any, **kw: Any) -> Any:
            self.gate.wait(120)
            return self.store.insert_requests(*args, **kw)

        def insert_requests_rendered(self, *args: Any, **kw: Any) -> Any:
            self.gate.wait(120)
            return self.store.insert_requests_rendered(*args, **kw)

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
    return sum(r.seq == seq for r in journal.for_store(store).scan()[0])


def test_indexed_journal_segments_are_deleted(tmp_settings: Any, store: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(indexer_module, "CLEANUP_EVERY_S", 0.0)
    old = time.time_ns() - 60 * 10**9  # a minute ago: a partition of its own
    body, ids = _request(2, "old")
    journal.for_store(store).append(old, [body], [2])
    with Collector(collector_settings(tmp_settings, ack="journaled"), store, drain_every_s=0) as c:
        assert c.flush(60)
        # deleted once indexed and past the clean-up's watermark: the Seq after the newest
        # journaled (not the clock: an append numbered earlier may still be on its way)
        body2, ids2 = _request(1, "new")
        assert _post(c, body2) == 200
        assert c.flush(60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _journal_rows(store, old):
            time.sleep(0.05)
        assert _journal_rows(store, old) == 0  # while the collector runs, not only at its stop
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
    j = journal.for_store(store)
    seqs = [r.seq for r in j.append(journal.next_seq(0), bodies, [1, 1, 1])]
    j.mark(seqs[0], seqs[2], False)
    j.mark(seqs[0], seqs[0], False)
    j.mark(seqs[0], seqs[0], True)  # the crash comes after the first request
    rec = recovered(store)
    assert [[e.seq for e in g] for g in rec.groups] == [seqs[1:]] and rec.entries == []
    for q in seqs[1:]:
        j.mark(q, q, False)
        j.mark(q, q, True)
    j.mark(seqs[0], seqs[2], True)
    rec = recovered(store)
    assert rec.groups == [] and rec.entries == []


def _segment(j: Any) -> Any:
    """The journal's one segment file (open or sealed)."""
    (segment,) = [p for p in j.directory.iterdir() if p.name.endswith((spool.OPEN, spool.SEALED))]
    return segment


def test_a_record_a_crash_cut_short_is_dropped_and_appends_go_on(store: Any) -> None:
    """kill -9 in the middle of a write leaves part of a record (never acknowledged) at the end
    of a segment; recovery keeps the whole records before it and cuts the rest off, so records
    appended after the restart are read back too. A record whose bytes changed fails its CRC."""
    j = journal.for_store(store)
    (b1, _), (b2, _), (b3, _) = _request(2, "whole1"), _request(2, "whole2"), _request(1, "after")
    base = time.time_ns() // journal.SEGMENT_NS * journal.SEGMENT_NS  # all in one segment
    j.append(base, [b1, b2], [2, 2])
    with open(_segment(j), "ab") as f:  # the head and half the payload of a third record
        f.write(spool.HEAD.pack(base + 2, 2, 1000, 0) + b"x" * 500)
    rec = recovered(store)
    assert [(e.seq, e.payload) for e in rec.entries] == [(base, b1), (base + 1, b2)]
    j.append(base + 2, [b3], [1])  # after the restart: a segment of its own
    assert [e.payload for e in recovered(store).entries] == [b1, b2, b3]
    last = max(p for p in j.directory.iterdir() if p.name.endswith(spool.SEALED))
    data = bytearray(last.read_bytes())
    data[-1] ^= 0xFF  # the last byte of b3's payload
    last.write_bytes(bytes(data))
    assert [e.payload for e in recovered(store).entries] == [b1, b2]


class _HalfWrites:
    """Failure injection on the journal's file writes: the next write to a journal segment stores
    half its bytes, then fails (the disk filled up); ``truncate_fails``: cutting them off fails
    too. Other writes (and the real functions) are untouched."""

    def __init__(self, monkeypatch: Any, directory: Any, truncate_fails: bool = False) -> None:
        self.directory = str(directory)
        self.armed = True
        real_write, real_truncate = os.write, os.ftruncate

        def ours(fd: int) -> bool:
            try:
                return os.readlink(f"/proc/self/fd/{fd}").startswith(self.directory)
            except OSError:
                return False

        def write(fd: int, data: Any) -> int:
            if self.armed and ours(fd):
                self.armed = False
                real_write(fd, bytes(data[: len(data) // 2]))
                raise OSError(28, "No space left on device")
            return real_write(fd, data)

        def ftruncate(fd: int, n: int) -> None:
            if truncate_fails and ours(fd):
                raise OSError(5, "Input/output error")
            real_truncate(fd, n)

        monkeypatch.setattr(spool.os, "write", write)
        monkeypatch.setattr(spool.os, "ftruncate", ftruncate)


def test_a_failed_journal_write_is_refused_whole_and_leaves_nothing_behind(
        store: Any, monkeypatch: Any) -> None:
    """A write that fails half way (the disk filled up) raises StoreUnavailable -- the collector
    answers 503 and the client retries -- and its half record is cut off the segment."""
    from mltrace_otel.errors import StoreUnavailable

    j = journal.for_store(store)
    (b1, _), (b2, _), (b3, _) = (_request(2, f"w{k}") for k in range(3))
    first = [r.seq for r in j.append(journal.next_seq(0), [b1], [2])]
    with monkeypatch.context() as m:
        _HalfWrites(m, j.directory)
        with pytest.raises(StoreUnavailable, match="No space left on device"):
            j.append(journal.next_seq(first[0]), [b2], [2])
    j.append(journal.next_seq(first[0] + 1), [b3], [2])
    assert [e.payload for e in recovered(store).entries] == [b1, b3]


def test_a_failed_batch_leaves_nothing_a_restart_would_store_again(
        tmp_settings: Any, store: Any, monkeypatch: Any) -> None:
    """A batch numbered across the end of a segment's Seq slot would be two writes; if the
    second failed, the first would stay in the journal while every request of the batch is
    answered 503 and sent again, and a restart would index those requests a second time. The
    batch is numbered within one slot instead: when its write fails, nothing of it is left."""
    from mltrace_otel.collector.pipeline import Pending
    from mltrace_otel.errors import StoreUnavailable

    (b1, ids1), (b2, ids2), (b3, ids3) = (_request(2, f"x{k}") for k in range(3))
    with Collector(collector_settings(tmp_settings, ack="journaled"), store, drain_every_s=0) as c:
        boundary = (time.time_ns() // journal.SEGMENT_NS + 1) * journal.SEGMENT_NS
        c.queue.indexer.last_seq = boundary - 3  # the next Seqs: two before the boundary, one after
        real_write = os.write

        def write(fd: int, data: Any) -> int:  # the disk is full from the next slot's segment on
            name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
            if name[:20].isdigit() and int(name[:20]) >= boundary:
                raise OSError(28, "No space left on device")
            return real_write(fd, data)

        with monkeypatch.context() as m:
            m.setattr(spool.os, "write", write)
            with pytest.raises(StoreUnavailable, match="No space left"):
                c.queue._append([Pending(b, 2) for b in (b1, b2, b3)])
    assert recovered(store).entries == []
    assert _span_rows(store, ids1 + ids2 + ids3) == 0


def test_a_half_record_that_cannot_be_cut_off_closes_its_segment(store: Any, monkeypatch: Any) -> None:
    """If cutting a failed write off fails too, its segment is sealed (a record after the half
    one would be unreadable): the next append goes to a fresh segment, and recovery reads every
    acknowledged record and cuts the half one off."""
    from mltrace_otel.errors import StoreUnavailable

    j = journal.for_store(store)
    (b1, _), (b2, _), (b3, _) = (_request(1, f"p{k}") for k in range(3))
    base = time.time_ns() // journal.SEGMENT_NS * journal.SEGMENT_NS
    j.append(base, [b1], [1])
    with monkeypatch.context() as m:
        _HalfWrites(m, j.directory, truncate_fails=True)
        with pytest.raises(StoreUnavailable, match="No space left on device"):
            j.append(base + 1, [b2], [1])
    j.append(base + 2, [b3], [1])
    assert len([p for p in j.directory.iterdir() if p.name.endswith((spool.OPEN, spool.SEALED))]) == 2
    assert [e.payload for e in recovered(store).entries] == [b1, b3]


def test_a_journal_table_of_the_first_version_is_moved_into_segments(tmp_settings: Any, store: Any) -> None:
    """A store a first-version collector stopped or crashed on keeps its unindexed requests in
    the table mltrace_ingest_journal: recovery moves them to segment files and drops the table."""
    (b1, ids1), (b2, _) = _request(2, "legacy1"), _request(2, "legacy2")
    store.command("test_legacy", "CREATE TABLE mltrace_ingest_journal (Seq UInt64, Spans UInt32, "
                  "Payload String) ENGINE = MergeTree ORDER BY Seq")
    seq = journal.next_seq(0)
    store.insert_columns("test_legacy_rows", "mltrace_ingest_journal", [[seq, seq + 1], [2, 2], [b1, b2]],
                         ["Seq", "Spans", "Payload"])
    journal.for_store(store).mark(seq + 1, seq + 1, True)  # b2 was indexed before the stop
    rec = recovered(store)
    assert [(e.seq, e.payload) for e in rec.entries] == [(seq, b1)] and rec.last_seq == seq + 1
    tables = store.query("test_legacy_gone", "SELECT count() FROM system.tables WHERE database = "
                         "currentDatabase() AND name = 'mltrace_ingest_journal'")
    assert tables[0][0] == 0
    with Collector(collector_settings(tmp_settings, ack="journaled"), store, drain_every_s=0) as c:
        assert c.flush(60)  # the collector started on it indexes the moved request
    assert set(stored_runs(store, ids1)) == set(ids1)


def test_progress_records_a_crash_tore_or_the_disk_damaged_are_dropped_alone(store: Any, caplog: Any) -> None:
    """The progress file beside the segments: a record a crash cut short is cut off (it was never
    complete, so its group is simply indexed again), a damaged one is skipped with an ERROR, and
    the records around it still count."""
    j = journal.for_store(store)
    j.mark(10, 20, False)
    j.mark(10, 20, True)
    j.mark(21, 30, False)
    path = j.directory / journal.PROGRESS_FILE
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\x01" * 9)  # a torn write
    assert j.progress() == [(10, 20, False), (10, 20, True), (21, 30, False)]
    assert path.stat().st_size == size
    data = bytearray(path.read_bytes())
    data[size // 3 + 3] ^= 0xFF  # the second record
    path.write_bytes(bytes(data))
    assert j.progress() == [(10, 20, False), (21, 30, False)]
    assert "damaged record" in caplog.text


def test_progress_rows_of_the_first_versions_table_move_into_the_file(store: Any) -> None:
    """A store whose collector (of a version that kept progress in a table) stopped in the
    middle of an index group: the group is replayed as one group, and the table is emptied."""
    bodies = [_request(1, f"legacy{k}")[0] for k in range(2)]
    j = journal.for_store(store)
    seqs = [r.seq for r in j.append(journal.next_seq(0), bodies, [1, 1])]
    store.command("test_old_progress", f"INSERT INTO {journal.PROGRESS} (FromSeq, ToSeq, Done) "
                  "VALUES ({a:UInt64}, {b:UInt64}, 0)", {"a": seqs[0], "b": seqs[1]})
    rec = recovered(store)
    assert [[e.seq for e in g] for g in rec.groups] == [seqs] and rec.entries == []
    assert store.query("test_old_progress_left", f"SELECT count() FROM {journal.PROGRESS}")[0][0] == 0
    assert j.progress() == [(seqs[0], seqs[1], False)]


_TAKE_JOURNAL = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
from mltrace_otel.settings import Settings
from mltrace_otel.store import journal
settings = Settings(mltrace_dir=Path(sys.argv[1]), store_url="http://ch.example:8123/db")
print(journal.for_store(SimpleNamespace(settings=settings, database="db")).directory.name, flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_collectors_writing_to_a_server_keep_a_journal_each_and_adopt_a_dead_ones(tmp_path: Any) -> None:
    """With a ClickHouse server (faked here: only its URL is used, no server runs), the journal
    lives under MLTRACE_DIR: two live collector processes get a journal each; once one dies,
    the next collector takes its journal (and so indexes what it left)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-c", _TAKE_JOURNAL, str(tmp_path)]
    holder = subprocess.Popen([*cmd, "60"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ch.example-8123-db"
        second = subprocess.run([*cmd, "0"], capture_output=True, text=True, timeout=60, check=True)
        assert second.stdout.strip() == "ch.example-8123-db-1"
    finally:
        holder.kill()
        holder.wait(30)
    after = subprocess.run([*cmd, "0"], capture_output=True, text=True, timeout=60, check=True)
    assert after.stdout.strip() == "ch.example-8123-db"
    assert (tmp_path / journal.DIRNAME / "ch.example-8123-db").stat().st_mode & 0o777 == 0o700
