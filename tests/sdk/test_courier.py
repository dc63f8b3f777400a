"""The courier: a pipeline's runs are sent by a process of its own, and none is lost whoever dies.

Real processes, real signals and OTLP/HTTP over real sockets to a receiver that parses each body
with the OpenTelemetry protobuf classes (opentelemetry-proto): the pipeline's calls append to the
durable queue, the courier follows the queue and sends (:mod:`mltrace_otel.sdk.courier`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

import mltrace_otel as mltrace
from mltrace_otel import spool
from mltrace_otel.sdk import durable, export
from mltrace_otel.settings import Settings

REPO = Path(__file__).resolve().parents[2]


class Receiver(ThreadingHTTPServer):
    """OTLP/HTTP protobuf: notes each span id it got (and how often); ``stall_s`` delays answers."""

    def __init__(self) -> None:
        self.spans: dict[bytes, int] = {}
        self.lock = threading.Lock()
        self.stall_s = 0.0
        self.up = True

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(h) -> None:  # noqa: N802, N805
                body = h.rfile.read(int(h.headers["Content-Length"]))
                if h.headers.get("Content-Encoding") == "gzip":
                    import gzip

                    body = gzip.decompress(body)
                req = ExportTraceServiceRequest.FromString(body)
                time.sleep(self.stall_s)
                if not self.up:
                    h.send_response(503)
                    h.send_header("Content-Length", "0")
                    h.end_headers()
                    return
                with self.lock:
                    for rs in req.resource_spans:
                        for ss in rs.scope_spans:
                            for sp in ss.spans:
                                self.spans[sp.span_id] = self.spans.get(sp.span_id, 0) + 1
                out = ExportTraceServiceResponse().SerializeToString()
                h.send_response(200)
                h.send_header("Content-Type", "application/x-protobuf")
                h.send_header("Content-Length", str(len(out)))
                h.end_headers()
                h.wfile.write(out)

            def log_message(h, *a: object) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"

    def distinct(self) -> int:
        with self.lock:
            return len(self.spans)

    def wait_for(self, n: int, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.distinct() < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.distinct()


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.shutdown()
    r.server_close()


def _configure(settings: Settings, url: str, **env: str) -> durable.DurableProcessor:
    s = Settings.from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": url, **env},
                          mltrace_dir=settings.mltrace_dir)
    export.configure(settings=s)
    proc = export._pipeline.processor  # type: ignore[union-attr]
    assert isinstance(proc, durable.DurableProcessor)
    return proc


def _step(name: str = "courier-step") -> Any:
    @mltrace.register(name, inputs=["raw.csv"], output_vars=["out"])
    def step(i: int) -> int:
        out = f"out-{i}.csv"  # noqa: F841 - read by the decorator
        return i

    return step


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _gone(pid: int, timeout_s: float) -> bool:
    """Whether process ``pid`` ended within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _alive(pid)


def test_runs_are_sent_by_a_courier_process_not_a_thread(sdk_settings: Settings, receiver: Any) -> None:
    """Every run reaches the endpoint, sent by another process: no delivery thread in the
    pipeline's process; once flushed, the queue is empty (sent segments are deleted)."""
    proc = _configure(sdk_settings, receiver.url, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="100")
    step = _step()
    for i in range(450):
        step(i)
    assert mltrace.flush()
    assert receiver.distinct() == 450
    courier = proc._courier
    assert courier is not None and courier.alive() and courier.proc.pid != os.getpid()
    assert not [t for t in threading.enumerate() if t.name == "mltrace-deliver"]
    stats = mltrace.delivery_stats()
    assert (stats.exported, stats.dropped, stats.spooled, stats.queued) == (450, 0, 0, 0)
    assert [p.name for p in sdk_settings.spool_dir.iterdir()] == []
    pid = courier.proc.pid
    export.reset()  # the pipeline ends: so does its courier (no leftovers of others to send)
    assert _gone(pid, 10)


def test_the_thread_setting_delivers_without_a_courier(sdk_settings: Settings, receiver: Any) -> None:
    """MLTRACE_DELIVERY=thread: the same runs, sent by a thread of the pipeline's process."""
    proc = _configure(sdk_settings, receiver.url, MLTRACE_DELIVERY="thread")
    step = _step()
    for i in range(50):
        step(i)
    assert mltrace.flush()
    assert receiver.distinct() == 50
    assert proc._courier is None and proc.endpoint is None
    assert [t for t in threading.enumerate() if t.name == "mltrace-deliver"]


