"""kill -9 of the collector while 4 pipeline processes each log 5,000 runs, then a restart:
exactly 20,000 runs in the store, none duplicated. Also: one log line per start, SIGTERM exits 0.

The pipelines use the real mltrace SDK exporting over OTLP/HTTP; when the collector dies their
exports fail and the SDK spools; the restarted collector drains the spool. The collector
acknowledges only committed rows, so a span is either in the store or in a spool (or both, when
an acknowledgement was lost: the runs table is ReplacingMergeTree by run id).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mltrace_otel import spool

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("pipeline_worker.py")
PIPELINES, RUNS = 4, 5000

COUNT_SCRIPT = """
import json
from mltrace_otel.store import open_store
with open_store() as s:
    total, distinct = s.query("t", "SELECT count(), uniqExact(RunId) FROM mltrace_runs FINAL")[0]
    outputs = s.query("t", "SELECT uniqExact(arrayJoin(Outputs)) FROM mltrace_runs")[0][0]
    spans = s.query("t", "SELECT count() FROM otel_traces")[0][0]
    print(json.dumps({"runs": total, "distinct": distinct, "outputs": outputs, "spans": spans,
                      "count_runs": s.count_runs()}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLTRACE_", "OTEL_", "DB_SERVER"))}
    env.update({"MLTRACE_DIR": str(home), "PYTHONPATH": str(ROOT)}, **extra)
    return env


def _start_collector(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mltrace_otel.collector"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=log.open("ab"))


def _wait_healthy(proc: subprocess.Popen, port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the collector exited"
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("the collector did not come up")


@pytest.mark.slow
def test_kill_9_while_4_pipelines_log_then_restart_gives_exactly_20000_runs(tmp_path: Path) -> None:
    home, markers, log = tmp_path / "home", tmp_path / "markers", tmp_path / "collector.log"
    markers.mkdir()
    port, gport = _free_port(), _free_port()
    cenv = _env(home, MLTRACE_OTLP_HTTP_PORT=str(port), MLTRACE_OTLP_GRPC_PORT=str(gport),
                MLTRACE_BATCH_DELAY_S="0.2")
    collector = _start_collector(cenv, log)
    workers: list[subprocess.Popen] = []
    try:
        _wait_healthy(collector, port)
        penv = _env(home, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}")
        workers = [subprocess.Popen([sys.executable, str(WORKER), str(w), str(RUNS), str(markers)],
                                    env=penv, cwd=tmp_path) for w in range(PIPELINES)]
        deadline = time.monotonic() + 180
        while len(list(markers.glob("*.half"))) < PIPELINES:  # each has half its runs acknowledged
            assert time.monotonic() < deadline, "pipelines did not get half-way"
            time.sleep(0.02)
        collector.send_signal(signal.SIGKILL)  # mid-stream: the second halves are being sent
        collector.wait(30)
        for w in workers:
            assert w.wait(180) == 0
        stats = " ".join(p.read_text() for p in markers.glob("*.done"))
        assert "spooled=0," not in stats or "exported=0," not in stats  # both paths were used
        assert spool.pending(home / "spool"), "nothing was spooled after the kill"

        collector = _start_collector(cenv, log)  # drains the spool, then serves
        _wait_healthy(collector, port)
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(120) == 0
    finally:
        for p in [collector, *workers]:
            if p.poll() is None:
                p.kill()
    assert not [p for p in (home / "spool").iterdir() if p.is_file()]  # every spooled batch was drained

    out = subprocess.run([sys.executable, "-c", COUNT_SCRIPT], env=_env(home), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    counts = json.loads(out.stdout)
    expected = PIPELINES * RUNS
    assert counts["distinct"] == expected
    assert counts["runs"] == expected  # none duplicated
    assert counts["outputs"] == expected
    assert counts["count_runs"] == expected
    assert counts["spans"] >= expected

    text = log.read_text()
    starts = [line for line in text.splitlines() if "mltrace collector listening:" in line]
    assert len(starts) == 2
    assert f"OTLP/HTTP http://127.0.0.1:{port}/v1/traces" in starts[0]
    assert f"OTLP/gRPC 127.0.0.1:{gport}" in starts[0]
    assert "mltrace collector stopped" in text
