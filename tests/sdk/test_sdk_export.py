"""Export: the spool (durable across kill -9), OTLP/HTTP and gRPC to real local receivers,
fallback to the spool when the endpoint is down, counted drops, and the app's own provider."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import warnings
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from sdk_helpers import _spans_of, spooled_spans

import mltrace_otel as mltrace
from mltrace_otel import conventions as C
from mltrace_otel.sdk import config, export
from mltrace_otel.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLTRACE_", "SAVE_DIR"))}
    env.update(extra)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# --- spool ---------------------------------------------------------------------------------


def test_spool_keeps_every_flushed_span_across_kill_9(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        import mltrace_otel as mltrace

        @mltrace.register("writer", inputs=["in.csv"], outputs=["out.csv"])
        def step(i):
            return i

        ids = []
        for i in range(40):
            cr = mltrace.ComponentRun("manual")
            cr.set_start_timestamp(); cr.add_output(f"out-{i}"); cr.set_end_timestamp()
            ids.append(mltrace.log_component_run(cr))
            step(i)
        assert mltrace.flush()
        print(" ".join(ids), flush=True)
        for i in range(1000):   # keep writing, unflushed, until killed
            step(i)
            time.sleep(0.001)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env=_child_env(MLTRACE_DIR=str(tmp_path), MLTRACE_EXPORT="spool"))
    try:
        line = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    flushed = line.split()
    assert len(flushed) == 40
    got = spooled_spans(tmp_path / "spool")
    assert set(flushed) <= set(got)
    assert sum(1 for s in got.values() if s["name"] == "writer") >= 40
    assert {got[i]["attrs"][C.RUN_OUTPUTS][0] for i in flushed} == {f"out-{i}" for i in range(40)}


def test_runs_go_to_the_spool_by_default(sdk_settings):
    export.configure(settings=sdk_settings)

    @mltrace.register("etl", inputs=["raw.csv"], outputs=["clean.csv"])
    def etl():
        pass

    for _ in range(5):
        etl()
    assert export.delivery_stats().destination == f"spool {sdk_settings.spool_dir}"
    assert mltrace.flush() is True
    stats = mltrace.delivery_stats()
    assert (stats.spooled, stats.dropped, stats.queued) == (5, 0, 0)
    got = spooled_spans(sdk_settings.spool_dir)
    assert len(got) == 5
    s = next(iter(got.values()))
    assert (s["name"], s["kind"], s["scope"]) == ("etl", 1, C.SCOPE_NAME)  # 1 = SPAN_KIND_INTERNAL
    assert s["resource"]["service.name"] == C.DEFAULT_SERVICE_NAME


def test_sync_configure_writes_before_the_call_returns(sdk_settings):
    export.configure(settings=sdk_settings, sync=True)
    cr = mltrace.ComponentRun("now")
    cr.set_start_timestamp()
    cr.set_end_timestamp()
    run_id = mltrace.log_component_run(cr)
    assert list(spooled_spans(sdk_settings.spool_dir)) == [run_id]


def test_full_spool_drops_are_counted_and_warned_once(sdk_settings):
    export.configure(settings=sdk_settings.replace(spool_max_mb=0), sync=True)

    @mltrace.register("etl")
    def etl():
        return 1

    with pytest.warns(RuntimeWarning, match="could not be delivered") as record:
        for _ in range(3):
            assert etl() == 1  # the pipeline is unaffected
    assert len([w for w in record if "could not be delivered" in str(w.message)]) == 1
    stats = mltrace.delivery_stats()
    assert (stats.dropped, stats.spooled) == (3, 0)
    assert "MLTRACE_SPOOL_MAX_MB" in stats.last_error


def test_resource_from_otel_service_name_and_attributes(sdk_settings):
    s = Settings.from_env({"OTEL_SERVICE_NAME": "taxi-pipeline",
                           "OTEL_RESOURCE_ATTRIBUTES": "team=ml,service.name=ignored",
                           "MLTRACE_DIR": str(sdk_settings.mltrace_dir)})
    export.configure(settings=s, sync=True)
    mltrace.register("etl")(lambda: None)()
    (span,) = spooled_spans(s.spool_dir).values()
    assert span["resource"]["service.name"] == "taxi-pipeline"
    assert span["resource"]["team"] == "ml"


def test_bad_environment_warns_and_keeps_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MLTRACE_DIR", str(tmp_path))
    monkeypatch.setenv("MLTRACE_SPOOL_MAX_MB", "lots")
    with pytest.warns(RuntimeWarning, match="MLTRACE_SPOOL_MAX_MB"):
        s = config.current_settings()
    assert s.spool_max_mb == 1024 and s.mltrace_dir == tmp_path


# --- OTLP ----------------------------------------------------------------------------------


class _Receiver(ThreadingHTTPServer):
    """A minimal OTLP/HTTP receiver: POST /v1/traces, protobuf in, protobuf out."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict, ExportTraceServiceRequest]] = []
        self.json_bodies: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(h) -> None:  # noqa: N802, N805
                body = h.rfile.read(int(h.headers["Content-Length"]))
                if h.path != "/v1/traces" or h.headers["Content-Type"] not in (
                        "application/x-protobuf", "application/json"):
                    h.send_response(400)
                    h.end_headers()
                    return
                if h.headers["Content-Type"] == "application/json":
                    self.json_bodies.append(json.loads(body))
                else:
                    self.requests.append((dict(h.headers), ExportTraceServiceRequest.FromString(body)))
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
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def receiver():
    r = _Receiver()
    yield r
    r.shutdown()
    r.server_close()


