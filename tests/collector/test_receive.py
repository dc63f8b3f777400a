"""Spans reach the store through the real collector: OTel SDK exporters (HTTP and gRPC), plain
OTLP/JSON by hand, partial success, ordinary spans, the bearer token and /metrics."""

from __future__ import annotations

import gzip
import http.client
import json
import re
import secrets
from typing import Any

import pytest

from mltrace_otel import conventions as C
from mltrace_otel.collector.server import Collector
from tests.collector.conftest import collector_settings, make_spans, run_ids, stored_runs, stored_spans


def post(collector: Collector, body: bytes, content_type: str = "application/x-protobuf",
         headers: dict[str, str] | None = None, path: str = "/v1/traces") -> tuple[int, dict, bytes]:
    """One raw HTTP request to the collector; (status, headers, body)."""
    a = collector.addresses
    conn = http.client.HTTPConnection(a.host, a.http_port, timeout=30)
    try:
        h = {"Content-Type": content_type, **(headers or {})}
        conn.request("POST", path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def get_metrics(collector: Collector) -> tuple[int, str]:
    """(status, body) of ``GET /metrics`` on the collector's HTTP port."""
    a = collector.addresses
    conn = http.client.HTTPConnection(a.host, a.http_port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def test_plain_otel_sdk_over_http_protobuf_lands_runs(collector: Collector, store: Any) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    spans = make_spans(20, component="ingest")
    exporter = OTLPSpanExporter(endpoint=collector.addresses.traces_url)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    ids = run_ids(spans)
    assert stored_runs(store, ids) == {i: "ingest" for i in ids}
    run = store.get_run(ids[0][:8])
    assert run.component == "ingest" and run.owner == "team-a"
    assert [p.name for p in run.outputs] == ["data/x/out-0.csv"]


def test_plain_otel_sdk_over_grpc_gzip_lands_runs(collector: Collector, store: Any) -> None:
    from grpc import Compression
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    spans = make_spans(15, component="train", prefix="models")
    exporter = OTLPSpanExporter(endpoint=collector.addresses.grpc_target, insecure=True,
                                compression=Compression.Gzip)
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    ids = run_ids(spans)
    assert stored_runs(store, ids) == {i: "train" for i in ids}
    assert [p.name for p in store.get_run(ids[-1]).inputs] == ["models/in-14.csv"]


def test_http_gzip_body_lands(collector: Collector, store: Any) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    spans = make_spans(5)
    body = gzip.compress(encode_spans(spans).SerializeToString())
    status, _, _ = post(collector, body, headers={"Content-Encoding": "gzip"})
    assert status == 200
    assert set(stored_runs(store, run_ids(spans))) == set(run_ids(spans))


def _json_span(trace_id: str, span_id: str, name: str, *, parent: str = "", attrs: dict | None = None,
               snake: bool = False) -> dict:
    values = []
    for k, v in (attrs or {}).items():
        if isinstance(v, list):
            value = {"arrayValue": {"values": [{"stringValue": x} for x in v]}}
        elif isinstance(v, int):
            value = {"intValue": str(v)}
        else:
            value = {"stringValue": v}
        values.append({"key": k, "value": value})
    span = {"traceId": trace_id, "spanId": span_id, "parentSpanId": parent, "name": name, "kind": 1,
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001500000000",
            "attributes": values, "status": {"code": 1}}
    if snake:
        span = {"trace_id": trace_id, "span_id": span_id, "parent_span_id": parent, "name": name,
                "kind": 1, "start_time_unix_nano": 1700000000000000000,
                "end_time_unix_nano": 1700000001500000000, "attributes": values}
    return span


def _json_request(spans: list[dict], service: str = "json-svc") -> dict:
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "by-hand"}, "spans": spans}],
    }]}


def test_hand_built_otlp_json_with_hex_ids_lands_with_the_right_ids(collector: Collector, store: Any) -> None:
    trace_id = secrets.token_hex(16)
    root, child = secrets.token_hex(8), secrets.token_hex(8)
    doc = _json_request([
        _json_span(trace_id, root, "clean", attrs={C.COMPONENT_NAME: "clean",
                                                    C.RUN_OUTPUTS: ["tbl/clean"],
                                                    C.RUN_STALENESS_THRESHOLD_S: 60}),
        _json_span(trace_id, child, "featurize", parent=root,
                   attrs={C.COMPONENT_NAME: "featurize", C.RUN_INPUTS: ["tbl/clean"]}),
    ])
    status, headers, body = post(collector, json.dumps(doc).encode(), "application/json")
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {}
    spans = stored_spans(store, [root, child])
    assert spans[root] == (trace_id, "", "clean", "json-svc")
    assert spans[child] == (trace_id, root, "featurize", "json-svc")
    run = store.get_run(child)
    assert run.trace_id == trace_id and run.component == "featurize"
    assert run.duration_s == 1.5
    assert store.get_run(root).staleness_threshold_s == 60


