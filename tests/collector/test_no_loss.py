"""Nothing acknowledged is lost: a request the engine cannot parse, a store that cannot write
(injected, and a real full disk), damaged journal bytes, and a stop while the store is stuck.

Failure injection wraps the real store only where a real failure cannot be produced on demand
(a hung insert, a ClickHouse error code); the full disk is a real tmpfs, the damaged journal a
real segment file with bytes flipped, the unparseable request real protobuf.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mltrace_otel import spool
from mltrace_otel.collector.server import Collector
from mltrace_otel.errors import QueryError
from mltrace_otel.store import journal
from tests.collector.conftest import (
    StoreWrapper,
    collector_settings,
    make_spans,
    run_ids,
    stored_runs,
    stored_span_counts,
    stored_spans,
    wait_until,
)
from tests.collector.test_backpressure import _body, _post
from tests.collector.test_crash import ROOT, _env, _free_port, _start_collector, _wait_healthy


def _unknown_field_request(n: int) -> tuple[bytes, list[str]]:
    """``n`` spans whose first carries field 5 (``name``, a string) a second time as a varint:
    legal protobuf that parsers must skip as an unknown field; ClickHouse's Protobuf reader
    refuses the whole message (Code 444)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    spans = make_spans(n, prefix="unknown")
    req = encode_spans(spans)
    req.resource_spans[0].scope_spans[0].spans[0].MergeFromString(b"\x28\x01")
    return req.SerializeToString(), run_ids(spans)


def test_a_request_the_engine_cannot_parse_lands_whole(collector: Collector, store: Any) -> None:
    body, ids = _unknown_field_request(5000)
    status, _ = _post(collector, body)
    assert status == 200
    assert len(stored_spans(store, ids)) == 5000  # every span, the odd one included


class StoreFails(StoreWrapper):
    """The real store, except that index inserts fail with a ClickHouse error code while
    ``failing`` is set (as NOT_ENOUGH_SPACE does on a full disk), or block while ``gate`` is
    clear (a stalled store). Journal appends reach the real store."""

    def __init__(self, store: Any, code: int = 243) -> None:
        self.store = store
        self.code = code
        self.failing = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.attempts = 0

    def _insert(self, fn: Any) -> Any:
        self.attempts += 1
        self.gate.wait()
        if self.failing.is_set():
            raise QueryError("insert_spans", {}, f"Code: {self.code}. injected", code=self.code)
        return fn()

    def insert_requests(self, *args: Any, **kw: Any) -> Any:
        return self._insert(lambda: self.store.insert_requests(*args, **kw))

    def insert_requests_rendered(self, *args: Any, **kw: Any) -> Any:
        return self._insert(lambda: self.store.insert_requests_rendered(*args, **kw))


def test_a_full_store_is_retried_until_it_takes_the_spans_and_new_requests_get_503(
        tmp_settings: Any, store: Any) -> None:
    """Journaled spans whose index insert fails with NOT_ENOUGH_SPACE are retried for as long as
    it takes (not dropped after a few tries); meanwhile new requests are refused 503 and the
    retries are counted; once the store takes writes again, everything acknowledged lands."""
    faulty = StoreFails(store, code=243)
    faulty.failing.set()
    settings = collector_settings(tmp_settings, ack="journaled", index_spans=1)
    with Collector(settings, faulty, drain_every_s=0) as c:
        c.queue.indexer.retry_after_s = 0.05
        first, ids = _body(20)
        assert _post(c, first)[0] == 200  # journaled: acknowledged
        deadline = time.monotonic() + 30
        while faulty.attempts < 6:  # more tries than the old give-up-after-3
            assert time.monotonic() < deadline
            time.sleep(0.02)
        status, headers = _post(c, _body(5)[0])
        assert status == 503 and int(headers["Retry-After"]) >= 1
        text = c.metrics_body()[0].decode()
        assert 'mltrace_collector_store_retries_total{reason="no_space"}' in text
        faulty.failing.clear()  # space is back
        assert c.flush(60)
        later, later_ids = _body(5)
        assert _post(c, later)[0] == 200
        text = c.metrics_body()[0].decode()
    assert set(stored_runs(store, ids + later_ids)) == set(ids + later_ids)
    assert 'spans_rejected_total{reason="store"}' not in text


