"""Ingest: our rows equal the contrib exporter's, and contrib-shaped rows fill the mltrace tables."""

from __future__ import annotations

import base64

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from mltrace_otel import conventions as c
from mltrace_otel.store.ingest import encode_spans, format_double, rows_from_otlp

TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SPAN = bytes.fromhex("b7ad6b7169203331")
OTHER_SPAN = bytes.fromhex("00f067aa0ba902b7")


def kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def arr(*values: AnyValue) -> AnyValue:
    return AnyValue(array_value=ArrayValue(values=list(values)))


def handmade_request() -> ExportTraceServiceRequest:
    """One span using every value type the exporter's mapping names."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([kv("service.name", string_value="billing"),
                                   kv("host.cores", int_value=8)])
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "my.scope", "0.9"
    ss.scope.attributes.append(kv("scope.attr", string_value="not stored"))
    sp = ss.spans.add()
    sp.trace_id, sp.span_id, sp.parent_span_id = TRACE, SPAN, bytes(8)  # all-zero parent
    sp.trace_state = "vendor=1"
    sp.name, sp.kind = "train", Span.SPAN_KIND_SERVER
    sp.start_time_unix_nano, sp.end_time_unix_nano = 1_700_000_000_123_456_789, 1_700_000_002_000_000_000
    sp.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="boom"))
    sp.attributes.extend([
        kv("s", string_value="plain ü"),
        kv("b", bool_value=True),
        kv("i", int_value=-42),
        kv("d_int", double_value=3.0),
        kv("d_frac", double_value=0.1),
        kv("d_small", double_value=1e-7),
        kv("d_big", double_value=1e21),
        kv("d_mid", double_value=123456789012345680.0),
        kv("raw", bytes_value=b"\x00\xffhi"),
        KeyValue(key="arr", value=arr(AnyValue(string_value="a"), AnyValue(string_value='q"<&>'))),
        KeyValue(key="mixed", value=arr(AnyValue(int_value=1), AnyValue(double_value=2.5),
                                        AnyValue(bool_value=False), AnyValue(double_value=4.0))),
        KeyValue(key="empty", value=arr()),
        KeyValue(key="map", value=AnyValue(kvlist_value=KeyValueList(values=[
            kv("z", int_value=1), kv("a", string_value="x")]))),
    ])
    ev = sp.events.add()
    ev.time_unix_nano, ev.name = 1_700_000_001_000_000_000, "mltrace.test"
    ev.attributes.extend([kv("mltrace.test.passed", bool_value=False),
                          kv("mltrace.test.name", string_value="t1")])
    ln = sp.links.add()
    ln.trace_id, ln.span_id, ln.trace_state = TRACE, OTHER_SPAN, ""
    ln.attributes.append(kv("mltrace.io.name", string_value="raw.csv"))
    return req


# The row the contrib exporter writes for that span, spelled out from the facts file.
EXPECTED_ROW = {
    "Timestamp": 1_700_000_000_123_456_789,
    "TraceId": "0af7651916cd43dd8448eb211c80319c",
    "SpanId": "b7ad6b7169203331",
    "ParentSpanId": "",
    "TraceState": "vendor=1",
    "SpanName": "train",
    "SpanKind": "Server",
    "ServiceName": "billing",
    "ResourceAttributes": {"host.cores": "8", "service.name": "billing"},
    "ScopeName": "my.scope",
    "ScopeVersion": "0.9",
    "SpanAttributes": {
        "arr": '["a","q\\"\\u003c\\u0026\\u003e"]',
        "b": "true",
        "d_big": "1e+21",
        "d_frac": "0.1",
        "d_int": "3",
        "d_mid": "123456789012345680",
        "d_small": "1e-7",
        "empty": "[]",
        "i": "-42",
        "map": '{"a":"x","z":1}',
        "mixed": "[1,2.5,false,4]",
        "raw": base64.b64encode(b"\x00\xffhi").decode(),
        "s": "plain ü",
    },
    "Duration": 1_876_543_211,
    "StatusCode": "Error",
    "StatusMessage": "boom",
    "Events.Timestamp": [1_700_000_001_000_000_000],
    "Events.Name": ["mltrace.test"],
    "Events.Attributes": [{"mltrace.test.name": "t1", "mltrace.test.passed": "false"}],
    "Links.TraceId": ["0af7651916cd43dd8448eb211c80319c"],
    "Links.SpanId": ["00f067aa0ba902b7"],
    "Links.TraceState": [""],
    "Links.Attributes": [{"mltrace.io.name": "raw.csv"}],
}


def test_rows_for_a_span_equal_the_contrib_exporters_row() -> None:
    rows = rows_from_otlp(handmade_request()).rows()
    assert rows == [EXPECTED_ROW]
    assert list(rows[0]["SpanAttributes"]) == sorted(EXPECTED_ROW["SpanAttributes"])


def test_serialized_request_gives_the_same_rows() -> None:
    assert rows_from_otlp(handmade_request().SerializeToString()).rows() == [EXPECTED_ROW]


@pytest.mark.parametrize(("value", "text"), [
    (3.0, "3"), (-0.5, "-0.5"), (0.1, "0.1"), (1e-6, "0.000001"), (1e-7, "1e-7"), (1.5e-10, "1.5e-10"),
    (1e20, "100000000000000000000"), (1e21, "1e+21"), (2.5e300, "2.5e+300"), (0.0, "0"),
    (1 / 3, "0.3333333333333333"), (float("inf"), "json: unsupported value: +Inf"),
])
def test_doubles_render_in_shortest_round_trip_form(value: float, text: str) -> None:
    assert format_double(value) == text


def test_inserted_row_reads_back_exactly(store) -> None:
    result = store.insert_otlp(handmade_request())
    assert (result.accepted, result.rejected) == (1, 0)
    names = [n for n in EXPECTED_ROW if n != "Timestamp"]
    sql = ("SELECT toUnixTimestamp64Nano(Timestamp), arrayMap(t -> toUnixTimestamp64Nano(t), "
           "Events.Timestamp), " + ", ".join(f"`{n}`" for n in names if n != "Events.Timestamp")
           + " FROM otel_traces")
    (row,) = store.query("read_back", sql)
    got = dict(zip(["Timestamp", "Events.Timestamp"] + [n for n in names if n != "Events.Timestamp"],
                   row, strict=True))
    assert got == EXPECTED_ROW


def test_invalid_spans_are_rejected_one_by_one() -> None:
    req = handmade_request()
    spans = req.resource_spans[0].scope_spans[0].spans
    short_id = spans.add()
    short_id.CopyFrom(spans[0])
    short_id.span_id = b"\x01\x02\x03"
    backwards = spans.add()
    backwards.CopyFrom(spans[0])
    backwards.span_id = OTHER_SPAN
    backwards.end_time_unix_nano = backwards.start_time_unix_nano - 1
    zero_trace = spans.add()
    zero_trace.CopyFrom(spans[0])
    zero_trace.trace_id = bytes(16)
    cols = rows_from_otlp(req)
    assert len(cols) == 1 and cols.rejected == 3
    assert any("span_id has 3 bytes" in e for e in cols.errors)
    assert any("before start" in e for e in cols.errors)


def test_garbage_bytes_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not an OTLP ExportTraceServiceRequest"):
        rows_from_otlp(b"\xff\xff\xff definitely not protobuf")


def _plain_otel_run(tracer, name: str, inputs: list[str], outputs: list[str], **extra: object):
    """A run as any OTel SDK would emit it: a plain span with mltrace.* attributes (no mltrace SDK)."""
    attrs = {c.COMPONENT_NAME: name, c.COMPONENT_OWNER: "ana", c.COMPONENT_TAGS: ["etl", "daily"],
             c.RUN_INPUTS: inputs, c.RUN_OUTPUTS: outputs, **extra}
    with tracer.start_as_current_span(name, attributes=attrs) as span:
        span.add_event(c.EVENT_TEST, {c.TEST_NAME: "t", c.TEST_METHOD: "check", c.TEST_PHASE: "after",
                                      c.TEST_PASSED: True, c.TEST_MESSAGE: ""})
    return span


def test_writer_rows_equal_contrib_rows_for_sdk_spans(otel_tracer) -> None:
    from contrib_rows import contrib_row

    tracer, exporter = otel_tracer
    with tracer.start_as_current_span("parent"):
        _plain_otel_run(tracer, "clean", ["raw.csv"], ["clean.csv"],
                        **{c.RUN_STALENESS_THRESHOLD_S: 60, c.RUN_ENDPOINT: False, "score": 0.25})
    spans = exporter.get_finished_spans()
    assert rows_from_otlp(encode_spans(spans)).rows() == [contrib_row(s) for s in spans]


def test_contrib_shaped_rows_fill_the_mltrace_tables(store, otel_tracer, contrib_insert) -> None:
    tracer, exporter = otel_tracer
    _plain_otel_run(tracer, "ingest", [], ["raw.csv"], **{c.RUN_OUTPUT_TYPES: ["DATA"]})
    _plain_otel_run(tracer, "clean", ["raw.csv"], ["clean.csv", "model.pkl"],
                    **{c.RUN_INPUT_VERSIONS: ["v1"], c.RUN_OUTPUT_TYPES: ["DATA", "MODEL"],
                       c.RUN_STALENESS_THRESHOLD_S: 60, c.VCS_REVISION: "abc123"})
    with tracer.start_as_current_span("not a run", attributes={"http.method": "GET"}):
        pass
    spans = exporter.get_finished_spans()
    assert contrib_insert(store, spans) == 3
    ingest_id, clean_id = (f"{s.context.span_id:016x}" for s in spans[:2])

    runs = store.query("runs", "SELECT RunId, Component, Owner, Tags, Inputs, InputVersions, InputTypes, "
                       "Outputs, OutputTypes, StalenessThresholdS, GitHash, TestNames, TestPassed "
                       "FROM mltrace_runs ORDER BY Start")
    assert runs == [
        (ingest_id, "ingest", "ana", ["etl", "daily"], [], [], [], ["raw.csv"], ["DATA"], 2592000, "",
         ["t"], [1]),
        (clean_id, "clean", "ana", ["etl", "daily"], ["raw.csv"], ["v1"], ["UNKNOWN"],
         ["clean.csv", "model.pkl"], ["DATA", "MODEL"], 60, "abc123", ["t"], [1]),
    ]
    io = store.query("io", "SELECT Pointer, Role, RunId, Version, PointerType FROM mltrace_io "
                     "ORDER BY Pointer, Role")
    assert io == [("clean.csv", "out", clean_id, "", "DATA"), ("model.pkl", "out", clean_id, "", "MODEL"),
                  ("raw.csv", "in", clean_id, "v1", "UNKNOWN"), ("raw.csv", "out", ingest_id, "", "DATA")]
    comps = store.query("components", "SELECT Name, Owner, Tags FROM mltrace_components FINAL ORDER BY Name")
    assert comps == [("clean", "ana", ["etl", "daily"]), ("ingest", "ana", ["etl", "daily"])]


def test_our_insert_is_byte_identical_to_the_contrib_insert(store, otel_tracer, contrib_insert) -> None:
    """otel_traces de-duplicates identical blocks (insert dedup window): writing the same spans
    as contrib rows and then through our writer leaves ONE copy, so the two blocks are equal."""
    tracer, exporter = otel_tracer
    for i in range(5):
        _plain_otel_run(tracer, f"train{i}", ["a"], ["b"], **{"epoch": i, "lr": 0.01 * i})
    spans = exporter.get_finished_spans()
    contrib_insert(store, spans)
    assert store.insert_spans(spans).accepted == 5
    assert store.query("count", "SELECT count() FROM otel_traces") == [(5,)]
    _plain_otel_run(tracer, "train-extra", ["a"], ["b"])
    assert store.insert_spans(exporter.get_finished_spans()).accepted == 6
    assert store.query("count", "SELECT count() FROM otel_traces") == [(11,)]  # a different block lands


def test_values_go_cannot_encode_as_json_render_as_the_exporter_does() -> None:
    """json.Marshal fails on NaN inside an array, so AsString gives ''; duplicate map keys: last wins."""
    from mltrace_otel.store.ingest import render_attributes

    attrs = render_attributes([
        KeyValue(key="nan_in_array", value=arr(AnyValue(double_value=float("nan")), AnyValue(int_value=1))),
        KeyValue(key="nan", value=AnyValue(double_value=float("nan"))),
        KeyValue(key="dup_map", value=AnyValue(kvlist_value=KeyValueList(values=[
            kv("k", int_value=1), kv("k", int_value=2)]))),
        kv("dup", string_value="first"), kv("dup", string_value="last"),
    ])
    assert attrs == {"dup": "last", "dup_map": '{"k":2}', "nan": "json: unsupported value: NaN",
                     "nan_in_array": ""}
