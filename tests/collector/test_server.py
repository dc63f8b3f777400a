"""`mltrace server` (run_server) end to end in a subprocess: collector + Dash app + /metrics on
one embedded store, the CLI querying that store while the server holds it, SIGTERM exits 0."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.collector.conftest import make_spans, run_ids
from tests.collector.test_crash import ROOT, _env, _free_port, _wait_healthy


def _get(port: int, path: str, headers: dict | None = None) -> tuple[int, str]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        c.close()


@pytest.mark.slow
def test_server_runs_collector_ui_metrics_and_shares_the_store(tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    home, log = tmp_path / "home", tmp_path / "server.log"
    http_port, grpc_port, ui_port = _free_port(), _free_port(), _free_port()
    env = _env(home, MLTRACE_OTLP_HTTP_PORT=str(http_port), MLTRACE_OTLP_GRPC_PORT=str(grpc_port),
               MLTRACE_UI_PORT=str(ui_port), MLTRACE_BATCH_DELAY_S="0.1")
    server = subprocess.Popen([sys.executable, "-m", "mltrace_otel.server"], env=env,
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    try:
        _wait_healthy(server, http_port)
        spans = make_spans(3, component="served")
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/traces")
        assert exporter.export(spans).name == "SUCCESS"

        deadline = time.monotonic() + 60
        while True:  # the UI starts right after the collector
            try:
                status, page = _get(ui_port, "/")
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.2)
        assert status == 200
        status, metrics = _get(ui_port, "/metrics")
        assert status == 200
        assert 'mltrace_collector_spans_received_total{protocol="http/protobuf"} 3.0' in metrics
        status, metrics = _get(http_port, "/metrics")
        assert status == 200 and "mltrace_collector_spans_committed_total 3.0" in metrics
        # the store-derived series are served next to the collector's own
        assert 'mltrace_component_runs_total{component="served",status="ok"} 3.0' in metrics
        assert "mltrace_metrics_store_up 1.0" in metrics

        # the CLI, another process, reads the store the server holds
        out = subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", "recent", "--json"],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert all(i in out.stdout for i in run_ids(spans))

        # a second collector cannot write into the store the server holds: it says so and exits 1
        other = dict(env, MLTRACE_OTLP_HTTP_PORT=str(_free_port()), MLTRACE_OTLP_GRPC_PORT=str(_free_port()))
        out = subprocess.run([sys.executable, "-m", "mltrace_otel.collector"], env=other, cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 1 and "held by another process" in out.stderr

        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0
    finally:
        if server.poll() is None:
            server.kill()
    text = log.read_text()
    [start] = [line for line in text.splitlines() if "mltrace server listening:" in line]
    assert f"OTLP/HTTP http://127.0.0.1:{http_port}/v1/traces" in start
    assert f"UI http://127.0.0.1:{ui_port}/" in start
    assert f"query API http://127.0.0.1:{ui_port}/api/v1" in start
    assert "mltrace server stopped" in text
    assert '"GET /metrics HTTP/1.1" 200' in text and "\x1b[" not in text  # request lines, no colours


@pytest.mark.slow
def test_the_cli_reads_the_store_while_mltrace_collector_holds_it(tmp_path: Path) -> None:
    """``mltrace collector`` shares the embedded store like ``mltrace server`` does: the CLI,
    another process, answers at once instead of waiting for the store and failing."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    home, log = tmp_path / "home", tmp_path / "collector.log"
    http_port = _free_port()
    env = _env(home, MLTRACE_OTLP_HTTP_PORT=str(http_port), MLTRACE_OTLP_GRPC_PORT=str(_free_port()),
               MLTRACE_BATCH_DELAY_S="0.1", MLTRACE_STORE_WAIT_S="5")
    collector = subprocess.Popen([sys.executable, "-m", "mltrace_otel.collector"], env=env, cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    try:
        _wait_healthy(collector, http_port)
        spans = make_spans(3, component="collected")
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/traces")
        assert exporter.export(spans).name == "SUCCESS"
        deadline = time.monotonic() + 60
        while True:  # acknowledged once journaled: queryable a moment later
            out = subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", "recent", "--json"],
                                 env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            if all(i in out.stdout for i in run_ids(spans)):
                break
            assert time.monotonic() < deadline, out.stdout
            time.sleep(0.3)
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(60) == 0
    finally:
        if collector.poll() is None:
            collector.kill()