@pytest.mark.parametrize("restart_s", [3600.0, 0.0], ids=["dies-young-thread-takes-over", "replaced"])
def test_a_killed_courier_loses_nothing(sdk_settings: Settings, receiver: Any, restart_s: float,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 of the courier while runs wait: the pipeline notices at its next segment and
    delivers them another way (a thread of its own if the courier died young, else a new
    courier); every run arrives, none is dropped."""
    monkeypatch.setattr(durable, "COURIER_RESTART_S", restart_s)
    proc = _configure(sdk_settings, receiver.url, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="50",
                      OTEL_BSP_SCHEDULE_DELAY="600000")
    step = _step()
    for i in range(120):  # two full segments (sent) and 20 runs in the open one
        step(i)
    assert receiver.wait_for(100) >= 100
    first = proc._courier
    assert first is not None
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    for i in range(120, 300):
        step(i)
    assert mltrace.flush()
    assert receiver.wait_for(300, 30) == 300
    assert mltrace.delivery_stats().dropped == 0
    if restart_s:
        assert proc._courier is None and proc.endpoint is None  # a thread delivers now
    else:
        assert proc._courier is not None and proc._courier is not first


def test_a_pipeline_killed_with_sigkill_is_delivered_by_its_courier(sdk_settings: Settings,
                                                                    receiver: Any) -> None:
    """kill -9 of the pipeline while its courier is sending: the courier sees it die, sends every
    run it had appended and exits; no other process is needed, nothing is left in the queue."""
    script = textwrap.dedent("""
        import os, sys, time
        import mltrace_otel as mltrace
        from mltrace_otel.sdk import export

        @mltrace.register("killed", outputs=["o.csv"])
        def step():
            return None

        for _ in range(int(sys.argv[1])):
            step()
        time.sleep(0.5)
        print(export._pipeline.processor._courier.proc.pid, flush=True)
        os.kill(os.getpid(), 9)
    """)
    receiver.stall_s = 0.3  # exports of 50 runs take 0.3 s each: the kill lands mid-export
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLTRACE_"))}
    env.update(MLTRACE_DIR=str(sdk_settings.mltrace_dir), OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.url,
               OTEL_BSP_SCHEDULE_DELAY="600000", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="50", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", script, "250"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    courier_pid = int(out.stdout.split()[0])
    assert receiver.wait_for(250) == 250
    assert _gone(courier_pid, 30)
    assert [p.name for p in sdk_settings.spool_dir.iterdir()] == []


def test_with_the_endpoint_down_no_call_waits_and_the_store_gets_every_run(tmp_settings: Settings,
                                                                             store: Any) -> None:
    """Nothing listens at the endpoint: the courier's export fails, it seals the segments for
    the store's drain, and the pipeline stops waiting for it once it knows (at most while the
    first export fails), although runs past OTEL_BSP_MAX_QUEUE_SIZE pile up: 160 runs over the
    bound, not 160 waits; the drain stores every run, once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _configure(tmp_settings, f"http://127.0.0.1:{port}/v1/traces", OTEL_BSP_MAX_EXPORT_BATCH_SIZE="20",
                      OTEL_BSP_MAX_QUEUE_SIZE="40", OTEL_BSP_EXPORT_TIMEOUT="1000")
    step = _step("down-step")
    for i in range(200):
        step(i)
    assert mltrace.flush()
    stats = mltrace.delivery_stats()
    assert stats.exported == 0 and stats.dropped == 0 and stats.export_failures >= 1
    assert proc.waits <= 2
    assert spool.pending(tmp_settings.spool_dir)  # sealed for the drain
    export.reset()
    store.drain_spool()
    assert store.query("n", "SELECT uniqExact(RunId), count() FROM mltrace_runs FINAL "
                            "WHERE Component = 'down-step'")[0] == (200, 200)


def test_a_slow_endpoint_makes_calls_wait_instead_of_dropping(sdk_settings: Settings, receiver: Any) -> None:
    """An endpoint slower than the pipeline: past OTEL_BSP_MAX_QUEUE_SIZE waiting runs the calls
    wait for the courier (counted), nothing is dropped, and every run arrives."""
    receiver.stall_s = 0.3
    proc = _configure(sdk_settings, receiver.url, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="25",
                      OTEL_BSP_MAX_QUEUE_SIZE="60")
    step = _step("slow-step")
    for i in range(400):
        step(i)
    assert proc.waits > 0
    assert mltrace.flush()
    assert receiver.wait_for(400) == 400
    assert mltrace.delivery_stats().dropped == 0


def test_a_queue_of_one_run_waits_but_never_hangs(sdk_settings: Settings, receiver: Any) -> None:
    """OTEL_BSP_MAX_QUEUE_SIZE=1: each call waits for the run before it to be sent (the courier
    is told each segment is closed), and every call returns."""
    proc = _configure(sdk_settings, receiver.url, OTEL_BSP_MAX_QUEUE_SIZE="1")
    step = _step("one-step")
    for i in range(20):
        step(i)
    assert proc.waits > 0
    assert mltrace.flush()
    assert receiver.distinct() == 20


