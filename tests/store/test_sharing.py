"""The embedded store shared by several processes: pipelines, a serving holder, readers, drainers.

Every role is a real OS process (tests/store/store_worker.py) on its own engine directory under
tmp_path (this pytest process holds the session's directory, and chDB allows one per process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mltrace_otel.store import open_store

WORKER = str(Path(__file__).with_name("store_worker.py"))


def start(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WORKER, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen, timeout: float = 180) -> dict:
    out, err = proc.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert proc.returncode == 0 and lines, f"worker failed ({proc.returncode}): {out}\n{err[-3000:]}"
    proc.stderr_text = err  # type: ignore[attr-defined]
    return json.loads(lines[-1])


def run(*args: object, timeout: float = 180) -> dict:
    return result(start(*args), timeout)


def first_line(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()
    assert line.startswith("{"), f"worker said {line!r}: {proc.stderr.read()[-3000:] if not line else ''}"
    return json.loads(line)


def wait_for_empty_spool(base: Path, timeout: float = 120) -> None:
    spool = base / "mltrace" / "spool"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in spool.glob("*") if p.is_file()]:
            return
        time.sleep(0.2)
    raise AssertionError(f"spool not drained: {sorted(p.name for p in spool.glob('*'))[:10]}")


@pytest.mark.slow
def test_four_pipelines_and_a_reader_share_the_store(tmp_path: Path) -> None:
    """Must-show: 4 processes log 2,500 runs each (SDK → spool) while a holder serves the
    store and drains, and another process opens and queries it in a loop: 10,000 runs, no errors."""
    stop = tmp_path / "stop"
    holder = start("hold", tmp_path, stop)
    assert "serving" in first_line(holder)
    reader = start("query", tmp_path, stop)
    pipelines = [start("log", tmp_path, 2500, tag) for tag in "abcd"]
    for p in pipelines:
        out = result(p)
        assert out["logged"] == 2500 and out["flushed"], out
    wait_for_empty_spool(tmp_path)
    stop.touch()
    read = result(reader)
    assert read["errors"] == [] and read["rounds"] > 0, read
    assert "Cannot lock" not in reader.stderr_text and "Traceback" not in reader.stderr_text
    result(holder)
    final = run("count", tmp_path)
    assert final == {"runs": 10_000, "span_rows": 10_000, "span_ids": 10_000, "spool_left": []}


def test_a_long_lived_reader_survives_its_holder_leaving(tmp_path: Path) -> None:
    """A reader on the holder's endpoint keeps answering when the holder stops: it reconnects
    (here to the now free directory), with no error."""
    holder_stop, reader_stop = tmp_path / "stop-holder", tmp_path / "stop-reader"
    run("spool", tmp_path, 50, 50, "h")
    holder = start("hold", tmp_path, holder_stop)
    first_line(holder)
    reader = start("query-held", tmp_path, reader_stop)
    assert first_line(reader)["proxied"] is True
    time.sleep(1.0)
    holder_stop.touch()
    result(holder)
    time.sleep(1.5)
    reader_stop.touch()
    out = result(reader)
    assert out["errors"] == [] and out["first_proxied"] and not out["last_proxied"], out
    assert "Traceback" not in reader.stderr_text and "Cannot lock" not in reader.stderr_text


def test_three_drainers_at_once_lose_nothing_and_duplicate_nothing(tmp_path: Path) -> None:
    """A serving holder drains every 0.2 s while two other processes drain through it."""
    assert run("spool", tmp_path, 3000, 100, "x")["batches"] == 30
    stop = tmp_path / "stop"
    holder = start("hold", tmp_path, stop)
    first_line(holder)
    drainers = [start("drain", tmp_path) for _ in range(2)]
    moved = [result(d)["drained"] for d in drainers]
    wait_for_empty_spool(tmp_path)
    stop.touch()
    result(holder)
    assert sum(moved) <= 3000
    assert run("count", tmp_path) == {"runs": 3000, "span_rows": 3000, "span_ids": 3000, "spool_left": []}


def test_kill_9_mid_drain_then_the_next_drain_recovers_exactly_once(tmp_path: Path) -> None:
    run("spool", tmp_path, 200, 10, "k")
    dead = start("drain-die", tmp_path, 7)  # SIGKILL after committing batch 7, before deleting it
    dead.communicate(timeout=120)
    assert dead.returncode == -9
    left = sorted(p.name for p in (tmp_path / "mltrace" / "spool").glob("*"))
    assert any(".claim-" in name for name in left)  # the dead drainer's claim is still there
    assert run("count", tmp_path) == {"runs": 200, "span_rows": 200, "span_ids": 200, "spool_left": []}


def test_an_opener_waits_for_a_holder_then_gets_the_store(tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    holder = start("hold-plain", tmp_path, stop)
    first_line(holder)
    waiter = start("open-wait", tmp_path, 60)
    assert first_line(waiter) == {"opening": True}
    time.sleep(1.0)
    assert waiter.poll() is None  # still waiting, no error
    stop.touch()
    out = result(waiter)
    result(holder)
    assert out["opened"] and not out["proxied"] and out["waited_s"] >= 1.0
    assert "Cannot lock" not in waiter.stderr_text  # type: ignore[attr-defined]


def test_waiting_too_long_names_the_directory_and_the_holder(tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    holder = start("hold-plain", tmp_path, stop)
    pid = first_line(holder)["holding"]
    out = run("open-wait", tmp_path, 0.5)
    stop.touch()
    result(holder)
    assert not out["opened"]
    assert str((tmp_path / "store").resolve()) in out["error"] and f"process {pid}" in out["error"]


def test_the_shared_endpoint_answers_like_the_embedded_store(store, otel_tracer) -> None:
    """Same SQL, same results: typed values, hostile and 20 KB parameters, errors, inserts."""
    from mltrace_otel.errors import QueryError
    from mltrace_otel.store import share
    from mltrace_otel.store.core import Store

    tracer, exporter = otel_tracer
    with tracer.start_as_current_span("r", attributes={"mltrace.component.name": "r",
                                                       "mltrace.run.inputs": ["a", "b"]}) as sp:
        sp.add_event("e", {"k": 1.5})
    store.insert_spans(exporter.get_finished_spans())
    server = store.serve_shared(drain_interval_s=0)
    remote = Store(store.settings, share._connect_http(server.url, token=server.token, proxied=True))
    try:
        remote.migrate()
        sql = ("SELECT Timestamp, SpanAttributes, Events.Attributes, Duration, StatusCode, "
               "{s:String} AS s, {ids:Array(String)} AS ids, length({big:String}) FROM otel_traces")
        params = {"s": "'; DROP TABLE otel_traces; --\\ \"ü", "ids": ["x'", "y"], "big": "é" * 20_000}
        assert remote.query("same", sql, params) == store.query("same", sql, params)
        remote.command("flag", "INSERT INTO mltrace_flags (Pointer, Flagged, Version) "
                       "VALUES ({p:String}, 1, now64())", {"p": "o'1"})
        assert store.query("f", "SELECT Pointer FROM mltrace_flags") == [("o'1",)]
        try:
            remote.query("broken", "SELECT nope FROM otel_traces")
        except QueryError as e:
            assert e.query == "broken" and "nope" in str(e)
        else:
            raise AssertionError("no QueryError")
        with tracer.start_as_current_span("r2", attributes={"mltrace.component.name": "r2"}):
            pass
        assert remote.insert_spans(exporter.get_finished_spans()[-1:]).accepted == 1
        assert store.query("n", "SELECT count() FROM mltrace_runs FINAL") == [(2,)]
    finally:
        remote.close()


def test_the_shared_endpoint_refuses_a_wrong_token(store) -> None:
    from mltrace_otel.errors import StoreUnavailable
    from mltrace_otel.store import share

    server = store.serve_shared(drain_interval_s=0)
    with pytest.raises(StoreUnavailable, match="AUTHENTICATION_FAILED|wrong token"):
        share._connect_http(server.url, token="not-the-token", proxied=True)


def test_an_http_store_url_opens_migrates_and_drains_like_the_embedded_one(store, tmp_settings,
                                                                            otel_tracer) -> None:
    """open_store on http://user:password@host:port/db (here: the shared endpoint, a real socket)."""
    from urllib.parse import urlsplit

    from mltrace_otel import spool
    from mltrace_otel.store.ingest import encode_spans

    tracer, exporter = otel_tracer
    with tracer.start_as_current_span("h", attributes={"mltrace.component.name": "h"}):
        pass
    spool.write_batch(tmp_settings.spool_dir, encode_spans(exporter.get_finished_spans()).SerializeToString())
    server = store.serve_shared(drain_interval_s=0)
    port = urlsplit(server.url).port
    settings = tmp_settings.replace(store_url=f"http://default:{server.token}@127.0.0.1:{port}/{store.database}_h")
    with open_store(settings) as remote:
        assert not remote.proxied and remote.database == f"{store.database}_h"
        assert server.token not in repr(remote)
        assert remote.schema_version() == store.schema_version()
        assert remote.query("n", "SELECT count() FROM mltrace_runs FINAL") == [(1,)]
        assert spool.pending(tmp_settings.spool_dir) == []
        remote.command("drop", f"DROP DATABASE `{remote.database}`")
