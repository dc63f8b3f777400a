"""A run that returned is never lost: each run is in the durable queue before the decorated call
returns, whatever ends the process next, and reaches the store (drained) or a collector (sent).

Real processes (tests/sdk/durable_worker.py), real signals, the real embedded store and a real
collector; the encoder is checked against the OpenTelemetry exporter's own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("durable_worker.py")


def _env(settings: Any, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLTRACE_", "OTEL_", "DB_SERVER"))}
    env.update({"MLTRACE_DIR": str(settings.mltrace_dir), "PYTHONPATH": str(ROOT)}, **extra)
    return env


def _run(settings: Any, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, str(WORKER), *args], env=_env(settings, **env), cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout)
    assert "returned" in out.stdout, out.stderr[-3000:]
    return out


def _runs(store: Any, component: str) -> tuple[int, int]:
    """(distinct run ids, rows) of a component in mltrace_runs after de-duplication."""
    return store.query("t", "SELECT uniqExact(RunId), count() FROM mltrace_runs FINAL WHERE Component = "
                            "{c:String}", {"c": component})[0]


# --- the encoder ---------------------------------------------------------------------------------

def test_the_fast_encoder_gives_what_the_opentelemetry_exporter_gives() -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import (
        Link,
        NonRecordingSpan,
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
        set_span_in_context,
    )

    from mltrace_otel.sdk.wire import encode_request

    mem = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "s", "n": 3, "l": ["a", "b"]}))
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracer = provider.get_tracer("scope", "1.0", schema_url="https://example.com/s")
    remote = SpanContext(trace_id=7, span_id=9, is_remote=True, trace_flags=TraceFlags(1))
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER) as root:
        with tracer.start_as_current_span("run", links=[Link(root.get_span_context(), {"io": "x.csv"})]) as s:
            s.set_attributes({"s": "héllo \x00 \u202e", "empty": "", "i": -5, "big": 2**62, "b": False,
                              "f": 1.5e-300, "ls": ["a", ""], "li": [1, -2], "lb": [True, False],
                              "lf": [0.1, float("inf")], "none_in_list": []})
            s.add_event("mltrace.test", {"mltrace.test.passed": True, "n": 1})
            s.add_event("plain")
            s.set_status(Status(StatusCode.ERROR, "boom"))
        with tracer.start_as_current_span("ok") as ok:
            ok.set_status(Status(StatusCode.OK))
    parent = set_span_in_context(NonRecordingSpan(remote))
    with tracer.start_as_current_span("child of remote", context=parent):
        pass
    spans = mem.get_finished_spans()
    assert len(spans) == 4
    for span in spans:
        assert ExportTraceServiceRequest.FromString(encode_request([span])) == encode_spans([span]), span.name
        assert ExportTraceServiceRequest.FromString(encode_request([span])) == encode_spans([span])  # cached


# --- stops right after a run ----------------------------------------------------------------------

STOPS = ["sigterm", "sigint", "kill9", "exit"]


@pytest.mark.slow
@pytest.mark.parametrize("delay", ["0", "0.3"])
@pytest.mark.parametrize("mode", STOPS)
def test_a_run_survives_its_process_ending_right_after(tmp_settings: Any, store: Any, mode: str,
                                                       delay: str) -> None:
    """No collector: the run is in the spool when the call returns; the process then ends by a
    signal or os._exit (no exit hook runs for most), and the next store opening drains it, once."""
    tag = f"{mode}-{delay.replace('.', '')}"
    _run(tmp_settings, mode, tag, "1", delay)
    store.drain_spool()
    assert _runs(store, f"step-{tag}") == (1, 1)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["pool-fork", "pool-spawn", "pool-forkserver", "executor", "joblib"])
def test_every_worker_run_of_a_process_pool_is_kept(tmp_settings: Any, store: Any, mode: str) -> None:
    """multiprocessing.Pool stops its workers with SIGTERM and they leave through os._exit: their
    runs are in the queue all the same."""
    tag = mode.replace("-", "")
    _run(tmp_settings, mode, tag, "40", timeout=300)
    store.drain_spool()
    assert _runs(store, f"step-{tag}") == (40, 40)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_with_a_collector_down_a_killed_run_is_sent_by_the_next_process(tmp_settings: Any,
                                                                        store: Any) -> None:
    """A collector is configured but down; the process is killed right after its run. The next
    SDK process with that endpoint sends what the dead one left, once the collector is back."""
    from mltrace_otel.collector.server import Collector
    from tests.collector.conftest import collector_settings, stored_runs

    port = _free_port()
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    _run(tmp_settings, "kill9", "lost", "3", **endpoint)
    settings = collector_settings(tmp_settings, otlp_http_port=port, ack="indexed")
    with Collector(settings, store, drain_every_s=0, grpc=False) as c:
        _run(tmp_settings, "normal", "next", "1", **endpoint)  # its exit delivers the leftovers
        assert c.flush(60)
    assert _runs(store, "step-lost") == (3, 3)
    assert _runs(store, "step-next") == (1, 1)
    assert not [p for p in tmp_settings.spool_dir.iterdir() if p.is_file()]  # sent, then deleted
    assert stored_runs  # (imported for its flush of live collectors; none are live here)


@pytest.mark.slow
@pytest.mark.parametrize("mode", STOPS)
def test_with_a_collector_a_run_survives_its_process_ending_right_after(tmp_settings: Any, store: Any,
                                                                        mode: str) -> None:
    """A collector is configured and up: a run whose process ends right after the call (before
    the background delivery) reaches it -- at exit, or from the queue by the next SDK process."""
    from mltrace_otel.collector.server import Collector
    from tests.collector.conftest import collector_settings

    port = _free_port()
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    settings = collector_settings(tmp_settings, otlp_http_port=port, ack="indexed")
    with Collector(settings, store, drain_every_s=0, grpc=False) as c:
        _run(tmp_settings, mode, f"c{mode}", "1", **endpoint)
        _run(tmp_settings, "normal", f"after{mode}", "1", **endpoint)  # delivers what is left
        assert c.flush(60)
    assert _runs(store, f"step-c{mode}") == (1, 1)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["pool-fork", "pool-spawn"])
def test_every_worker_run_of_a_pool_reaches_a_collector(tmp_settings: Any, store: Any, mode: str) -> None:
    """With a collector, each pool worker's runs are sent by its own courier: forked workers
    drop the parent's (its socket is closed in the child), and the workers' os._exit ends their
    couriers only after they sent everything; no other process is needed, the queue ends empty."""
    from mltrace_otel.collector.server import Collector
    from tests.collector.conftest import collector_settings

    port = _free_port()
    settings = collector_settings(tmp_settings, otlp_http_port=port, ack="indexed")
    tag = "c" + mode.replace("-", "")
    with Collector(settings, store, drain_every_s=0, grpc=False) as c:
        _run(tmp_settings, mode, tag, "40", timeout=300, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while _runs(store, f"step-{tag}")[0] < 40 and time.monotonic() < deadline:
            assert c.flush(10)
            time.sleep(0.2)
    assert _runs(store, f"step-{tag}") == (40, 40)
    assert not [p for p in tmp_settings.spool_dir.iterdir() if p.is_file()]


@pytest.mark.slow
def test_100000_calls_reach_a_collector(tmp_settings: Any, store: Any) -> None:
    """With a collector configured, 100,000 calls in a tight loop: 100,000 runs received."""
    from mltrace_otel.collector.server import Collector
    from tests.collector.conftest import collector_settings

    port = _free_port()
    settings = collector_settings(tmp_settings, otlp_http_port=port)
    with Collector(settings, store, drain_every_s=0, grpc=False) as c:
        out = _run(tmp_settings, "normal", "cloop", "100000", timeout=600,
                   OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}")
        assert c.flush(120)
    assert _runs(store, "step-cloop") == (100000, 100000)
    left = [p for p in tmp_settings.spool_dir.iterdir() if p.is_file()]
    assert not left, out.stderr[-2000:]  # all sent, none left


@pytest.mark.slow
def test_100000_calls_in_a_tight_loop_all_reach_the_store(tmp_settings: Any, store: Any) -> None:
    """No run is dropped for a full queue: every call's run is appended before it returns."""
    _run(tmp_settings, "normal", "loop", "100000", timeout=600)
    store.drain_spool()
    assert _runs(store, "step-loop") == (100000, 100000)


