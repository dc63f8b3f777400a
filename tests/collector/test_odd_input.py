"""Hostile and odd input (issue 13): deeply nested OTLP gets 400 (not 500 and a traceback) over
HTTP and gRPC, and off-contract attribute types from plain OTel SDKs are read where the meaning
is unambiguous and counted in ``Decoded.off_contract``."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import secrets
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from mltrace_otel import conventions as C
from mltrace_otel.collector import otlp
from mltrace_otel.collector.server import Collector
from tests.collector.conftest import stored_spans

PB = "application/x-protobuf"
JS = "application/json"
T0 = 1_714_557_600 * 10**9  # 2024-05-01T10:00:00Z


def _post(c: Collector, body: bytes, ctype: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(c.addresses.host, c.addresses.http_port, timeout=60)
    try:
        conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": ctype})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _grpc_export(c: Collector, body: bytes) -> Any:
    with grpc.insecure_channel(c.addresses.grpc_target) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        return export(body, timeout=30)


# --- nesting -------------------------------------------------------------------------------------

def _json_span(value_json: str) -> tuple[str, bytes]:
    """(span id, an OTLP/JSON body of one span whose attribute ``deep`` is ``value_json``)."""
    sid = secrets.token_hex(8)
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": secrets.token_hex(16), "spanId": sid, "name": "deep",
        "startTimeUnixNano": str(T0), "endTimeUnixNano": str(T0 + 1000),
        "attributes": [{"key": "deep", "value": "VALUE"}]}]}]}]}
    return sid, json.dumps(doc).replace('"VALUE"', value_json).encode()


def _json_nested(depth: int, kind: str) -> str:
    if kind == "array":
        return '{"arrayValue": {"values": [' * depth + '{"stringValue": "leaf"}' + "]}}" * depth
    return ('{"kvlistValue": {"values": [{"key": "k", "value": ' * depth + '{"stringValue": "leaf"}'
            + "}]}}" * depth)


def _pb_nested(depth: int, kind: str) -> tuple[str, bytes]:
    """(span id, a protobuf request of one span whose attribute ``deep`` nests ``depth`` levels)."""
    req = ExportTraceServiceRequest()
    sp = req.resource_spans.add().scope_spans.add().spans.add()
    sp.trace_id, sp.span_id, sp.name = secrets.token_bytes(16), secrets.token_bytes(8), "deep"
    sp.start_time_unix_nano, sp.end_time_unix_nano = T0, T0 + 1000
    kv = sp.attributes.add()
    kv.key = "deep"
    v = kv.value
    for _ in range(depth):
        if kind == "array":
            v = v.array_value.values.add()
        else:
            inner = v.kvlist_value.values.add()
            inner.key = "k"
            v = inner.value
    v.string_value = "leaf"
    return sp.span_id.hex(), req.SerializeToString()


def test_deeply_nested_json_gets_400_naming_the_problem_and_no_traceback(
        collector: Collector, store: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = [b"[" * 100_000, b'{"resourceSpans": ' + b"[" * 100_000,
              _json_span(_json_nested(1000, "array"))[1], _json_span(_json_nested(1000, "kvlist"))[1],
              _json_span(_json_nested(48, "array"))[1], _json_span(_json_nested(32, "kvlist"))[1]]
    for body in bodies:
        status, resp = _post(collector, body, JS)
        assert status == 400, (body[:80], status, resp[:300])
        assert "nested too deeply" in json.loads(resp)["message"]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]

    # the deepest values the protobuf parsers accept land, in both encodings
    ids = []
    for depth, kind in ((47, "array"), (31, "kvlist")):
        sid, body = _json_span(_json_nested(depth, kind))
        assert _post(collector, body, JS)[0] == 200
        ids.append(sid)
        sid, body = _pb_nested(depth, kind)
        assert _post(collector, body, PB)[0] == 200
        ids.append(sid)
    assert set(stored_spans(store, ids)) == set(ids)


def test_deeply_nested_protobuf_gets_400_over_http_and_invalid_argument_over_grpc(
        collector: Collector, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for kind in ("array", "kvlist"):
        for depth in (1000, 48 if kind == "array" else 32):
            body = _pb_nested(depth, kind)[1]
            status, _ = _post(collector, body, PB)
            assert status == 400, (kind, depth)
            with pytest.raises(grpc.RpcError) as info:
                _grpc_export(collector, body)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "nested too deeply" in info.value.details()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# --- off-contract attribute types ----------------------------------------------------------------

def _plain_sdk_spans() -> dict[str, Any]:
    """{label: finished span} from the plain OTel SDK (scope ``plain-otel``) with the attribute
    types other SDKs send: a producer, then runs 10 minutes later reading its output."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    mem = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracer = provider.get_tracer("plain-otel")
    later = T0 + 600 * 10**9
    specs: dict[str, tuple[int, dict[str, Any]]] = {
        "producer": (T0, {C.RUN_OUTPUTS: ["data/a.csv"]}),
        # JS numbers: a double threshold; a scalar string for one input and one output
        "double": (later, {C.RUN_STALENESS_THRESHOLD_S: 3600.5, C.RUN_INPUTS: "data/a.csv",
                           C.RUN_OUTPUTS: "[draft] notes.txt"}),
        "half_up": (later, {C.RUN_STALENESS_THRESHOLD_S: 3601.5, C.RUN_INPUTS: ["data/a.csv"]}),
        # a threshold as a string, pointers as ints and bools
        "string": (later, {C.RUN_STALENESS_THRESHOLD_S: "3600", C.RUN_INPUTS: ["data/a.csv"],
                           C.RUN_OUTPUTS: [1, 2]}),
        "bools": (later, {C.RUN_STALENESS_THRESHOLD_S: 3600, C.RUN_INPUTS: [True]}),
        "garbage": (later, {C.RUN_STALENESS_THRESHOLD_S: "soon", C.RUN_INPUTS: ["data/a.csv"]}),
        # on contract, for comparison: stale (600 s > 60 s)
        "control": (later, {C.RUN_STALENESS_THRESHOLD_S: 60, C.RUN_INPUTS: ["data/a.csv"]}),
    }
    out = {}
    for label, (start, attrs) in specs.items():
        span = tracer.start_span(label, start_time=start, attributes={C.COMPONENT_NAME: label, **attrs})
        span.end(end_time=start + 10**9)
        out[label] = span
    # mltrace.* attributes on a span that is no run are not counted
    other = tracer.start_span("not-a-run", attributes={C.RUN_STALENESS_THRESHOLD_S: 1.5})
    other.end()
    out["not-a-run"] = other
    provider.shutdown()
    return out


