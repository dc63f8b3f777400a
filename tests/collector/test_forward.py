"""OTLP forwarding (MLTRACE_FORWARD_OTLP_ENDPOINTS): accepted spans reach other OTLP receivers
unchanged, and a slow, failing or dead receiver never blocks ingest nor loses the other's spans.

The receivers here are not our receiving code: a gRPC server built from the official
opentelemetry-proto service definition, and a plain ``http.server`` OTLP/HTTP endpoint that
records raw bodies and can answer 503 / 400 or hang. Payloads are the official OpenTelemetry
SDK exporter's serialization of real SDK spans.
"""

from __future__ import annotations

import gzip
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from mltrace_otel.collector.forward import Forwarder
from mltrace_otel.collector.metrics import CollectorMetrics
from mltrace_otel.collector.server import Collector
from mltrace_otel.errors import ConfigError
from mltrace_otel.settings import ForwardTarget, parse_forward_targets
from tests.collector.conftest import collector_settings, make_spans, run_ids, stored_runs, wait_until
from tests.collector.live import LIVE

ExportRequest = trace_service_pb2.ExportTraceServiceRequest
TOKEN = "Bearer t0k3n-secret"
HEADERS_FRAGMENT = "#authorization=Bearer%20t0k3n-secret&X-Scope-OrgID=team-a"


# --- receivers that are not ours ------------------------------------------------------------------

@dataclass
class GrpcReceiver:
    """The official TraceService on a free port; records every request and its metadata.

    ``fail_first`` calls are aborted with ``fail_code``; ``hang`` makes every call wait until
    the receiver is closed."""

    fail_first: int = 0
    fail_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    hang: bool = False
    requests: list[Any] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    calls: int = 0
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _release: threading.Event = field(default_factory=threading.Event)
    _server: Any = None

    def start(self) -> GrpcReceiver:
        receiver = self

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the generated name
                with receiver._lock:
                    receiver.calls += 1
                    failing = receiver.calls <= receiver.fail_first
                if receiver.hang:
                    receiver._release.wait(30)
                if failing:
                    context.abort(receiver.fail_code, "told to fail")
                with receiver._lock:
                    receiver.requests.append(request)
                    receiver.metadata.append({m.key: m.value for m in context.invocation_metadata()})
                return trace_service_pb2.ExportTraceServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def close(self) -> None:
        self._release.set()
        self._server.stop(0)

    def spans(self) -> list[Any]:
        with self._lock:
            return [s for r in self.requests for s in _spans_of(r)]


@dataclass
class Received:
    """One OTLP/HTTP request as the plain receiver saw it."""

    at: float
    path: str
    headers: dict[str, str]
    raw: bytes  # as sent on the wire
    body: bytes  # after gzip decoding
    status: int


class HttpReceiver(ThreadingHTTPServer):
    """A plain OTLP/HTTP endpoint: records each request, answers ``fail_status`` (with
    ``Retry-After``) to the first ``fail_first`` requests and ``status`` afterwards, or with
    ``hang`` accepts and never answers until closed; ``drop_idle`` closes each connection after
    answering without saying so (as an idle keep-alive timeout does)."""

    daemon_threads = True

    def __init__(self, fail_first: int = 0, fail_status: int = 503, retry_after: str | None = "0",
                 status: int = 200, hang: bool = False, drop_idle: bool = False) -> None:
        self.fail_first, self.fail_status, self.retry_after = fail_first, fail_status, retry_after
        self.status, self.hang, self.drop_idle = status, hang, drop_idle
        self.records: list[Received] = []
        self.started = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def delivered(self) -> list[Received]:
        with self.lock:
            return [r for r in self.records if r.status == 200]

    def spans(self) -> list[Any]:
        return [s for r in self.delivered() for s in _spans_of(ExportRequest.FromString(r.body))]

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real collector
    server: HttpReceiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        srv = self.server
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with srv.lock:
            srv.started += 1
            n = srv.started
        if srv.hang:
            srv.release.wait(30)
            return
        body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
        status = srv.fail_status if n <= srv.fail_first else srv.status
        with srv.lock:
            srv.records.append(Received(time.monotonic(), self.path,
                                        {k.lower(): v for k, v in self.headers.items()}, raw, body, status))
        answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(status)
        if status != 200 and srv.retry_after is not None:
            self.send_header("Retry-After", srv.retry_after)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        if srv.drop_idle:
            self.close_connection = True

    def log_message(self, *args: Any) -> None:
        pass