def test_the_otel_bsp_variables_set_the_delivery(tmp_settings: Any) -> None:
    """OTEL_BSP_* (the OTel spec's batch span processor variables) drive the delivery: with a
    delay of ten minutes and a batch of 3, the third run's segment is sealed for the store at
    once, while two runs wait."""
    import time

    import mltrace_otel as mltrace
    from mltrace_otel import spool
    from mltrace_otel.sdk import export
    from mltrace_otel.settings import Settings

    settings = Settings.from_env({"OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "3",
                                  "OTEL_BSP_MAX_QUEUE_SIZE": "7", "OTEL_BSP_EXPORT_TIMEOUT": "1500"},
                                 mltrace_dir=tmp_settings.mltrace_dir)
    export.configure(settings=settings)
    try:
        proc = export._pipeline.processor  # type: ignore[union-attr]
        assert (proc.delay_s, proc.batch, proc.max_pending, proc.timeout_s) == (600.0, 3, 7, 1.5)
        step = mltrace.register("bsp", outputs=["o"])(lambda: None)
        step()
        step()
        time.sleep(0.3)
        assert spool.pending(settings.spool_dir) == []  # two runs: not due for ten minutes
        step()  # the third makes a batch
        deadline = time.monotonic() + 30
        while not spool.pending(settings.spool_dir):
            assert time.monotonic() < deadline, "a full batch was not delivered"
            time.sleep(0.05)
        assert sum(len(spool.payloads(p)) for p in spool.pending(settings.spool_dir)) == 3
    finally:
        export.reset()


def test_delivery_starts_well_before_calls_would_wait(tmp_settings: Any) -> None:
    """The SDK delivers once 4,096 runs wait by default, but never later than half of
    OTEL_BSP_MAX_QUEUE_SIZE (where calls start waiting for delivery): a queue of the OTel SDK's
    default 2,048, set for other SDKs in the same environment, delivers every 1,024 runs instead
    of making every 2,048th call wait."""
    from mltrace_otel.sdk import export
    from mltrace_otel.settings import Settings

    for env, batch in (({}, 4096), ({"OTEL_BSP_MAX_QUEUE_SIZE": "2048"}, 1024),
                       ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "100", "OTEL_BSP_MAX_QUEUE_SIZE": "2048"}, 100)):
        settings = Settings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", **env},
                                     mltrace_dir=tmp_settings.mltrace_dir)
        export.configure(settings=settings)
        try:
            assert export._pipeline.processor.batch == batch, env  # type: ignore[union-attr]
        finally:
            export.reset()