def test_runs_export_over_otlp_http_to_a_real_receiver(receiver, sdk_settings):
    s = sdk_settings.replace(otlp_endpoint=receiver.url, otlp_headers={"x-team-token": "s3cret"},
                             service_name="pipeline-a")
    export.configure(settings=s)
    assert mltrace.delivery_stats().destination == f"otlp {receiver.url}/v1/traces"
    c = mltrace.Component("train", owner="ana", tags=["ml"])

    @mltrace.register("clean", outputs=["clean.csv"])
    def clean():
        pass

    @c.run(inputs=["clean.csv"], outputs=["model.pkl"], staleness_threshold=3600)
    def train():
        pass

    clean()
    train()
    assert mltrace.flush()
    got = {}
    for headers, req in receiver.requests:
        assert headers["x-team-token"] == "s3cret"
        got.update(_spans_of(req))
    by_name = {v["name"]: (k, v) for k, v in got.items()}
    clean_id, _ = by_name["clean"]
    _, t = by_name["train"]
    assert t["resource"]["service.name"] == "pipeline-a"
    assert t["scope"] == C.SCOPE_NAME and t["kind"] == 1
    a = t["attrs"]
    assert a[C.COMPONENT_NAME] == "train" and a[C.COMPONENT_OWNER] == "ana" and a[C.COMPONENT_TAGS] == ["ml"]
    assert a[C.RUN_INPUTS] == ["clean.csv"] and a[C.RUN_OUTPUTS] == ["model.pkl"]
    assert a[C.RUN_INPUT_TYPES] == ["DATA"] and a[C.RUN_OUTPUT_TYPES] == ["MODEL"]
    assert a[C.RUN_INPUT_VERSIONS] == [""] and a[C.RUN_STALENESS_THRESHOLD_S] == 3600
    assert a[C.CODE_FUNCTION].endswith("train") and a[C.CODE_FILE] == __file__
    assert t["links"] == [(clean_id, {C.LINK_IO_NAME: "clean.csv"})]
    stats = mltrace.delivery_stats()
    assert (stats.exported, stats.spooled, stats.dropped) == (2, 0, 0)


def test_runs_export_over_otlp_http_json(receiver, sdk_settings):
    export.configure(settings=sdk_settings.replace(otlp_endpoint=receiver.url, otlp_protocol="http/json"))

    @mltrace.register("producer", outputs=["p.csv"])
    def produce():
        pass

    @mltrace.register("consumer", inputs=["p.csv"])
    def consume():
        pass

    produce()
    consume()
    assert mltrace.flush()
    spans = [sp for b in receiver.json_bodies for rs in b["resourceSpans"] for ss in rs["scopeSpans"]
             for sp in ss["spans"]]
    by_name = {sp["name"]: sp for sp in spans}
    prod, cons = by_name["producer"], by_name["consumer"]
    assert len(prod["spanId"]) == 16 and len(prod["traceId"]) == 32
    int(prod["spanId"], 16)  # hex ids, as OTLP/JSON requires (not base64)
    assert cons["links"][0]["spanId"] == prod["spanId"]
    assert cons["kind"] == 1
    attrs = {a["key"]: a["value"] for a in cons["attributes"]}
    assert attrs[C.RUN_INPUTS] == {"arrayValue": {"values": [{"stringValue": "p.csv"}]}}
    assert mltrace.delivery_stats().exported == 2