EXPECTED_OFF_CONTRACT = {
    C.RUN_STALENESS_THRESHOLD_S: 4,  # double, half_up, string, garbage
    C.RUN_INPUTS: 2,  # double (scalar string), bools
    C.RUN_OUTPUTS: 2,  # double (scalar string), string (ints)
}


def _run_id(span: Any) -> str:
    return format(span.context.span_id, "016x")


def test_off_contract_types_are_counted_by_decode_in_both_encodings() -> None:
    spans = _plain_sdk_spans()
    req = encode_spans(list(spans.values()))
    decoded = otlp.decode(req.SerializeToString(), otlp.PROTOBUF)
    assert dict(decoded.off_contract) == EXPECTED_OFF_CONTRACT
    assert decoded.spans == len(spans)

    # the same request as OTLP/JSON (hex ids, lowerCamelCase, integer enums)
    from google.protobuf.json_format import MessageToDict

    doc = MessageToDict(req, use_integers_for_enums=True)
    for sp in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for key in ("traceId", "spanId"):
            sp[key] = base64.b64decode(sp[key]).hex()
    assert dict(otlp.decode(json.dumps(doc).encode(), otlp.JSON).off_contract) == EXPECTED_OFF_CONTRACT

    # on-contract traffic counts nothing; nor do spans of the mltrace SDK's own scope
    good = encode_spans([spans["control"], spans["producer"]]).SerializeToString()
    assert otlp.decode(good, otlp.PROTOBUF).off_contract == {}
    ours = encode_spans(list(spans.values()))
    for ss in (ss for rs in ours.resource_spans for ss in rs.scope_spans):
        ss.scope.name = C.SCOPE_NAME
    assert otlp.decode(ours.SerializeToString(), otlp.PROTOBUF).off_contract == {}


def test_off_contract_types_are_read_where_unambiguous(collector: Collector, store: Any) -> None:
    spans = _plain_sdk_spans()
    status, _ = _post(collector, encode_spans(list(spans.values())).SerializeToString(), PB)
    assert status == 200
    stored_spans(store, [])  # flush the collector
    runs = {label: store.get_run(_run_id(span)) for label, span in spans.items() if label != "not-a-run"}

    threshold = {label: r.staleness_threshold_s for label, r in runs.items()}
    assert threshold == {"producer": 2592000, "double": 3600, "half_up": 3602, "string": 3600,
                         "bools": 3600, "garbage": 2592000, "control": 60}  # halves to even
    assert [p.name for p in runs["double"].inputs] == ["data/a.csv"]
    assert [p.name for p in runs["double"].outputs] == ["[draft] notes.txt"]
    assert [p.name for p in runs["string"].outputs] == ["1", "2"]
    assert [p.name for p in runs["bools"].inputs] == ["true"]
    assert runs["double"].dependencies == (_run_id(spans["producer"]),)  # lineage through it

    stale = {r.component for r in store.stale_runs()}
    assert stale == {"control"}  # a 0 s threshold (the old reading of 3600.5) made all stale
    assert collector.metrics.off_contract.labels(C.RUN_STALENESS_THRESHOLD_S)._value.get() == 4