def test_snake_case_json_with_integer_times_lands(collector: Collector, store: Any) -> None:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    doc = {"resource_spans": [{"scope_spans": [{"spans": [
        _json_span(trace_id, span_id, "snake", attrs={C.COMPONENT_NAME: "snake"}, snake=True)]}]}]}
    status, _, body = post(collector, json.dumps(doc).encode(), "application/json; charset=utf-8")
    assert status == 200, body
    assert stored_runs(store, [span_id]) == {span_id: "snake"}


def test_bad_spans_are_rejected_alone_with_partial_success(collector: Collector, store: Any) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    # protobuf: two spans get unusable ids, three are fine
    spans = make_spans(5, component="mixed")
    req = encode_spans(spans)
    bad = req.resource_spans[0].scope_spans[0].spans
    bad[1].trace_id = b"\x01\x02\x03"
    bad[3].span_id = bytes(8)
    status, _, body = post(collector, req.SerializeToString())
    assert status == 200
    resp = ExportTraceServiceResponse.FromString(body)
    assert resp.partial_success.rejected_spans == 2
    assert "trace id must be 16 bytes" in resp.partial_success.error_message
    ids = run_ids(spans)
    assert set(stored_runs(store, ids)) == {ids[0], ids[2], ids[4]}

    # JSON: a span id that is not hex
    trace_id, good = secrets.token_hex(16), secrets.token_hex(8)
    doc = _json_request([_json_span(trace_id, good, "ok", attrs={C.COMPONENT_NAME: "ok"}),
                         _json_span(trace_id, "zz" * 8, "broken", attrs={C.COMPONENT_NAME: "broken"})])
    status, _, body = post(collector, json.dumps(doc).encode(), "application/json")
    assert status == 200
    partial = json.loads(body)["partialSuccess"]
    assert partial["rejectedSpans"] == "1" and "not hex" in partial["errorMessage"]
    assert stored_runs(store, [good]) == {good: "ok"}


def test_span_without_component_is_an_ordinary_span_not_a_run(collector: Collector, store: Any) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    plain = make_spans(3, component="http-get", plain=True)
    runs = make_spans(1, component="score")
    assert OTLPSpanExporter(endpoint=collector.addresses.traces_url).export(plain + runs).name == "SUCCESS"
    plain_ids = run_ids(plain)
    assert set(stored_spans(store, plain_ids)) == set(plain_ids)  # stored, in their traces
    assert stored_runs(store, plain_ids) == {}  # never runs
    assert stored_runs(store, run_ids(runs)) == {run_ids(runs)[0]: "score"}


