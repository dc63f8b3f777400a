"""Spool drain: every batch once, corrupt batches aside, re-inserts after a crash de-duplicated."""

from __future__ import annotations

import logging

from mltrace_otel import conventions as c
from mltrace_otel import spool
from mltrace_otel.store import open_store
from mltrace_otel.store.ingest import encode_spans

TABLES = ("otel_traces", "otel_traces_trace_id_ts", "mltrace_runs", "mltrace_io", "mltrace_components")
"""Tables the spans fill (plus any other MergeTree table the migrations add, found at run time)."""


def spool_runs(settings, tracer, exporter, n: int, tag: str = "r") -> bytes:
    """Write n runs as one spool batch (as the SDK's spool exporter does); the payload."""
    exporter.clear()
    for i in range(n):
        with tracer.start_as_current_span(tag, attributes={c.COMPONENT_NAME: tag, c.RUN_INPUTS: [f"i{i}"],
                                                           c.RUN_OUTPUTS: [f"o{i}"]}):
            pass
    payload = encode_spans(exporter.get_finished_spans()).SerializeToString()
    spool.write_batch(settings.spool_dir, payload)
    return payload


def span_tables(store) -> list[str]:
    sql = ("SELECT name FROM system.tables WHERE database = {d:String} AND engine LIKE '%MergeTree' "
           "AND name NOT IN ('mltrace_schema_migrations', 'mltrace_flags', 'mltrace_notes', "
           "'mltrace_component_tags')")
    names = {r[0] for r in store.query("tables", sql, {"d": store.database})}
    assert set(TABLES) <= names
    return sorted(names)


def raw_counts(store) -> dict[str, int]:
    """Rows physically present (no FINAL, merges stopped by the caller): duplicates would show."""
    return {t: store.query("raw", f"SELECT count() FROM {t}")[0][0] for t in span_tables(store)}


def test_open_store_drains_the_spool(tmp_settings, otel_tracer) -> None:
    tracer, exporter = otel_tracer
    for k in range(3):
        spool_runs(tmp_settings, tracer, exporter, 5, f"c{k}")
    with open_store(tmp_settings) as store:
        assert store.query("n", "SELECT uniqExact(RunId) FROM mltrace_runs") == [(15,)]
        assert spool.pending(tmp_settings.spool_dir) == []
        assert store.drain_spool() == 0


def test_corrupt_batch_is_moved_aside_and_the_rest_drains(store, otel_tracer, caplog) -> None:
    tracer, exporter = otel_tracer
    spool_runs(store.settings, tracer, exporter, 4, "before")
    bad = spool.write_batch(store.settings.spool_dir, b"\x0a\xff\xff garbage")
    spool_runs(store.settings, tracer, exporter, 6, "after")
    with caplog.at_level(logging.ERROR, logger="mltrace_otel.store.ingest"):
        assert store.drain_spool() == 10
    assert store.query("n", "SELECT count() FROM mltrace_runs FINAL") == [(10,)]
    aside = store.settings.spool_dir / "bad" / bad.name
    assert spool.payloads(aside) == [b"\x0a\xff\xff garbage"]
    assert any(bad.name in r.getMessage() and "bad" in r.getMessage() for r in caplog.records)
    assert spool.pending(store.settings.spool_dir) == []


def test_reinserting_a_committed_batch_adds_nothing_anywhere(store, otel_tracer) -> None:
    """A drainer killed after the insert but before deleting the file: the next drain re-inserts
    the batch under the same token and no table, MV targets included, gets a second copy."""
    for t in span_tables(store):
        store.command("stop_merges", f"SYSTEM STOP MERGES {t}")
    tracer, exporter = otel_tracer
    payload = spool_runs(store.settings, tracer, exporter, 8)
    (claimed,) = spool.claim_all(store.settings.spool_dir)
    ((entry,), _) = claimed.entries()
    assert store.insert_otlp(entry.payload, dedup_token=claimed.token).accepted == 8
    once = raw_counts(store)
    assert once["mltrace_runs"] == 8 and once["mltrace_io"] == 16
    claimed.release()  # as if its drainer died: the file is back, unprocessed
    assert store.drain_spool() == 8
    assert raw_counts(store) == once
    assert spool.pending(store.settings.spool_dir) == []
    # the same spans spooled twice (two tokens) are two inserts, yet readers see each run once
    spool.write_batch(store.settings.spool_dir, payload)
    store.drain_spool()
    assert store.query("n", "SELECT uniqExact(RunId), count() FROM mltrace_runs FINAL") == [(8, 8)]


