"""`mltrace server`, `collector` and `ui` start for real on free loopback ports, serve, and stop
cleanly on Ctrl-C; while `mltrace server` holds the embedded store, a pipeline exporting OTLP to
it, `mltrace recent` and `mltrace demo` in other processes see the same runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

PIPELINE = textwrap.dedent("""
    import mltrace_otel as mltrace
    c = mltrace.Component(name="served", owner="ops", tags=["smoke"])

    @c.run(inputs=["in.csv"], outputs=["out.csv"])
    def f():
        pass

    f()
    assert mltrace.flush()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLTRACE_", "OTEL_"))}
    env.update(MLTRACE_DIR=str(home), MLTRACE_HOST="127.0.0.1", NO_COLOR="1", **extra)
    return env


def _start(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mltrace_otel.cli.app", *args], env=_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_http(proc: subprocess.Popen[str], url: str, timeout_s: float = 90.0) -> int:
    """Poll ``url`` until it answers (any HTTP status); fail with the process output if it dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode}:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer in {timeout_s} s")


def _stop(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C, then the exit code must be 0 and no traceback printed."""
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"did not stop on SIGINT:\n{out}")
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    return out


@pytest.mark.slow
def test_server_serves_otlp_ui_and_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    http, grpc, ui = _free_port(), _free_port(), _free_port()
    proc = _start(home, "server", "--http-port", str(http), "--grpc-port", str(grpc), "--ui-port", str(ui))
    try:
        assert _wait_http(proc, f"http://127.0.0.1:{ui}/") == 200
        env = _env(home, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{http}")
        pipe = subprocess.run([sys.executable, "-c", PIPELINE], env=env, capture_output=True, text=True,
                              timeout=120)
        assert pipe.returncode == 0, pipe.stderr
        runs: list = []
        deadline = time.monotonic() + 30
        while not runs and time.monotonic() < deadline:  # the collector batches for ~1 s
            cli = subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", "recent", "--json"],
                                 env=_env(home), capture_output=True, text=True, timeout=120)
            assert cli.returncode == 0, cli.stderr
            runs = json.loads(cli.stdout)
            time.sleep(0.3)
        assert [(r["component"], r["owner"], [p["name"] for p in r["outputs"]]) for r in runs] == [
            ("served", "ops", ["out.csv"])]
        # the demo also works while the server holds the embedded store (the server drains)
        demo = subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", "demo"], env=_env(home),
                              capture_output=True, text=True, timeout=180)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        review = subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", "review", "--json"],
                                env=_env(home), capture_output=True, text=True, timeout=120)
        assert len(json.loads(review.stdout)["flagged"]) == 4
    finally:
        if proc.poll() is None:
            _stop(proc)


@pytest.mark.slow
def test_collector_alone_starts_and_stops(tmp_path: Path) -> None:
    http, grpc = _free_port(), _free_port()
    proc = _start(tmp_path / "home", "collector", "--http-port", str(http), "--grpc-port", str(grpc))
    try:
        _wait_http(proc, f"http://127.0.0.1:{http}/metrics")
    finally:
        out = _stop(proc) if proc.poll() is None else ""
    assert str(http) in out  # it says where it listens


@pytest.mark.slow
def test_ui_alone_starts_and_stops(tmp_path: Path) -> None:
    port = _free_port()
    proc = _start(tmp_path / "home", "ui", "--port", str(port))
    try:
        assert _wait_http(proc, f"http://127.0.0.1:{port}/") == 200
    finally:
        out = _stop(proc) if proc.poll() is None else ""
    assert f"127.0.0.1:{port}" in out