def test_a_host_with_default_sigpipe_survives_its_courier_dying(sdk_settings: Settings,
                                                                receiver: Any) -> None:
    """A program that restored SIGPIPE's default action (many CLI tools do) is not killed when
    it talks to a courier that died: the flush goes on from a thread, every run arrives."""
    script = textwrap.dedent("""
        import os, signal, sys
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        import mltrace_otel as mltrace
        from mltrace_otel.sdk import export

        @mltrace.register("sigpipe", outputs=["o.csv"])
        def step():
            return None

        for _ in range(30):
            step()
        courier = export._pipeline.processor._courier
        os.kill(courier.proc.pid, signal.SIGKILL)
        courier.proc.wait()
        print("flushed", mltrace.flush(), flush=True)
        for _ in range(30):
            step()
        print("flushed", mltrace.flush(), flush=True)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLTRACE_"))}
    env.update(MLTRACE_DIR=str(sdk_settings.mltrace_dir), OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.url,
               OTEL_BSP_SCHEDULE_DELAY="600000", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["flushed", "True", "flushed", "True"]
    assert receiver.wait_for(60) == 60


def test_closing_after_the_courier_died_delivers_every_run(sdk_settings: Settings, receiver: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The courier dies (killed with the process group, say) and the pipeline is then closed
    without a flush first (export.reset(), or configure() rebuilding it): the closing process
    sends the runs itself; none waits for its exit, none for the drain."""
    monkeypatch.setattr(durable, "COURIER_RESTART_S", 0.0)  # an old courier: it would be replaced
    proc = _configure(sdk_settings, receiver.url, OTEL_BSP_SCHEDULE_DELAY="600000")
    step = _step("closing-step")
    for i in range(30):
        step(i)
    c = proc._courier
    assert c is not None
    os.kill(c.proc.pid, signal.SIGTERM)
    c.proc.wait(10)
    export.reset()
    assert receiver.wait_for(30, 10) == 30
    assert [p.name for p in sdk_settings.spool_dir.iterdir()] == []


def test_a_process_holding_over_1024_descriptors_delivers(sdk_settings: Settings, receiver: Any) -> None:
    """A pipeline process with more than FD_SETSIZE (1,024) open descriptors (a test runner, a
    server holding many sockets): waiting for the courier works (poll, not select), back-pressure
    included, and every run arrives."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1300
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"the descriptor limit ({hard}) is below {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        proc = _configure(sdk_settings, receiver.url, OTEL_BSP_MAX_EXPORT_BATCH_SIZE="20",
                          OTEL_BSP_MAX_QUEUE_SIZE="40")
        step = _step("fd-step")
        for i in range(200):
            step(i)
        assert proc._courier is not None and proc._courier._sock.fileno() > 1024
        assert mltrace.flush()
        assert receiver.distinct() == 200
        assert mltrace.delivery_stats().dropped == 0
    finally:
        export.reset()
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


_PIPELINE = textwrap.dedent("""
    import os, sys, time
    import mltrace_otel as mltrace

    @mltrace.register(sys.argv[1], outputs=["o.csv"])
    def step():
        return None

    for _ in range(int(sys.argv[2])):
        step()
    print("returned", os.getpid(), flush=True)
    time.sleep(float(sys.argv[3]))
""")


def _pipeline_env(settings: Settings, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLTRACE_"))}
    env.update(MLTRACE_DIR=str(settings.mltrace_dir), OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=url,
               PYTHONPATH=str(REPO))
    return env


def test_a_short_next_pipeline_sends_what_an_earlier_one_spooled(sdk_settings: Settings,
                                                                 receiver: Any) -> None:
    """A pipeline ran while the endpoint was down (its runs sealed in the spool); the next one,
    a script of one run that exits at once, has its courier send them too (after the script
    exited, if need be): the user does not need a long-running process for that."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}/v1/traces"
    first = subprocess.run([sys.executable, "-c", _PIPELINE, "spooled-step", "25", "0"],
                           env=_pipeline_env(sdk_settings, down), capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    assert spool.pending(sdk_settings.spool_dir)  # sealed for whoever comes next
    assert receiver.distinct() == 0
    second = subprocess.run([sys.executable, "-c", _PIPELINE, "next-step", "1", "0"],
                            env=_pipeline_env(sdk_settings, receiver.url), capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    assert receiver.wait_for(26, 30) == 26
    deadline = time.monotonic() + 30
    while spool.pending(sdk_settings.spool_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not spool.pending(sdk_settings.spool_dir)


def test_sigterm_to_the_process_group_delivers_every_run(sdk_settings: Settings, receiver: Any) -> None:
    """SIGTERM to the pipeline's whole process group (systemctl stop, kill -- -PGID; SIGHUP when
    its terminal closes) reaches the courier too: it sends every run on disk before it exits."""
    env = _pipeline_env(sdk_settings, receiver.url)
    env["OTEL_BSP_SCHEDULE_DELAY"] = "600000"  # nothing is due before the signal
    proc = subprocess.Popen([sys.executable, "-c", _PIPELINE, "group-step", "40", "60"], env=env,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("returned")
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert receiver.wait_for(40, 30) == 40
