"""The embedded store shared by several processes: pipelines, a holder announcing its query API,
readers, drainers.

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
    """Must-show: 4 processes log 2,500 runs each (SDK → spool) while a holder announces its
    query API and drains, and another process asks it in a loop: 10,000 runs, no errors."""
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
    assert read["remote_rounds"] == read["rounds"]  # every round through the holder's API
    assert "Cannot lock" not in reader.stderr_text and "Traceback" not in reader.stderr_text
    result(holder)
    final = run("count", tmp_path)
    assert final == {"runs": 10_000, "span_rows": 10_000, "span_ids": 10_000, "spool_left": []}


def test_a_long_lived_reader_survives_its_holder_leaving(tmp_path: Path) -> None:
    """A reader on the holder's API (mltrace_otel.api in a notebook) keeps answering when the
    holder stops: it opens the now free directory itself, with no error."""
    holder_stop, reader_stop = tmp_path / "stop-holder", tmp_path / "stop-reader"
    run("spool", tmp_path, 50, 50, "h")
    holder = start("hold", tmp_path, holder_stop)
    first_line(holder)
    reader = start("query-held", tmp_path, reader_stop)
    assert first_line(reader)["remote"] is True
    time.sleep(1.0)
    holder_stop.touch()
    result(holder)
    time.sleep(1.5)
    reader_stop.touch()
    out = result(reader)
    assert out["errors"] == [] and out["first_remote"] and not out["last_remote"], out
    assert "Traceback" not in reader.stderr_text and "Cannot lock" not in reader.stderr_text


def test_three_drainers_at_once_lose_nothing_and_duplicate_nothing(tmp_path: Path) -> None:
    """A holder drains every 0.2 s while two other processes try to drain: they find the store
    held by a process that announces its API (and drains), and say so at once."""
    assert run("spool", tmp_path, 3000, 100, "x")["batches"] == 30
    stop = tmp_path / "stop"
    holder = start("hold", tmp_path, stop)
    pid = first_line(holder)["pid"]
    drainers = [start("drain", tmp_path) for _ in range(2)]
    outs = [result(d) for d in drainers]
    assert all(f"held by another process (pid {pid})" in o["held"] for o in outs), outs
    moved = [o["drained"] for o in outs]
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
    assert out["opened"] and out["waited_s"] >= 1.0
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


def test_a_holder_announces_its_api_privately_and_withdraws_it(tmp_path: Path) -> None:
    """MLTRACE_DIR/store.json (and DIR/mltrace-api.json): mode 0600, the holder's pid, its API's
    URL and a random token that the API requires; removed when the holder stops."""
    import http.client
    from urllib.parse import urlsplit

    stop = tmp_path / "stop"
    holder = start("hold", tmp_path, stop)
    first = first_line(holder)
    files = [tmp_path / "mltrace" / "store.json", (tmp_path / "store").resolve() / "mltrace-api.json"]
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600
        info = json.loads(path.read_text())
        assert info["pid"] == first["pid"] and info["url"] == first["serving"]
        assert info["database"] == "shared" and info["dir"] == str((tmp_path / "store").resolve())
        assert len(info["token"]) >= 32
    url = urlsplit(first["serving"])
    assert url.hostname == "127.0.0.1"

    def status(auth: str | None) -> int:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        try:
            conn.request("GET", "/api/v1/recent", headers={"Authorization": auth} if auth else {})
            return conn.getresponse().status
        finally:
            conn.close()

    assert status(None) == 401 and status("Bearer wrong") == 401
    assert status(f"Bearer {info['token']}") == 200
    stop.touch()
    result(holder)
    assert not any(p.exists() for p in files)


def test_an_announcement_of_another_pid_is_ignored(tmp_path: Path) -> None:
    """A holder that announces nothing is waited for, even when store.json is left by a
    process that is gone (or names another store): no request goes to that URL."""
    stop = tmp_path / "stop"
    holder = start("hold-plain", tmp_path, stop)
    pid = first_line(holder)["holding"]
    stale = {"pid": 2 ** 22 + 17, "url": "http://127.0.0.1:9", "token": "t", "database": "shared",
             "dir": str((tmp_path / "store").resolve())}
    (tmp_path / "mltrace").mkdir(exist_ok=True)
    (tmp_path / "mltrace" / "store.json").write_text(json.dumps(stale))
    out = run("open-wait", tmp_path, 0.5)
    stop.touch()
    result(holder)
    assert not out["opened"] and f"held by process {pid} (waited" in out["error"]
