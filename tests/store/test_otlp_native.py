"""The native ingest (ClickHouse parses and renders the OTLP protobuf, store/otlp_native.py) writes
exactly the rows the Python renderer (store/ingest.py, itself checked against the contrib
exporter's rows) writes, for every value type and the edge cases of each; spans SQL leaves to
Python (maps, nested arrays, duplicate keys) land identically too; the mltrace tables fill."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from mltrace_otel.store import otlp_native

ROWS = ("SELECT *, mapKeys(SpanAttributes), mapKeys(ResourceAttributes), "
        "arrayMap(m -> mapKeys(m), Events.Attributes) FROM otel_traces ORDER BY SpanId")

STRINGS = ["", "plain", "s3://bucket/a/b.parquet", 'quote " and \\ backslash', "<b>&amp;</b>", "tab\there",
           "new\nline", "\x00nul\x01\x07\x1f", "\x0b\x0e\x1a odd controls", "unicode é 😀 \u2028\u2029",
           "'; DROP TABLE otel_traces; --", "x" * 3000, "/leading/slash\\/"]
DOUBLES = [0.0, -0.0, 0.1, 1.5, -2.25, 3.0, 1e21, 1.5e21, 9.99e20, 1e-6, 1e-7, 1.234e-5, 123456789.125,
           2.0**53, 1e300, 5e-324, -1.7976931348623157e308, 1 / 3]


def v(x: Any) -> AnyValue:
    """A Python value as an OTLP AnyValue (tuples are byte strings, dicts kvlists)."""
    if isinstance(x, bool):
        return AnyValue(bool_value=x)
    if isinstance(x, int):
        return AnyValue(int_value=x)
    if isinstance(x, float):
        return AnyValue(double_value=x)
    if isinstance(x, bytes):
        return AnyValue(bytes_value=x)
    if isinstance(x, list):
        return AnyValue(array_value=ArrayValue(values=[v(y) for y in x]))
    if isinstance(x, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v(y)) for k, y in x.items()]))
    if x is None:
        return AnyValue()
    return AnyValue(string_value=x)


def kvs(d: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=v(x)) for k, x in d.items()]


def request(spans: list[dict[str, Any]], resource: dict[str, Any] | None = None,
            scope: tuple[str, str] = ("mltrace_otel", "0.1")) -> bytes:
    """One ExportTraceServiceRequest; each span dict gives attributes and optional fields."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kvs(resource if resource is not None else {"service.name": "svc"}))
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = scope
    for i, d in enumerate(spans):
        sp = ss.spans.add()
        sp.trace_id = d.get("trace_id", os.urandom(16))
        sp.span_id = d.get("span_id", os.urandom(8))
        sp.parent_span_id = d.get("parent", b"")
        sp.trace_state = d.get("trace_state", "")
        sp.name = d.get("name", f"span{i}")
        sp.kind = d.get("kind", 1)
        sp.start_time_unix_nano = d.get("start", 1_790_000_000_123_456_789 + i)
        sp.end_time_unix_nano = d.get("end", sp.start_time_unix_nano + 5_000_000)
        attrs = d.get("attrs", {})
        sp.attributes.extend(attrs if isinstance(attrs, list) else kvs(attrs))
        for name, attrs, t in d.get("events", []):
            ev = sp.events.add()
            ev.name, ev.time_unix_nano = name, t
            ev.attributes.extend(kvs(attrs))
        for tid, sid, state, attrs in d.get("links", []):
            ln = sp.links.add()
            ln.trace_id, ln.span_id, ln.trace_state = tid, sid, state
            ln.attributes.extend(kvs(attrs))
        if "status" in d:
            sp.status.code, sp.status.message = d["status"]
    return req.SerializeToString()


def both_ways(store: Any, payloads: list[bytes]) -> tuple[list[tuple], list[tuple]]:
    """otel_traces rows from the native insert, then from the Python renderer."""
    result = store.insert_requests(payloads)
    assert result.accepted == sum(len(ss.spans) for p in payloads
                                  for rs in ExportTraceServiceRequest.FromString(p).resource_spans
                                  for ss in rs.scope_spans)
    native = store.query("native_rows", ROWS)
    store.command("truncate", "TRUNCATE TABLE otel_traces")
    for p in payloads:
        store.insert_otlp(p)
    return native, store.query("python_rows", ROWS)