def test_stop_returns_in_time_while_the_store_hangs_and_the_next_start_indexes_the_rest(
        tmp_settings: Any, store: Any) -> None:
    """A stop (what SIGTERM does) while an index insert hangs returns within the grace period;
    the acknowledged spans stay in the journal and the next start indexes them, once."""
    faulty = StoreFails(store)
    settings = collector_settings(tmp_settings, ack="journaled", index_spans=1, stop_grace_s=2.0)
    c = Collector(settings, faulty, drain_every_s=0)
    c.start()
    faulty.gate.clear()  # the next insert hangs
    body, ids = _body(10)
    assert _post(c, body)[0] == 200
    deadline = time.monotonic() + 30
    while faulty.attempts < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    c.queue.indexer.stall_s = 0.1  # the hung insert now counts as a stalled store: 503
    time.sleep(0.2)
    status, headers = _post(c, _body(1)[0])
    assert status == 503 and int(headers["Retry-After"]) >= 1
    t0 = time.monotonic()
    assert not c.stop_clean()  # a writer is still inside the store
    assert time.monotonic() - t0 < 2.0 + 3.0  # the grace period, plus thread hand-off slack
    faulty.failing.set()
    faulty.gate.set()  # the hung insert now fails: it commits nothing
    time.sleep(0.2)
    with Collector(settings, store, drain_every_s=0) as again:  # the next start
        assert again.flush(60)
    counts = store.query("t", "SELECT SpanId, count() FROM otel_traces WHERE SpanId IN {ids:Array(String)} "
                              "GROUP BY SpanId", {"ids": ids})
    assert sorted(r[0] for r in counts) == sorted(ids) and all(r[1] == 1 for r in counts)


def _append(store: Any, requests: list[tuple[bytes, list[str]]]) -> None:
    payloads, spans = [b for b, _ in requests], [len(ids) for _, ids in requests]
    journal.for_store(store).append(journal.next_seq(0), payloads, spans)


def _record_offsets(store: Any) -> list[tuple[Path, int, int]]:
    """(segment, payload offset, payload length) of every journal record, in Seq order."""
    records, _ = journal.for_store(store).scan()
    return [(r.path, r.offset, r.length) for r in records]