def test_endpoint_down_runs_land_in_the_spool(sdk_settings):
    dead = f"http://127.0.0.1:{_free_port()}"
    export.configure(settings=sdk_settings.replace(otlp_endpoint=dead), otlp_timeout_s=0.3)

    @mltrace.register("etl", outputs=["x"])
    def etl():
        pass

    ids = []
    for _ in range(3):
        cr = mltrace.ComponentRun("manual")
        cr.set_start_timestamp()
        cr.set_end_timestamp()
        ids.append(mltrace.log_component_run(cr))
        etl()
    assert mltrace.flush()
    stats = mltrace.delivery_stats()
    assert (stats.spooled, stats.exported, stats.dropped) == (6, 0, 0)
    assert stats.export_failures >= 1
    assert set(ids) <= set(spooled_spans(sdk_settings.spool_dir))


def test_runs_export_over_otlp_grpc(sdk_settings):
    grpc = pytest.importorskip("grpc")
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    received: list[ExportTraceServiceRequest] = []

    class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # noqa: N802, ANN001
            received.append(request)
            return ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        export.configure(settings=sdk_settings.replace(otlp_endpoint=f"http://127.0.0.1:{port}",
                                                       otlp_protocol="grpc"))
        mltrace.register("grpc-run", outputs=["o"])(lambda: None)()
        assert mltrace.flush()
    finally:
        server.stop(0)
    spans = {}
    for r in received:
        spans.update(_spans_of(r))
    assert [v["attrs"][C.RUN_OUTPUTS] for v in spans.values()] == [["o"]]
    assert mltrace.delivery_stats().exported == 1


def test_set_address_points_export_and_store_at_a_host(sdk_settings, monkeypatch):
    export.configure(settings=sdk_settings)
    monkeypatch.setattr(config, "_listening", lambda host, port: True)  # a server is there
    config.set_address("127.0.0.1")
    s = config.current_settings()
    assert s.otlp_endpoint == "http://127.0.0.1:4318" and mltrace.get_db_uri() == "http://127.0.0.1:8123"
    assert mltrace.delivery_stats().destination == "otlp http://127.0.0.1:4318/v1/traces"
    mltrace.set_db_uri("chdb:///tmp/elsewhere")
    assert mltrace.get_db_uri() == "chdb:///tmp/elsewhere"
    with pytest.raises(Exception, match="unknown scheme"):
        mltrace.set_db_uri("mongodb://admin:admin@localhost:27017/db")
    # mltrace's Postgres URI and a server that is not there: tests/sdk/test_compat.py (issue 20)


# --- the application's own tracing ------------------------------------------------------------