def test_bearer_token_is_required_on_http_and_grpc(tmp_settings: Any, store: Any) -> None:
    import grpc
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    token = "s3cret-token"
    with Collector(collector_settings(tmp_settings, token=token), store, drain_every_s=0) as c:
        body = encode_spans(make_spans(2)).SerializeToString()
        assert post(c, body)[0] == 401
        assert post(c, body, headers={"Authorization": "Bearer wrong"})[0] == 401
        status, headers, _ = post(c, body, headers={"Authorization": f"Bearer {token}"})
        assert status == 200
        assert get_metrics(c)[0] == 401

        channel = grpc.insecure_channel(c.addresses.grpc_target)
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as info:
            export(body, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert export(body, timeout=10, metadata=[("authorization", f"Bearer {token}")]) == b""
        channel.close()


def test_metrics_endpoint_reports_spans_and_batches(collector: Collector, store: Any) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    assert post(collector, encode_spans(make_spans(7)).SerializeToString())[0] == 200
    assert post(collector, b"\x0a\x05garbage")[0] == 400
    assert collector.flush(60)  # journaled acknowledgement: indexed too
    status, text = get_metrics(collector)
    assert status == 200
    assert 'mltrace_collector_spans_received_total{protocol="http/protobuf"} 7.0' in text
    assert "mltrace_collector_spans_committed_total 7.0" in text
    assert 'mltrace_collector_requests_total{code="400",protocol="http/protobuf"} 1.0' in text
    assert "mltrace_collector_insert_duration_seconds_count" in text
    assert "mltrace_collector_queue_depth_spans 0.0" in text
    assert "mltrace_collector_spans_indexed_total 7.0" in text
    # the embedded engine lives in this process: its memory, as its tracker and its allocator count it
    gauge = r'mltrace_collector_engine_memory_bytes\{kind="(\w+)"\} (\S+)'
    mem = {k: float(v) for k, v in re.findall(gauge, text)}
    # (jemalloc's "resident" is an upper bound: pages it mapped but never touched count too, so it
    # can exceed the process's RSS; no figure can exceed the machine's memory)
    ram = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    assert set(mem) == {"tracked", "allocated", "resident"}, text
    assert 0 < mem["allocated"] <= mem["resident"] < ram
    assert abs(mem["tracked"]) < ram


def test_metrics_are_served_when_the_engine_does_not_report_its_memory(
        collector: Collector, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # an engine build without system.jemalloc_stats (simulated: the read raises, as the query
    # would): the other series are served, the gauge is left out (not frozen at its last values),
    # the warning comes once, and the gauge is back once a read works
    from mltrace_otel.collector import server
    from mltrace_otel.errors import QueryError

    def scrape() -> str:
        status, text = get_metrics(collector)
        assert status == 200 and "mltrace_collector_spans_received_total" in text
        return text

    def missing(store: Any) -> Any:
        raise QueryError("engine_memory_allocator", {}, "Code: 60. Unknown table system.jemalloc_stats",
                         code=60)

    gauge = 'mltrace_collector_engine_memory_bytes{kind="resident"}'
    assert gauge in scrape()
    with monkeypatch.context() as m:
        m.setattr(server, "engine_memory", missing)
        assert gauge not in scrape() and gauge not in scrape()
    assert sum("did not report its memory" in m for m in caplog.messages) == 1
    assert gauge in scrape()


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc", "http/json"])
def test_mltrace_sdk_exports_runs_over_otlp_that_the_queries_find(
        collector: Collector, store: Any, tmp_settings: Any, tmp_path: Any, protocol: str) -> None:
    import mltrace_otel as mltrace
    from mltrace_otel.sdk import export

    a = collector.addresses
    endpoint = f"http://{a.grpc_target}" if protocol == "grpc" else a.http_url
    sdk_dir = tmp_path / "sdk"
    sdk_dir.mkdir()
    export.configure(settings=tmp_settings.replace(otlp_endpoint=endpoint, otlp_protocol=protocol,
                                                   export="otlp", mltrace_dir=sdk_dir))
    try:
        @mltrace.register("sdk_clean", inputs=["raw.csv"], outputs=["clean.csv"])
        def clean() -> None:
            pass

        @mltrace.register("sdk_train", inputs=["clean.csv"], outputs=["model.pkl"])
        def train() -> None:
            pass

        clean()
        train()
        assert mltrace.flush()
        stats = mltrace.delivery_stats()
    finally:
        export.reset()
    assert (stats.exported, stats.spooled, stats.dropped) == (2, 0, 0)
    assert collector.flush(60)  # journaled acknowledgement: queryable once indexed (~1 s)
    [run] = store.history("sdk_train")
    assert [p.name for p in run.outputs] == ["model.pkl"]
    lineage = store.trace("model.pkl")
    assert {n.run.component for n in lineage.nodes} == {"sdk_clean", "sdk_train"}


def test_json_link_ids_events_and_int64_strings_keep_their_values(collector: Collector, store: Any) -> None:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    linked_trace, linked_span = secrets.token_hex(16), secrets.token_hex(8)
    span = _json_span(trace_id, span_id, "linked", attrs={C.COMPONENT_NAME: "linked", "n": 2**62})
    span["links"] = [{"traceId": linked_trace, "spanId": linked_span,
                      "attributes": [{"key": C.LINK_IO_NAME, "value": {"stringValue": "in.csv"}}]}]
    span["events"] = [{"timeUnixNano": "1700000000500000000", "name": "checkpoint",
                       "attributes": [{"key": "ok", "value": {"boolValue": True}}]}]
    status, _, body = post(collector, json.dumps(_json_request([span])).encode(), "application/json")
    assert status == 200, body
    assert collector.flush(60)
    [row] = store.query(
        "test_links",
        "SELECT Links.TraceId, Links.SpanId, Links.Attributes, Events.Name, Events.Attributes, "
        "SpanAttributes['n'] FROM otel_traces WHERE SpanId = {id:String}", {"id": span_id})
    assert row == ([linked_trace], [linked_span], [{C.LINK_IO_NAME: "in.csv"}], ["checkpoint"],
                   [{"ok": "true"}], str(2**62))


def test_a_port_in_use_is_a_clear_error_and_nothing_keeps_running(tmp_settings: Any, store: Any) -> None:
    import socket

    from mltrace_otel.errors import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        c = Collector(collector_settings(tmp_settings, otlp_grpc_port=port), store, drain_every_s=0)
        with pytest.raises(ConfigError, match=f"cannot bind OTLP/gRPC on 127.0.0.1:{port}"):
            c.start()
        c.stop()  # a no-op, and does not hang
        c2 = Collector(collector_settings(tmp_settings, otlp_http_port=port), store, drain_every_s=0)
        with pytest.raises(ConfigError, match="--http-port"):
            c2.start()
    with Collector(collector_settings(tmp_settings), store, drain_every_s=0) as c3:  # store still usable
        assert post(c3, b"")[0] == 200


def test_a_span_time_past_datetime64_is_rejected_alone(collector: Collector, store: Any) -> None:
    """Such a span would fail the whole ClickHouse insert, and with it every batch it joins."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    spans = make_spans(3, component="timely")
    req = encode_spans(spans)
    s = req.resource_spans[0].scope_spans[0].spans
    s[0].start_time_unix_nano = s[0].end_time_unix_nano = 2**64 - 1
    s[1].events.add(name="late", time_unix_nano=2**63)
    status, _, body = post(collector, req.SerializeToString())
    assert status == 200
    partial = ExportTraceServiceResponse.FromString(body).partial_success
    assert partial.rejected_spans == 2 and "2262" in partial.error_message
    assert set(stored_runs(store, run_ids(spans))) == {run_ids(spans)[2]}