@pytest.mark.parametrize("where", ["payload", "header"])
def test_damaged_journal_bytes_lose_only_that_record(tmp_settings: Any, store: Any, where: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """16 bytes flipped in the middle of a segment after acknowledgement: recovery skips the
    damaged record alone, indexes every record after it, logs an ERROR and counts it."""
    requests = [_body(50) for _ in range(10)]
    _append(store, requests)
    offsets = _record_offsets(store)
    path, offset, length = offsets[4]
    at = offset + length // 2 if where == "payload" else offset - 20  # inside record 5's header
    data = bytearray(path.read_bytes())
    data[at:at + 16] = bytes(b ^ 0xFF for b in data[at:at + 16])
    path.write_bytes(bytes(data))

    settings = collector_settings(tmp_settings, ack="journaled")
    with caplog.at_level(logging.ERROR, logger="mltrace_otel.store.journal"):
        with Collector(settings, store, drain_every_s=0) as c:
            assert c.flush(60)
            text = c.metrics_body()[0].decode()
    kept = [i for k, (_, ids) in enumerate(requests) if k != 4 for i in ids]
    lost = requests[4][1]
    assert set(stored_runs(store, kept)) == set(kept)  # 450 of 500: all but the damaged record
    assert not stored_runs(store, lost)
    assert "mltrace_collector_journal_corrupt_records_total 1.0" in text
    assert any("damaged" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_bytes_damaged_while_a_request_waits_to_be_indexed_lose_only_that_request(
        tmp_settings: Any, store: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The indexer reads journaled requests back from their segment when it indexes them (it
    keeps no copy). Bytes flipped in one waiting request's record, in a segment sealed since
    it was appended: that request alone is lost (an ERROR, the damaged-records counter), every
    other acknowledged request is indexed once."""
    faulty = StoreFails(store)
    settings = collector_settings(tmp_settings, ack="journaled", index_spans=1)
    with Collector(settings, faulty, drain_every_s=0) as c:
        faulty.gate.clear()  # index inserts hang: both indexer threads hold a group
        requests = [_body(30) for _ in range(6)]
        for body, _ in requests:
            assert _post(c, body)[0] == 200
        assert wait_until(lambda: faulty.attempts >= 2, 30)  # two index inserts
        offsets = _record_offsets(store)  # also seals the open segment: read back by its new name
        path, offset, length = offsets[4]
        assert path.name.endswith(spool.SEALED)
        data = bytearray(path.read_bytes())
        data[offset + length // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        with caplog.at_level(logging.ERROR, logger="mltrace_otel"):
            faulty.gate.set()
            assert c.flush(60)
        text = c.metrics_body()[0].decode()
    kept = [i for k, (_, ids) in enumerate(requests) if k != 4 for i in ids]
    assert sorted(stored_runs(store, kept)) == sorted(kept)
    assert stored_span_counts(store, kept) == dict.fromkeys(kept, 1)
    assert not stored_runs(store, requests[4][1])
    assert "mltrace_collector_journal_corrupt_records_total 1.0" in text
    assert any("no longer whole" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_a_failure_reading_waiting_requests_back_is_retried_never_taken_for_refused_data(
        tmp_settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading a group's requests back from the journal fails (a MemoryError, more times than
    an unknown insert error is tried): the group is retried like a store that cannot write now,
    never marked indexed without its spans."""
    from mltrace_otel.store import indexer as indexer_module

    real, calls = spool.load, []

    def flaky(records: Any) -> Any:
        calls.append(len(records))
        if len(calls) <= indexer_module.OTHER_TRIES + 1:
            raise MemoryError("injected: no memory to read the group back")
        return real(records)

    with Collector(collector_settings(tmp_settings, ack="journaled"), store, drain_every_s=0) as c:
        monkeypatch.setattr(spool, "load", flaky)  # after the start's recovery, which reads too
        c.queue.indexer.retry_after_s = 0.05
        requests = [_body(20) for _ in range(3)]
        for body, _ in requests:
            assert _post(c, body)[0] == 200
        assert c.flush(60)
        text = c.metrics_body()[0].decode()
    ids = [i for _, ids in requests for i in ids]
    assert stored_span_counts(store, ids) == dict.fromkeys(ids, 1)
    assert len(calls) > indexer_module.OTHER_TRIES + 1
    assert 'mltrace_collector_store_retries_total{reason="unavailable"}' in text


def test_a_backlog_waiting_to_be_indexed_is_held_on_disk_not_in_memory(tmp_settings: Any, store: Any) -> None:
    """Requests journaled while the store is stuck are not held in the collector's memory as
    well (the journal is their one copy): a 40 MB backlog grows the Python heap by a few MB."""
    import tracemalloc

    faulty = StoreFails(store)
    settings = collector_settings(tmp_settings, ack="journaled", index_spans=1)
    with Collector(settings, faulty, drain_every_s=0) as c:
        faulty.gate.clear()
        body, _ = _body(4000)
        posts = 40 * 2**20 // len(body) + 1
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(posts):
                assert _post(c, body)[0] == 200
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert c.queue.indexer.backlog >= (posts - 2) * 4000  # all but the two groups in flight
        faulty.gate.set()
        assert c.flush(120)
    assert posts * len(body) >= 40 * 2**20
    assert grown < 8 * 2**20, f"the Python heap grew by {grown / 2**20:.1f} MiB"


def test_requests_left_in_the_journal_and_new_ones_are_indexed_together_after_a_restart(
        tmp_settings: Any, store: Any, caplog: pytest.LogCaptureFixture) -> None:
    """At a start, requests a crash left in the journal (read back by recovery) wait beside the
    requests that arrive meanwhile, and one index group may take both kinds: it is indexed in
    one go, every request once, with no failed insert."""
    faulty = StoreFails(store)
    (g1, ids1), (g2, ids2), (l1, ids3), (l2, ids4) = (_body(5) for _ in range(4))
    j = journal.for_store(store)
    seqs = [r.seq for r in j.append(journal.next_seq(0), [g1, g2, l1, l2], [5, 5, 5, 5])]
    j.mark(seqs[0], seqs[0], False)  # two groups a crash cut short: replayed alone
    j.mark(seqs[1], seqs[1], False)
    faulty.gate.clear()  # both indexer threads will hold a replayed group
    settings = collector_settings(tmp_settings, ack="journaled", index_spans=1000)
    with caplog.at_level(logging.WARNING, logger="mltrace_otel"):
        with Collector(settings, faulty, drain_every_s=0) as c:
            assert wait_until(lambda: faulty.attempts >= 2, 30)  # the two replayed groups
            new, ids5 = _body(5)
            assert _post(c, new)[0] == 200  # journaled behind the two requests left over
            faulty.gate.set()
            assert c.flush(60)
    every = ids1 + ids2 + ids3 + ids4 + ids5
    assert sorted(stored_runs(store, every)) == sorted(every)
    assert stored_span_counts(store, every) == dict.fromkeys(every, 1)
    assert faulty.attempts == 3  # the two replayed groups, then the rest in one insert
    assert not [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]


def test_a_segment_a_killed_collector_left_open_is_deleted_once_indexed(
        tmp_settings: Any, store: Any) -> None:
    """The segment a killed collector was appending to (still ``.open``, its writer gone) is
    indexed at the next start and deleted with the indexed segments: a later restart does not
    index its requests again."""
    j = journal.for_store(store)
    body, ids = _body(5)
    seq = journal.next_seq(0)
    path = j.directory / f"{seq:020d}-{journal.WRITER}{spool.OPEN}"
    spool.private_dir(j.directory)
    path.write_bytes(spool.encode([spool.Entry(seq, 5, body)]))
    settings = collector_settings(tmp_settings, ack="journaled")
    with Collector(settings, store, drain_every_s=0) as c:
        assert c.flush(60)
    assert sorted(stored_runs(store, ids)) == sorted(ids)
    journal.for_store(store).drop_indexed(seq + 2 * spool.SEGMENT_NS)  # the indexer's clean-up, 20 s on
    assert not path.exists() and not spool.sealed_name(path).exists()
    with Collector(settings, store, drain_every_s=0) as c:  # a later restart
        assert c.flush(60)
    assert stored_span_counts(store, ids) == dict.fromkeys(ids, 1)


def test_a_torn_tail_is_cut_off_quietly(store: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A record cut short at the end of a segment (a crash mid-write: never acknowledged) is
    truncated without an error; the records before it are kept."""
    _append(store, [_body(5) for _ in range(3)])
    path, offset, length = _record_offsets(store)[-1]
    os.truncate(path, offset + length // 2)
    with caplog.at_level(logging.ERROR, logger="mltrace_otel.store.journal"):
        records, corrupt = journal.for_store(store).scan()
    assert len(records) == 2 and corrupt == 0
    assert path.stat().st_size == offset - spool.HEAD.size
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_journal_segments_are_private(store: Any) -> None:
    _append(store, [_body(1)])
    path = _record_offsets(store)[0][0]
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


# --- a real full disk --------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 200 MB file system (tmpfs) to fill up; skipped where mounting is not allowed."""
    where = tmp_path / "small"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m,mode=0700", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(where: Path, leave_bytes: int) -> Path:
    """A file taking all free space on ``where``'s file system but ``leave_bytes``."""
    filler = where / "filler"
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as f:
        left = max(0, free - leave_bytes)
        block = b"\0" * (1 << 20)
        while left > 0:
            n = f.write(block[:min(left, len(block))])
            left -= n
    return filler


def _post_raw(port: int, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


@pytest.mark.slow
def test_a_full_disk_loses_nothing_acknowledged_and_sigterm_exits_in_time(tmp_path: Path,
                                                                         small_disk: Path) -> None:
    """``mltrace collector`` on a 200 MB tmpfs that fills up: requests are answered 200 (journaled)
    or 503, never dropped; SIGTERM exits within the grace period although the store cannot be
    written; after space returns, a restart holds every acknowledged span, once."""
    mnt = small_disk
    log = tmp_path / "collector.log"
    port = _free_port()
    env = _env(mnt / "home", MLTRACE_OTLP_HTTP_PORT=str(port), MLTRACE_OTLP_GRPC_PORT=str(_free_port()),
               MLTRACE_BATCH_DELAY_S="0.1", MLTRACE_INDEX_SPANS="2000", MLTRACE_STOP_GRACE_S="5")
    proc = _start_collector(env, log)
    acked: list[str] = []
    statuses: dict[int, int] = {}
    try:
        _wait_healthy(proc, port)
        filler = _fill(mnt, leave_bytes=3 << 20)
        for _ in range(60):
            body, ids = _body(200)
            status = _post_raw(port, body)
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                acked.extend(ids)
            assert status in (200, 503), status
        assert statuses.get(503), statuses  # the disk did fill up
        assert acked, statuses
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5 + 15) == 0
        stop_s = time.monotonic() - t0
        filler.unlink()  # space is back
        proc = _start_collector(env, log)
        _wait_healthy(proc, port)
        proc.send_signal(signal.SIGTERM)  # a clean stop indexes everything journaled
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    log_text = log.read_text()
    assert "Code: 243" in log_text  # the index inserts did meet a full disk, and were retried
    assert "stay in the ingest journal" in log_text  # SIGTERM left them there for the restart
    script = ("import json,sys\nfrom mltrace_otel.store import open_store\nids=json.load(sys.stdin)\n"
              "with open_store() as s:\n"
              "    rows=s.query('t','SELECT SpanId, count() FROM otel_traces "
              "WHERE SpanId IN {i:Array(String)} GROUP BY SpanId',{'i':ids})\n"
              "print(json.dumps([len(rows), sum(r[1] for r in rows)]))\n")
    out = subprocess.run([sys.executable, "-c", script], input=json.dumps(acked), env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    distinct, total = json.loads(out.stdout)
    assert distinct == len(acked), (distinct, len(acked), statuses, log.read_text()[-3000:])
    assert total == len(acked)  # once each
    assert stop_s < 5 + 10


def test_a_command_after_kill_9_shows_every_acknowledged_run_at_once(tmp_path: Path) -> None:
    """``mltrace collector`` is killed (-9) while acknowledged requests wait in its journal to
    be indexed. The next process to open the store -- here ``mltrace recent`` -- indexes them
    first: every acknowledged run is listed, once, and the journal is left empty, without a
    collector being started again."""
    home, log = tmp_path / "home", tmp_path / "collector.log"
    port = _free_port()
    env = _env(home, MLTRACE_OTLP_HTTP_PORT=str(port), MLTRACE_OTLP_GRPC_PORT=str(_free_port()),
               MLTRACE_INDEX_SPANS="1000000", MLTRACE_BATCH_DELAY_S="600")  # never indexed in time
    proc = _start_collector(env, log)
    acked: list[str] = []
    try:
        _wait_healthy(proc, port)
        for _ in range(3):
            body, ids = _body(5)
            assert _post_raw(port, body) == 200
            acked += ids
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    journal_dirs = list(home.rglob("mltrace-journal/*"))
    assert [p for d in journal_dirs for p in spool.segments(d)], "the kill left nothing in the journal"

    out = subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", "recent", "-n", "100", "--json"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert sorted(r["id"] for r in json.loads(out.stdout)) == sorted(acked)
    assert not [p for d in journal_dirs for p in spool.segments(d)]


def test_a_clean_stop_leaves_no_journal_to_read(tmp_settings: Any, store: Any) -> None:
    """Everything indexed at a clean stop: the journal's segments are deleted, so the next
    process to open the store has nothing to read back."""
    settings = collector_settings(tmp_settings, ack="journaled")
    with Collector(settings, store, drain_every_s=0) as c:
        body, ids = _body(5)
        assert _post(c, body)[0] == 200
    directory = journal.for_store(store).directory
    assert spool.segments(directory) == []
    assert stored_span_counts(store, ids) == dict.fromkeys(ids, 1)