def test_app_global_tracer_provider_is_untouched(tmp_path):
    script = textwrap.dedent("""
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import mltrace_otel as mltrace

        app_exporter = InMemorySpanExporter()
        app_provider = TracerProvider()
        app_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
        trace.set_tracer_provider(app_provider)

        @mltrace.register("inside", outputs=["o.csv"])
        def step():
            with trace.get_tracer("app").start_as_current_span("app-inner"):
                pass

        with trace.get_tracer("app").start_as_current_span("request") as req:
            step()
        mltrace.flush()
        with trace.get_tracer("app").start_as_current_span("after"):
            pass
        print(json.dumps({
            "same_provider": trace.get_tracer_provider() is app_provider,
            "app_spans": [s.name for s in app_exporter.get_finished_spans()],
            "request_trace": format(req.get_span_context().trace_id, "032x"),
            "request_span": format(req.get_span_context().span_id, "016x"),
            "inner_parent": format(app_exporter.get_finished_spans()[0].parent.span_id, "016x"),
            "stats": mltrace.delivery_stats().spooled,
        }))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env=_child_env(MLTRACE_DIR=str(tmp_path)))
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["same_provider"] is True
    assert r["app_spans"] == ["app-inner", "request", "after"]  # mltrace's run is not among them
    assert r["stats"] == 1
    (run_id, run), = spooled_spans(tmp_path / "spool").items()
    assert run["name"] == "inside"
    assert run["trace_id"] == r["request_trace"] and run["parent"] == r["request_span"]
    assert r["inner_parent"] == run_id  # the app's span inside the run is the run's child


def test_nothing_is_lost_at_interpreter_exit(tmp_path):
    script = ("import mltrace_otel as m\n"
              "for i in range(25): m.register('bye', outputs=[f'o{i}'])(lambda: 0)()\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env=_child_env(MLTRACE_DIR=str(tmp_path)))
    assert out.returncode == 0, out.stderr
    assert len(spooled_spans(tmp_path / "spool")) == 25


def test_drop_warning_never_raises_into_user_code(sdk_settings):
    """Even with warnings turned into errors, a run whose span is dropped returns normally."""
    export.configure(settings=sdk_settings.replace(spool_max_mb=0), sync=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mltrace.register("x")(lambda: 7)() == 7
    assert mltrace.delivery_stats().dropped == 1


def test_mltrace_db_server_variable_works_like_set_address(monkeypatch, tmp_path):
    monkeypatch.setenv("MLTRACE_DIR", str(tmp_path))
    monkeypatch.setenv("DB_SERVER", "10.1.2.3")
    s = config.current_settings()
    assert (s.otlp_endpoint, mltrace.get_db_uri()) == ("http://10.1.2.3:4318", "http://10.1.2.3:8123")
    assert export.otlp_endpoint(s) == "http://10.1.2.3:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert config.current_settings().otlp_endpoint == "http://collector:4318"  # the standard one wins


def test_endpoint_down_at_exit_runs_still_land_in_the_spool(tmp_path):
    script = ("import mltrace_otel as m\n"
              "for i in range(30): m.register('late', outputs=[f'o{i}'])(lambda: 0)()\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env=_child_env(MLTRACE_DIR=str(tmp_path),
                                        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{_free_port()}"))
    assert out.returncode == 0, out.stderr
    got = spooled_spans(tmp_path / "spool")
    assert sorted(s["attrs"][C.RUN_OUTPUTS][0] for s in got.values()) == sorted(f"o{i}" for i in range(30))


@pytest.mark.parametrize("parent_first", [True, False])
def test_runs_in_multiprocessing_fork_workers_are_flushed_when_they_exit(tmp_path, parent_first):
    script = textwrap.dedent("""
        import multiprocessing as mp
        import mltrace_otel as m

        @m.register("worker", input_vars=["src"])
        def work(i):
            src = f"shard-{i}"
            return i

        if __name__ == "__main__":
            if PARENT_FIRST:
                work(-1)  # the parent sets up first; workers inherit the pipeline
            with mp.get_context("fork").Pool(2) as pool:
                assert pool.map(work, range(10)) == list(range(10))
                pool.close()
                pool.join()
    """).replace("PARENT_FIRST", str(parent_first))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env=_child_env(MLTRACE_DIR=str(tmp_path)))
    assert out.returncode == 0, out.stderr
    got = spooled_spans(tmp_path / "spool")
    assert sorted(s["attrs"][C.RUN_INPUTS][0] for s in got.values()) == sorted(
        f"shard-{i}" for i in range(-1 if parent_first else 0, 10))


def test_queue_overflow_drops_are_counted(monkeypatch, sdk_settings):
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    release = threading.Event()
    exported: list[int] = []

    class Stuck(SpanExporter):  # a backend that hangs: the queue fills up
        def export(self, spans):  # noqa: ANN001
            release.wait(30)
            exported.append(len(spans))
            return SpanExportResult.SUCCESS

    monkeypatch.setattr(export, "MAX_QUEUE_SPANS", 5)
    export.configure(settings=sdk_settings, exporter=Stuck(), batch=True)
    run = mltrace.register("burst")(lambda: None)
    with pytest.warns(RuntimeWarning, match="export queue full"):
        for _ in range(40):
            run()
    release.set()
    assert mltrace.flush()
    stats = mltrace.delivery_stats()
    assert stats.dropped >= 1
    assert stats.dropped + sum(exported) == 40 == stats.dropped + stats.exported


def test_added_span_processors_survive_rebuilds_and_are_never_shut_down(sdk_settings):
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    seen = InMemorySpanExporter()
    sdk_settings = sdk_settings.replace(export="spool")  # set_address below must not reach OTLP
    export.configure(settings=sdk_settings, sync=True)
    export.add_span_processor(SimpleSpanProcessor(seen))
    mltrace.register("one")(lambda: None)()
    export.configure(settings=sdk_settings, sync=True)  # rebuilt: still attached, not shut down
    config.set_address("127.0.0.1")  # rebuilds the pipeline too
    mltrace.register("two")(lambda: None)()
    assert [s.name for s in seen.get_finished_spans()] == ["one", "two"]
    export.reset()
    export.configure(settings=sdk_settings, sync=True)
    mltrace.register("three")(lambda: None)()
    assert [s.name for s in seen.get_finished_spans()] == ["one", "two"]
