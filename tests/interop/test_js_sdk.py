"""A non-Python client: the official OpenTelemetry JS SDK sends a 3-step pipeline through each of
its OTLP exporters (http/protobuf, http/json, gRPC) to a real ``mltrace server``, and the ``mltrace``
CLI, another process, traces it while the server holds the store.

The JS side is ``js/pipeline.js`` with the SDK pinned in ``js/package-lock.json``; scripts/test.sh
installs it (``npm ci``) when node and npm are present. The JS HTTP exporters stream their bodies
(``Transfer-Encoding: chunked``, no Content-Length), so the http/protobuf and http/json cases
check the collector reads chunked requests.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mltrace_otel import conventions
from tests.collector.test_crash import ROOT, _env, _free_port, _wait_healthy

JS_DIR = Path(__file__).with_name("js")
NODE = shutil.which("node")
KINDS = ("proto", "proto-gzip", "json", "grpc")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NODE is None, reason="node is not installed (needed to run the OpenTelemetry JS SDK)"),
    pytest.mark.skipif(not (JS_DIR / "node_modules").is_dir(),
                       reason="the OpenTelemetry JS SDK is not installed: run `npm ci --prefix "
                              "tests/interop/js` (scripts/test.sh does when npm is present)"),
]


@dataclass
class Server:
    proc: subprocess.Popen
    env: dict[str, str]
    http_port: int
    grpc_port: int
    log: Path

    def endpoint(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.grpc_port if kind == 'grpc' else self.http_port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `mltrace server` for the module; at the end SIGTERM must stop it with exit code 0."""
    tmp = tmp_path_factory.mktemp("js_interop")
    http_port, grpc_port, ui_port = _free_port(), _free_port(), _free_port()
    env = _env(tmp / "home", MLTRACE_BATCH_DELAY_S="0.1")
    log = tmp / "server.log"
    cmd = [sys.executable, "-m", "mltrace_otel.cli.app", "server",
           "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--ui-port", str(ui_port)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    try:
        _wait_healthy(proc, http_port)
        yield Server(proc, env, http_port, grpc_port, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
        assert "mltrace server stopped" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _run_pipeline(server: Server, kind: str) -> dict[str, str]:
    """Runs pipeline.js with one exporter; returns {component: run id} as the JS SDK made them."""
    out = subprocess.run([NODE, str(JS_DIR / "pipeline.js"), kind, server.endpoint(kind)], env=server.env,
                         cwd=JS_DIR, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"the JS SDK's {kind} exporter failed:\n{out.stderr}"
    sent = json.loads(out.stdout)
    assert sent["exported"] == 3
    return sent["runs"]


def _trace(server: Server, output: str, timeout: float = 60) -> dict:
    """`mltrace trace OUTPUT --json` once all 3 runs are indexed (the server acknowledges a request
    when it is journaled; its rows are queryable moments later)."""
    deadline = time.monotonic() + timeout
    while True:
        out = server.cli("trace", output, "--json")
        if out.returncode == 0 and len(json.loads(out.stdout)["nodes"]) == 3:
            return json.loads(out.stdout)
        assert time.monotonic() < deadline, f"trace {output}: never 3 runs:\n{out.stdout}{out.stderr}"
        assert server.proc.poll() is None, server.log.read_text()[-3000:]
        time.sleep(0.3)


@pytest.mark.parametrize("kind", KINDS)
def test_js_sdk_pipeline_is_traced_by_the_cli(server: Server, kind: str) -> None:
    ids = _run_pipeline(server, kind)
    raw, clean, report = (f"js-{kind}/{name}" for name in ("raw.csv", "clean.csv", "report.txt"))
    ingest_c, clean_c, report_c = (f"js-{kind}-{step}" for step in ("ingest", "clean", "report"))

    lineage = _trace(server, report)
    assert lineage["root"] == report and lineage["direction"] == "trace"
    # report <- clean <- ingest, one run each, with the run ids the JS SDK generated (span ids)
    depths = sorted((n["depth"], n["run"]["component"]) for n in lineage["nodes"])
    assert depths == [(0, report_c), (1, clean_c), (2, ingest_c)]
    runs = {n["run"]["component"]: n["run"] for n in lineage["nodes"]}
    assert {c: r["id"] for c, r in runs.items()} == ids
    edges = sorted((e["producer"], e["consumer"], e["pointer"]) for e in lineage["edges"])
    assert edges == sorted([(ids[clean_c], ids[report_c], clean), (ids[ingest_c], ids[clean_c], raw)])

    io = {c: ([p["name"] for p in r["inputs"]], [p["name"] for p in r["outputs"]]) for c, r in runs.items()}
    assert io == {ingest_c: ([], [raw]), clean_c: ([raw], [clean]), report_c: ([clean], [report])}
    # a consumer's input version is the fingerprint its producer wrote
    assert runs[clean_c]["inputs"][0]["version"] == runs[ingest_c]["outputs"][0]["version"] != ""
    assert runs[report_c]["inputs"][0]["version"] == runs[clean_c]["outputs"][0]["version"] != ""
    producer = {ingest_c: [], clean_c: [ids[ingest_c]], report_c: [ids[clean_c]]}
    for c, r in runs.items():
        assert r["status"] == "ok" and r["otel_status"] == "OK", (c, r["status"], r["status_message"])
        assert r["service_name"] == "mltrace-js-interop"
        assert (r["owner"], r["tags"]) == ("js-team", ["js", "interop", kind])
        assert {p["type"] for p in r["inputs"] + r["outputs"]} == {"DATA"}
        assert r["dependencies"] == producer[c]
    assert runs[report_c]["tests"] == [
        {"name": "RowCount", "method": "testRowCount", "phase": "after", "passed": True, "message": ""}]
    # `mltrace history COMPONENT` shows each component's run
    for component, run_id in ids.items():
        out = server.cli("history", component, "--json")
        assert out.returncode == 0, out.stderr
        assert [r["id"] for r in json.loads(out.stdout)] == [run_id]

    # thresholds: unset -> the default; 86400 (an OTLP int); 3600.5 (a JS number that is not an
    # integer, so an OTLP double) -> whole seconds, truncated as the Python SDK's int() does
    assert runs[ingest_c]["staleness_threshold_s"] == conventions.DEFAULT_STALENESS_THRESHOLD_S
    assert runs[report_c]["staleness_threshold_s"] == 86400
    threshold = runs[clean_c]["staleness_threshold_s"]
    assert threshold == 3600, (f"{conventions.RUN_STALENESS_THRESHOLD_S}=3600.5 was read as {threshold}; "
                               f"{clean_c}'s staleness: {runs[clean_c]['stale']}")
    assert {c: r["stale"] for c, r in runs.items()} == {c: [] for c in runs}