# --- helpers ----------------------------------------------------------------------------------------

def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    return getattr(v, kind)


def _spans_of(request: Any) -> list[Any]:
    return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def _summary(proto_spans: list[Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """{span id hex: (name, attributes)} of received OTLP spans."""
    return {s.span_id.hex(): (s.name, {a.key: _value(a.value) for a in s.attributes}) for s in proto_spans}


def _sdk_summary(spans: list[Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    return {i: (s.name, dict(s.attributes)) for i, s in zip(run_ids(spans), spans, strict=True)}


def payload(spans: list[Any]) -> bytes:
    """The OTel SDK exporter's serialized request for ``spans``."""
    return encode_spans(spans).SerializeToString()


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def count(metrics: CollectorMetrics, target: ForwardTarget, outcome: str) -> float:
    return metrics.registry.get_sample_value(
        "mltrace_collector_forward_spans_total", {"endpoint": target.label, "outcome": outcome}) or 0.0


def queued(metrics: CollectorMetrics, target: ForwardTarget) -> float:
    return metrics.registry.get_sample_value(
        "mltrace_collector_forward_queue_spans", {"endpoint": target.label}) or 0.0


def target(url: str) -> ForwardTarget:
    (t,) = parse_forward_targets("MLTRACE_FORWARD_OTLP_ENDPOINTS", url)
    return t


@pytest.fixture
def receivers() -> Iterator[Callable[..., Any]]:
    """Start receivers: ``receivers("grpc", **kw)`` or ``receivers("http", **kw)``; all closed after."""
    started: list[Any] = []

    def start(kind: str, **kw: Any) -> Any:
        r = GrpcReceiver(**kw).start() if kind == "grpc" else HttpReceiver(**kw)
        started.append(r)
        return r

    yield start
    for r in started:
        r.close()


@pytest.fixture
def forwarder() -> Iterator[Callable[..., tuple[Forwarder, CollectorMetrics]]]:
    """Start Forwarders with fresh metrics and quick backoff; each is stopped after the test."""
    made: list[Forwarder] = []

    def make(targets: list[ForwardTarget], **kw: Any) -> tuple[Forwarder, CollectorMetrics]:
        metrics = CollectorMetrics()
        kw.setdefault("queue_spans", 100_000)
        kw.setdefault("backoff_s", (0.05, 0.2))
        f = Forwarder(targets, metrics=metrics, **kw)
        f.start()
        made.append(f)
        return f, metrics

    yield make
    for f in made:
        f.stop(1.0)


# --- delivery, unchanged ------------------------------------------------------------------------------

def test_sdk_spans_reach_second_otlp_receivers_unchanged(receivers: Any, forwarder: Any) -> None:
    """End to end from the OTel SDK's serialization: both a gRPC and an HTTP receiver get every
    span with the ids, names and attributes sent."""
    g, h = receivers("grpc"), receivers("http")
    tg, th = target(f"grpc://127.0.0.1:{g.port}"), target(h.url)
    f, metrics = forwarder([tg, th])
    batches = [make_spans(10, component=f"step-{i}") for i in range(3)]
    for spans in batches:
        f.submit(payload(spans), len(spans))
    assert f.flush(10)
    sent = {k: v for spans in batches for k, v in _sdk_summary(spans).items()}
    assert len(sent) == 30
    assert _summary(g.spans()) == sent
    assert _summary(h.spans()) == sent
    assert count(metrics, tg, "sent") == count(metrics, th, "sent") == 30
    assert queued(metrics, tg) == queued(metrics, th) == 0


def test_grpc_forwards_the_request_bytes_and_headers(receivers: Any, forwarder: Any) -> None:
    g = receivers("grpc")
    tg = target(f"grpc://127.0.0.1:{g.port}{HEADERS_FRAGMENT}")
    f, _ = forwarder([tg])
    body = payload(make_spans(5))
    f.submit(body, 5)
    assert f.flush(10)
    assert len(g.requests) == 1
    assert g.requests[0].SerializeToString() == body
    assert g.metadata[0]["authorization"] == TOKEN
    assert g.metadata[0]["x-scope-orgid"] == "team-a"


@pytest.mark.parametrize("n_spans, gzipped", [(3, False), (200, True)])
def test_http_forwards_the_request_bytes_and_headers(receivers: Any, forwarder: Any, n_spans: int,
                                                     gzipped: bool) -> None:
    """One request arrives byte-identical (after gzip decoding when it is over a few KB), as
    application/x-protobuf on /v1/traces, with the configured headers."""
    h = receivers("http")
    f, _ = forwarder([target(h.url + HEADERS_FRAGMENT)])
    body = payload(make_spans(n_spans))
    f.submit(body, n_spans)
    assert f.flush(10)
    (got,) = h.delivered()
    assert got.body == body
    assert got.path == "/v1/traces"
    assert got.headers["content-type"] == "application/x-protobuf"
    assert (got.headers.get("content-encoding") == "gzip") is gzipped
    if gzipped:
        assert len(got.raw) < len(body)
    assert got.headers["authorization"] == TOKEN
    assert got.headers["x-scope-orgid"] == "team-a"


def test_queued_requests_are_joined_into_one_valid_export(receivers: Any, forwarder: Any) -> None:
    """While an endpoint asks to wait, requests queue up and go out together as one message."""
    h = receivers("http", fail_first=1, retry_after="0.3")
    f, _ = forwarder([target(h.url)])
    batches = [make_spans(2) for _ in range(20)]
    for spans in batches:
        f.submit(payload(spans), 2)
    assert f.flush(10)
    assert len(h.delivered()) < 20
    sent = [i for spans in batches for i in run_ids(spans)]
    assert sorted(s.span_id.hex() for s in h.spans()) == sorted(sent)


# --- failures ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_retryable_failures_are_retried_and_delivered_once(receivers: Any, forwarder: Any,
                                                           kind: str) -> None:
    """503 (HTTP) / UNAVAILABLE (gRPC) for the first requests, then success: every span arrives
    exactly once, all counted as sent."""
    r = receivers(kind, fail_first=3)
    t = target(f"grpc://127.0.0.1:{r.port}" if kind == "grpc" else r.url)
    f, metrics = forwarder([t])
    batches = [make_spans(5) for _ in range(4)]
    for spans in batches:
        f.submit(payload(spans), 5)
    assert f.flush(15)
    sent = [i for spans in batches for i in run_ids(spans)]
    assert sorted(s.span_id.hex() for s in r.spans()) == sorted(sent)
    assert count(metrics, t, "sent") == 20
    assert count(metrics, t, "failed") == 0


def test_keep_alive_closed_by_the_receiver_is_no_failure(receivers: Any, forwarder: Any,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A connection the receiver closed while idle is reopened at once: delivered once, no
    backoff, no 'failing' warning."""
    h = receivers("http", drop_idle=True)
    caplog.set_level(logging.INFO, logger="mltrace_otel.collector.forward")
    f, _ = forwarder([target(h.url)], backoff_s=(5.0, 5.0))
    for _ in range(3):
        f.submit(payload(make_spans(1)), 1)
        assert f.flush(3)
        time.sleep(0.05)
    assert len(h.records) == 3
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_retry_after_is_honoured(receivers: Any, forwarder: Any) -> None:
    h = receivers("http", fail_first=1, retry_after="1")
    f, _ = forwarder([target(h.url)])
    f.submit(payload(make_spans(1)), 1)
    assert f.flush(10)
    first, second = h.records
    assert (first.status, second.status) == (503, 200)
    assert second.at - first.at >= 0.9


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_refused_requests_count_failed_and_warn_without_headers(
        receivers: Any, forwarder: Any, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """HTTP 400 / gRPC INVALID_ARGUMENT: not retried, counted failed, one WARNING naming the
    endpoint and never its headers."""
    if kind == "http":
        r = receivers("http", status=400)
        t = target(r.url + HEADERS_FRAGMENT)
    else:
        r = receivers("grpc", fail_first=10**6, fail_code=grpc.StatusCode.INVALID_ARGUMENT)
        t = target(f"grpc://127.0.0.1:{r.port}{HEADERS_FRAGMENT}")
    caplog.set_level(logging.INFO, logger="mltrace_otel.collector.forward")
    f, metrics = forwarder([t])
    for _ in range(3):
        f.submit(payload(make_spans(4)), 4)
        assert f.flush(10)  # one at a time: three refused requests, never retried
    calls = len(r.records) if kind == "http" else r.calls
    assert calls == 3
    assert count(metrics, t, "failed") == 12
    assert count(metrics, t, "sent") == 0
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1 and t.label in warnings[0]
    assert all("t0k3n" not in rec.getMessage() for rec in caplog.records)


def test_failing_is_logged_once_and_recovery_once(receivers: Any, forwarder: Any,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    h = receivers("http", fail_first=5)
    t = target(h.url + HEADERS_FRAGMENT)
    caplog.set_level(logging.INFO, logger="mltrace_otel.collector.forward")
    f, _ = forwarder([t])
    f.submit(payload(make_spans(1)), 1)
    assert f.flush(10)
    messages = [(rec.levelno, rec.getMessage()) for rec in caplog.records]
    failing = [m for lvl, m in messages if lvl == logging.WARNING and "is failing" in m]
    recovered = [m for lvl, m in messages if lvl == logging.INFO and "recovered" in m]
    assert len(failing) == 1 and t.label in failing[0]
    assert len(recovered) == 1
    assert all("t0k3n" not in m for _, m in messages)


@pytest.mark.parametrize("dead", ["http", "grpc"])
def test_dead_endpoint_blocks_nothing_and_loses_nothing_elsewhere(receivers: Any, forwarder: Any,
                                                                  dead: str) -> None:
    """1000 submits finish promptly while one endpoint's port is closed, and the live endpoint
    gets every span; the dead one holds them (retrying) and counts them failed at stop."""
    live_kind = "grpc" if dead == "http" else "http"
    live = receivers(live_kind)
    t_live = target(f"grpc://127.0.0.1:{live.port}" if live_kind == "grpc" else live.url)
    t_dead = target(f"{dead}://127.0.0.1:{closed_port()}")
    f, metrics = forwarder([t_dead, t_live])
    spans = make_spans(1000, plain=True)
    bodies = [payload([s]) for s in spans]
    began = time.monotonic()
    for body in bodies:
        f.submit(body, 1)
    assert time.monotonic() - began < 5.0  # generous: submit only appends to a queue
    assert wait_until(lambda: len(live.spans()) >= 1000, 15)
    assert sorted(s.span_id.hex() for s in live.spans()) == sorted(run_ids(spans))
    assert count(metrics, t_live, "sent") == 1000
    assert count(metrics, t_dead, "sent") == 0
    assert count(metrics, t_dead, "dropped_queue_full") == 0
    assert queued(metrics, t_dead) == 1000
    f.stop(0.5)
    assert count(metrics, t_dead, "failed") == 1000
    assert queued(metrics, t_dead) == 0


def test_queue_overflow_counts_dropped_exactly(forwarder: Any) -> None:
    """The bound is in spans, per endpoint, and counts a request in flight: with room for 10,
    submits of 4, 4, 4, 1, 1, 1 spans keep 10 and drop 5."""
    t = target(f"http://127.0.0.1:{closed_port()}")
    f, metrics = forwarder([t], queue_spans=10)
    for n in (4, 4, 4, 1, 1, 1):
        f.submit(payload(make_spans(n)), n)
    assert count(metrics, t, "dropped_queue_full") == 5
    assert queued(metrics, t) == 10
    f.stop(0.2)
    assert count(metrics, t, "failed") == 10
    assert count(metrics, t, "sent") == 0


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_stop_returns_within_its_timeout_when_an_endpoint_hangs(receivers: Any, forwarder: Any,
                                                                kind: str) -> None:
    """An endpoint that accepts and never answers (request timeout 30 s): stop(1) returns in
    about a second, counting the held spans failed."""
    r = receivers(kind, hang=True)
    t = target(f"grpc://127.0.0.1:{r.port}" if kind == "grpc" else r.url)
    f, metrics = forwarder([t], request_timeout_s=30.0)
    for _ in range(5):
        f.submit(payload(make_spans(2)), 2)
    assert wait_until(lambda: (r.calls if kind == "grpc" else r.started) >= 1, 10)
    began = time.monotonic()
    f.stop(1.0)
    assert time.monotonic() - began < 1.0 + 1.5
    assert count(metrics, t, "failed") == 10
    assert count(metrics, t, "sent") == 0


def test_stop_sends_what_is_queued(receivers: Any, forwarder: Any) -> None:
    h = receivers("http")
    t = target(h.url)
    f, metrics = forwarder([t])
    batches = [make_spans(3) for _ in range(10)]
    for spans in batches:
        f.submit(payload(spans), 3)
    f.stop(10.0)
    assert len(h.spans()) == 30
    assert count(metrics, t, "sent") == 30
    f.submit(payload(make_spans(1)), 1)  # after stop: nowhere to go, counted, never raised
    assert count(metrics, t, "failed") == 1


# --- MLTRACE_FORWARD_OTLP_ENDPOINTS ---------------------------------------------------------------

def test_parse_forward_targets() -> None:
    g, h, s = parse_forward_targets(
        "V", f"grpc://jaeger{HEADERS_FRAGMENT}, http://tempo:4318 ,https://u:p%40ss@otlp.example/otlp/v1/traces")
    assert (g.url, g.protocol, g.tls) == ("jaeger:4317", "grpc", False)
    assert dict(g.headers) == {"authorization": TOKEN, "x-scope-orgid": "team-a"}
    assert (h.url, h.protocol, dict(h.headers)) == ("http://tempo:4318/v1/traces", "http/protobuf", {})
    assert s.url == "https://otlp.example/otlp/v1/traces" and s.tls
    assert dict(s.headers) == {"authorization": "Basic dTpwQHNz"}  # base64 of u:p@ss
    assert "p%40ss" not in repr(s) and "t0k3n" not in repr(g)


@pytest.mark.parametrize("value", [f"ftp://host{HEADERS_FRAGMENT}", "grpc://host#authorization:t0k3n",
                                   "http://host:99999#k=t0k3n"])
def test_parse_forward_targets_errors_never_show_headers(value: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_forward_targets("MLTRACE_FORWARD_OTLP_ENDPOINTS", value)
    assert "MLTRACE_FORWARD_OTLP_ENDPOINTS" in str(e.value)
    assert "t0k3n" not in str(e.value)


# --- through the collector ------------------------------------------------------------------------------

def test_collector_forwards_accepted_spans_to_a_second_receiver(receivers: Any, tmp_settings: Any,
                                                                store: Any) -> None:
    """A real collector with MLTRACE_FORWARD_OTLP_ENDPOINTS: spans the OTel SDK exports to it
    land in the store and reach a second OTLP receiver with the same ids, names and attributes."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    g = receivers("grpc")
    settings = collector_settings(tmp_settings, forward_targets=parse_forward_targets(
        "MLTRACE_FORWARD_OTLP_ENDPOINTS", f"grpc://127.0.0.1:{g.port}{HEADERS_FRAGMENT}"))
    c = Collector(settings, store, drain_every_s=0)
    c.start()
    LIVE.append(c)  # stored_runs flushes (indexes) live collectors before reading
    try:
        spans = make_spans(25, component="ingest")
        assert OTLPSpanExporter(endpoint=c.addresses.traces_url).export(spans) == SpanExportResult.SUCCESS
        assert wait_until(lambda: len(g.spans()) >= 25, 15)
        assert _summary(g.spans()) == _sdk_summary(spans)
        assert g.metadata[0]["authorization"] == TOKEN
        ids = run_ids(spans)
        assert stored_runs(store, ids) == {i: "ingest" for i in ids}
    finally:
        LIVE.remove(c)
        c.stop()