def test_rejected_spans_do_not_block_their_batch(store, otel_tracer, caplog) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    tracer, exporter = otel_tracer
    spool_runs(store.settings, tracer, exporter, 3)
    (path,) = spool.pending(store.settings.spool_dir)
    (payload,) = spool.payloads(path)
    req = ExportTraceServiceRequest.FromString(payload)
    req.resource_spans[0].scope_spans[0].spans[1].span_id = b"\x01"  # invalid length
    path.unlink()
    spool.write_batch(store.settings.spool_dir, req.SerializeToString(), 3)
    with caplog.at_level(logging.WARNING, logger="mltrace_otel.store.ingest"):
        assert store.drain_spool() == 2
    assert any("1 spans rejected" in r.getMessage() for r in caplog.records)
    assert spool.pending(store.settings.spool_dir) == []


def test_a_batch_the_store_refuses_is_kept_for_the_next_drain(store, otel_tracer, caplog) -> None:
    tracer, exporter = otel_tracer
    spool_runs(store.settings, tracer, exporter, 3)
    store.command("break", "RENAME TABLE otel_traces TO otel_traces_away")
    with caplog.at_level(logging.ERROR, logger="mltrace_otel.store.ingest"):
        assert store.drain_spool() == 0
    assert any("kept for the next drain" in r.getMessage() for r in caplog.records)
    assert len(spool.pending(store.settings.spool_dir)) == 1
    assert not (store.settings.spool_dir / "bad").exists()
    store.command("repair", "RENAME TABLE otel_traces_away TO otel_traces")
    assert store.drain_spool() == 3


def _payload(tracer, exporter, n: int, tag: str) -> bytes:
    exporter.clear()
    for i in range(n):
        attrs = {c.COMPONENT_NAME: tag, c.RUN_OUTPUTS: [f"{tag}{i}"]}
        with tracer.start_as_current_span(tag, attributes=attrs):
            pass
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def _runs(store, tag: str) -> int:
    return store.query("n", "SELECT uniqExact(RunId) FROM mltrace_runs WHERE Component = {t:String}",
                       {"t": tag})[0][0]


def test_the_spool_and_the_journal_share_one_segment_format(store, otel_tracer) -> None:
    """A spool segment is the journal's format: several records, each drained; a live writer's
    open segment waits, a dead writer's is drained; a damaged record is skipped alone."""
    import os

    tracer, exporter = otel_tracer
    d = store.settings.spool_dir
    live = spool.SegmentWriter(d)  # this process: alive, its open segment is not taken
    live.append([spool.Entry(spool.next_seq(0), 2, _payload(tracer, exporter, 2, "live"))])
    dead = spool.SegmentWriter(d, writer=f"{2**22 + 12345}-dead")  # a pid no process has
    seq = spool.next_seq(0)
    dead.append([spool.Entry(seq + k, 3, _payload(tracer, exporter, 3, f"dead{k}")) for k in range(3)])
    (dead_path,) = [p for p in d.iterdir() if "-dead" in p.name]
    data = bytearray(dead_path.read_bytes())
    middle = len(data) // 2  # inside the second record's payload
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    dead_path.write_bytes(bytes(data))
    os.close(dead._fd)  # the "dead" writer never sealed it
    store.drain_spool()
    assert [_runs(store, f"dead{k}") for k in range(3)] == [3, 0, 3]  # only the damaged record lost
    assert _runs(store, "live") == 0  # still being written
    live.seal()
    store.drain_spool()
    assert _runs(store, "live") == 2
    assert spool.pending(d) == [] and not [p for p in d.iterdir() if p.is_file()]


def test_spool_files_of_version_0_1_are_still_drained(store, otel_tracer) -> None:
    """An upgrade leaves 0.1's spool files (one request per file, no header): drained as before."""
    tracer, exporter = otel_tracer
    d = store.settings.spool_dir
    d.mkdir(parents=True, exist_ok=True)
    (d / "00000000000000000001-123-abcdef.otlp").write_bytes(_payload(tracer, exporter, 4, "old"))
    assert store.drain_spool() == 4
    assert _runs(store, "old") == 4 and spool.pending(d) == []