def test_every_value_type_renders_as_the_python_renderer_does(store: Any) -> None:
    spans = [
        {"attrs": {f"s{i}": s for i, s in enumerate(STRINGS)}},
        {"attrs": {f"d{i}": d for i, d in enumerate(DOUBLES)}},
        {"attrs": {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "t": True, "f": False,
                   "i0": 0, "imax": 2**63 - 1, "imin": -(2**63), "b": b"\x00\xffbytes", "empty_b": b"",
                   "none": None}},
        {"attrs": {"strs": STRINGS, "ints": [1, -2, 0], "bools": [True, False], "doubles": DOUBLES,
                   "mixed": ["a", 1, 2.5, True, b"\x01", None], "empty": [],
                   "nan_inside": [1.0, math.nan], "inf_inside": ["x", math.inf]}},
        {"kind": 0, "status": (2, "it failed"), "trace_state": "k=v", "parent": os.urandom(8),
         "events": [("exception", {"exception.type": "ValueError", "exception.message": "bad <x>",
                                   "n": 3, "ok": True, "d": 0.5}, 1_790_000_000_000_000_001),
                    ("mltrace.test", {}, 1_790_000_000_000_000_002)],
         "links": [(os.urandom(16), os.urandom(8), "a=b", {"mltrace.link": "input", "n": 1}),
                   (bytes(16), bytes(8), "", {})]},
        {"kind": 5, "status": (1, ""), "parent": bytes(8)},
        {"kind": 9, "status": (7, "unknown code")},
        {"start": 0, "end": 0, "name": ""},
    ]
    native, python = both_ways(store, [request(spans)])
    assert len(native) == len(spans)
    assert native == python


def test_resources_and_scopes(store: Any) -> None:
    payloads = [
        request([{}], resource={}),
        request([{}], resource={"service.name": 42, "host": "h"}, scope=("", "")),
        request([{}, {}], resource={"service.name": "a", "b": ["x", "y"], "c": 1.5}, scope=("lib", "2")),
    ]
    native, python = both_ways(store, payloads)
    assert len(native) == 4
    assert native == python


@pytest.mark.parametrize("attrs", [
    {"map": {"b": 1, "a": "x", "c": [1, 2]}},
    {"nested": [["a", "b"], ["c"]]},
    {"map_in_array": [{"k": "v"}]},
    [KeyValue(key="dup", value=v("first")), KeyValue(key="dup", value=v("second"))],
    {"odd": ["ok", "vertical\x0btab"]},
], ids=["kvlist", "nested-array", "map-in-array", "duplicate-key", "odd-control"])
def test_values_sql_leaves_to_python_land_the_same(store: Any, attrs: Any) -> None:
    plain = {"attrs": {"mltrace.component.name": "c", "x": "y"}}
    odd = {"attrs": attrs}
    event_array = {"events": [("e", {"arr": ["a", "b"]}, 1_790_000_000_000_000_005)]}
    native, python = both_ways(store, [request([plain, odd, event_array]), request([plain])])
    assert len(native) == 4
    assert native == python


def test_runs_from_native_ingest_fill_the_mltrace_tables(store: Any) -> None:
    from mltrace_otel import conventions as C

    span_id = os.urandom(8)
    attrs = {C.COMPONENT_NAME: "train", C.COMPONENT_OWNER: "ml", C.RUN_INPUTS: ["features.csv"],
             C.RUN_OUTPUTS: ["model.pkl"], C.RUN_INPUT_TYPES: ["DATA"], C.RUN_OUTPUT_TYPES: ["MODEL"]}
    store.insert_requests([request([{"span_id": span_id, "attrs": attrs}, {"attrs": {"not": "a run"}}])])
    run = store.get_run(span_id.hex())
    assert (run.component, run.owner) == ("train", "ml")
    pointers = [(p.name, p.type) for p in run.inputs + run.outputs]
    assert pointers == [("features.csv", "DATA"), ("model.pkl", "MODEL")]
    assert [n.run.id for n in store.trace("model.pkl").nodes] == [span_id.hex()]
    assert store.count_runs() == 1


def test_batch_body_is_length_delimited() -> None:
    a, b = request([{}]), b"\x0a" * 200
    body = otlp_native.batch_body([a, b])
    assert body[0] == len(a) and body[1 + len(a):3 + len(a)] == bytes([200 & 0x7F | 0x80, 1])
    assert body.endswith(b)
