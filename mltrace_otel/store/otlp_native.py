"""Native ingest: serialized OTLP requests parsed and rendered by ClickHouse itself.

The Python renderer (:mod:`.ingest`) costs ~25 µs per span of interpreter work, which caps one
collector at ~40,000 spans/s before ClickHouse does anything. Here the engine does it in C++:
the collector concatenates the requests of a batch (length-delimited, ClickHouse's ``Protobuf``
format), inserts them into ``otel_traces_otlp`` (ENGINE = Null, one row per request, its spans
as nested arrays, typed by :data:`PROTO_FILE`), and the materialized view
``otel_traces_otlp_mv`` (migration 0030) renders each span as the ``otel_traces`` row the
contrib exporter writes, with the same value mapping as :mod:`.ingest` (ids lowercase hex,
SpanKind / StatusCode names, attribute values as pcommon ``AsString``: doubles in ES6 form,
bytes base64, arrays compact Go-style JSON with ``<>&`` escaped, maps sorted by key).
``tests/store/test_otlp_native.py`` checks both renderers give identical rows.

What SQL does not render (rare, and never written by mltrace's SDK): a map value
(``kvlist_value``), an array inside an array, an array value on an event or a link, a duplicate
attribute key, a string in an array holding one of the control characters ClickHouse's JSON
writer escapes in upper case. A span holding one is "deferred": the view skips it and records
it in ``otel_traces_otlp_deferred`` under the batch's token; :func:`insert_requests` then
renders those spans with the Python renderer and inserts them. Requests must be checked first
(ids, times: the collector's ``otlp.decode`` does it).

Imports :mod:`.ingest` (the Python renderer for deferred spans) and opentelemetry-proto.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mltrace_otel.errors import QueryError
from mltrace_otel.store import ingest
from mltrace_otel.store.models import IngestResult

log = logging.getLogger(__name__)

NULL_TABLE = "otel_traces_otlp"
DEFERRED_TABLE = "otel_traces_otlp_deferred"

PROTO_FILE = Path(__file__).with_name("otlp_trace.proto")
"""The OTLP trace messages as ClickHouse reads them (real field numbers, cut to what
otel_traces stores; see the file's header)."""
PROTO_SCHEMA = " ".join(line for line in PROTO_FILE.read_text(encoding="utf-8").splitlines()
                        if not line.startswith("//"))
"""The schema's text, sent with each insert to a ClickHouse server (``format_schema_source =
'string'``). The embedded engine reads :data:`PROTO_FILE` instead: given the text, it caches a
copy under the process's working directory."""

_ONEOF = ("Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, 'double_value' = 4, "
          "'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7)")
_SCALARS = "string_value String, bool_value Bool, int_value Int64, double_value Float64"
_INNER = f"Tuple(value {_ONEOF}, {_SCALARS}, array_value String, kvlist_value String, bytes_value String)"
_VALUE = (f"Tuple(value {_ONEOF}, {_SCALARS}, array_value Tuple(values Array({_INNER})), "
          "kvlist_value String, bytes_value String)")
_KVS = f"Array(Tuple(key String, value {_VALUE}))"
_SPAN = (
    "Tuple(trace_id String, span_id String, trace_state String, parent_span_id String, name String, "
    "kind Int32, start_time_unix_nano UInt64, end_time_unix_nano UInt64, "
    f"attributes {_KVS}, events Array(Tuple(time_unix_nano UInt64, name String, attributes {_KVS})), "
    f"links Array(Tuple(trace_id String, span_id String, trace_state String, attributes {_KVS})), "
    "status Tuple(message String, code Int32))"
)
REQUEST_TYPE = (
    f"Array(Tuple(resource Tuple(attributes {_KVS}), "
    f"scope_spans Array(Tuple(scope Tuple(name String, version String), spans Array({_SPAN})))))"
)
"""The type of ``otel_traces_otlp.resource_spans``: an ExportTraceServiceRequest as ClickHouse
reads it with :data:`PROTO_SCHEMA` (``input_format_protobuf_oneof_presence`` fills ``value``)."""


def _lit(s: str) -> str:
    """A ClickHouse string literal (our own constants only, never user text)."""
    out = s.replace("\\", "\\\\").replace("'", "\\'")
    return "'" + re.sub(r"[\x00-\x1f]", lambda m: f"\\x{ord(m.group()):02x}", out) + "'"


# Strings whose JSON quoting ClickHouse writes differently from Go (upper-case hex in \u00XX):
# a span with one inside an array value is deferred.
_ODD_CONTROLS = "[\\x0b\\x0e\\x0f\\x1a-\\x1f]"


def json_string_sql(e: str) -> str:
    """SQL quoting a String expression as Go's encoding/json does: ClickHouse's JSON string with
    ``/`` unescaped (whatever ``output_format_json_escape_forward_slashes`` says) and ``<>&``
    escaped (same for every character but :data:`_ODD_CONTROLS`)."""
    q = f"replaceAll(toJSONString({e}), '\\\\/', '/')"
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        q = f"replaceAll({q}, '{a}', '{b}')"
    return q


def double_sql(e: str) -> str:
    """SQL for a finite Float64 in ES6 / Go form: ClickHouse's shortest round-trip text is the
    same digits and thresholds, without the ``+`` of a positive exponent (1e21 → ``1e+21``)."""
    return f"replaceRegexpOne(toString({e}), 'e([0-9])', 'e+\\\\1')"


def _inner_json_sql(x: str) -> str:
    return (
        f"multiIf({x}.value = 'string_value', {json_string_sql(f'{x}.string_value')}, "
        f"{x}.value = 'bool_value', if({x}.bool_value, 'true', 'false'), "
        f"{x}.value = 'int_value', toString({x}.int_value), "
        f"{x}.value = 'double_value', {double_sql(f'{x}.double_value')}, "
        f"{x}.value = 'bytes_value', concat('\"', base64Encode({x}.bytes_value), '\"'), 'null')"
    )


def scalar_sql(v: str) -> str:
    """SQL rendering a string, bool, int, double or bytes AnyValue tuple as pcommon ``AsString``."""
    return (
        f"multiIf({v}.value = 'string_value', {v}.string_value, "
        f"{v}.value = 'bool_value', if({v}.bool_value, 'true', 'false'), "
        f"{v}.value = 'int_value', toString({v}.int_value), "
        f"{v}.value = 'double_value', multiIf(isNaN({v}.double_value), 'json: unsupported value: NaN', "
        f"isInfinite({v}.double_value), if({v}.double_value > 0, 'json: unsupported value: +Inf', "
        f"'json: unsupported value: -Inf'), {double_sql(f'{v}.double_value')}), "
        f"{v}.value = 'bytes_value', base64Encode({v}.bytes_value), '')"
    )


def value_sql(v: str) -> str:
    """SQL rendering a top-level AnyValue tuple as pcommon ``AsString``: a scalar, or an array
    of scalars as compact JSON ('' when it holds a NaN or an infinity, as Go's Marshal fails)."""
    arr = f"{v}.array_value.values"
    bad_double = f"arrayExists(x -> x.value = 'double_value' AND NOT isFinite(x.double_value), {arr})"
    array = (f"if({bad_double}, '', "
             f"concat('[', arrayStringConcat(arrayMap(x -> {_inner_json_sql('x')}, {arr}), ','), ']'))")
    return f"if({v}.value = 'array_value', {array}, {scalar_sql(v)})"


def attrs_sql(kvs: str, scalars_only: bool = False) -> str:
    """SQL for an attribute list as the otel_traces map (sorted by key)."""
    render = scalar_sql("kv.value") if scalars_only else value_sql("kv.value")
    return f"mapSort(mapFromArrays(arrayMap(kv -> kv.key, {kvs}), arrayMap(kv -> {render}, {kvs})))"


def _attrs_deferred_sql(kvs: str, scalars_only: bool = False) -> str:
    """SQL true for an attribute list SQL does not render (see module docstring)."""
    if scalars_only:
        odd = f"arrayExists(kv -> kv.value.value IN ('array_value', 'kvlist_value'), {kvs})"
    else:
        odd = (
            f"arrayExists(kv -> kv.value.value = 'kvlist_value' OR (kv.value.value = 'array_value' AND "
            f"arrayExists(x -> x.value IN ('array_value', 'kvlist_value') OR (x.value = 'string_value' "
            f"AND match(x.string_value, {_lit(_ODD_CONTROLS)})), kv.value.array_value.values)), {kvs})"
        )
    return f"({odd} OR length(arrayDistinct(arrayMap(kv -> kv.key, {kvs}))) != length({kvs}))"


def _hex_id_sql(e: str) -> str:
    return f"if(length(replaceAll({e}, '\\0', '')) = 0, '', lower(hex({e})))"


def deferred_sql() -> str:
    """SQL true for a span (``sp``, of resource ``rs``) that SQL does not render."""
    return (
        f"({_attrs_deferred_sql('sp.attributes')} OR {_attrs_deferred_sql('rs.resource.attributes')} "
        f"OR arrayExists(e -> {_attrs_deferred_sql('e.attributes', True)}, sp.events) "
        f"OR arrayExists(l -> {_attrs_deferred_sql('l.attributes', True)}, sp.links))"
    )


def rows_sql(database: str) -> str:
    """The SELECT of ``otel_traces_otlp_mv``: every span of the inserted requests as the
    otel_traces row the contrib exporter writes (spans :func:`deferred_sql` holds are skipped)."""
    kinds = "['Unspecified', 'Internal', 'Server', 'Client', 'Producer', 'Consumer']"
    return f"""SELECT
    fromUnixTimestamp64Nano(toInt64(sp.start_time_unix_nano)) AS Timestamp,
    lower(hex(sp.trace_id)) AS TraceId,
    lower(hex(sp.span_id)) AS SpanId,
    {_hex_id_sql('sp.parent_span_id')} AS ParentSpanId,
    sp.trace_state AS TraceState,
    sp.name AS SpanName,
    if(sp.kind BETWEEN 0 AND 5, arrayElement({kinds}, sp.kind + 1), '') AS SpanKind,
    arrayFirst(kv -> kv.key = 'service.name', rs.resource.attributes).value.string_value AS ServiceName,
    {attrs_sql('rs.resource.attributes')} AS ResourceAttributes,
    ss.scope.name AS ScopeName,
    ss.scope.version AS ScopeVersion,
    {attrs_sql('sp.attributes')} AS SpanAttributes,
    sp.end_time_unix_nano - sp.start_time_unix_nano AS Duration,
    if(sp.status.code BETWEEN 0 AND 2, arrayElement(['Unset', 'Ok', 'Error'], sp.status.code + 1), '')
        AS StatusCode,
    sp.status.message AS StatusMessage,
    arrayMap(e -> fromUnixTimestamp64Nano(toInt64(e.time_unix_nano)), sp.events) AS `Events.Timestamp`,
    arrayMap(e -> e.name, sp.events) AS `Events.Name`,
    arrayMap(e -> {attrs_sql('e.attributes', True)}, sp.events) AS `Events.Attributes`,
    arrayMap(l -> {_hex_id_sql('l.trace_id')}, sp.links) AS `Links.TraceId`,
    arrayMap(l -> {_hex_id_sql('l.span_id')}, sp.links) AS `Links.SpanId`,
    arrayMap(l -> l.trace_state, sp.links) AS `Links.TraceState`,
    arrayMap(l -> {attrs_sql('l.attributes', True)}, sp.links) AS `Links.Attributes`
FROM {database}.{NULL_TABLE}
ARRAY JOIN resource_spans AS rs
ARRAY JOIN rs.scope_spans AS ss
ARRAY JOIN ss.spans AS sp
WHERE NOT {deferred_sql()}"""


def deferred_rows_sql(database: str) -> str:
    """The SELECT of ``otel_traces_otlp_deferred_mv``: the spans SQL skips, by batch token."""
    return f"""SELECT
    getSetting('insert_deduplication_token') AS Batch,
    lower(hex(sp.trace_id)) AS TraceId,
    lower(hex(sp.span_id)) AS SpanId
FROM {database}.{NULL_TABLE}
ARRAY JOIN resource_spans AS rs
ARRAY JOIN rs.scope_spans AS ss
ARRAY JOIN ss.spans AS sp
WHERE {deferred_sql()}"""


def varint(n: int) -> bytes:
    """``n`` as a protobuf base-128 varint (the length prefix of a length-delimited message)."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def batch_body(payloads: Sequence[bytes]) -> bytes:
    """Serialized requests as one ``Protobuf``-format body (each length-delimited)."""
    return b"".join(varint(len(p)) + p for p in payloads)


def insert_requests(store: Any, payloads: Sequence[bytes], spans: int | None = None,
                    dedup_token: str | None = None) -> IngestResult:
    """Insert checked, serialized ExportTraceServiceRequests in one insert, rendered by the engine.

    ``spans``: how many spans the requests hold (counted here when None). Spans SQL does not
    render (see module docstring) are then rendered in Python and inserted in a second insert.
    ``dedup_token``: the insert's insert_deduplication_token (unique per batch: it also names
    the batch's deferred spans), so the same requests inserted again with it are dropped (the
    journal's replay); None: a fresh token. Returns how many spans were stored.
    """
    from mltrace_otel.store.schema import quote_ident

    if not payloads:
        return IngestResult()
    token = dedup_token or uuid.uuid4().hex  # also names the batch for its deferred spans
    body = batch_body(payloads)
    settings: dict[str, Any] = {
        **ingest.INSERT_SETTINGS,
        "insert_deduplication_token": token,
        "input_format_protobuf_oneof_presence": 1,
    }
    if store.settings.is_embedded:
        settings["format_schema"] = f"{PROTO_FILE}:Req"
    else:
        settings.update(format_schema_source="string", format_schema=PROTO_SCHEMA,
                        format_schema_message_name="Req")
    db = quote_ident(store.database)
    if getattr(store, "_native_ingest_refused", False):
        return ingest.insert_requests_rendered(store, payloads, dedup_token=dedup_token)
    try:
        store._call("insert_spans_native", {"requests": len(payloads), "bytes": len(body)},
                    lambda c: _raw_insert(c, f"{db}.{NULL_TABLE}", body, settings))
    except QueryError as e:
        if "UNKNOWN_SETTING" not in str(e) and "format_schema_source" not in str(e):
            raise
        # a server older than the settings the native path needs: render in Python from now on
        log.warning("mltrace: the store cannot parse OTLP itself (%s); rendering spans in Python", e)
        store._native_ingest_refused = True
        return ingest.insert_requests_rendered(store, payloads, dedup_token=dedup_token)
    if spans is None:
        spans = sum(_count(p) for p in payloads)
    deferred = store.query(
        "deferred_spans", f"SELECT TraceId, SpanId FROM {db}.{DEFERRED_TABLE} WHERE Batch = {{b:String}}",
        {"b": token})
    if not deferred:
        return IngestResult(accepted=spans)
    want = {(t, s) for t, s in deferred}
    late = ingest.insert_requests_rendered(store, [_only(p, want) for p in payloads],
                                           dedup_token=dedup_token and f"{dedup_token}-deferred")
    store.command("forget_deferred", f"ALTER TABLE {db}.{DEFERRED_TABLE} DELETE WHERE Batch = {{b:String}}",
                  {"b": token})
    return IngestResult(accepted=spans - len(deferred) + late.accepted, rejected=late.rejected,
                        errors=late.errors)


def _raw_insert(client: Any, table: str, body: bytes, settings: dict[str, Any]) -> Any:
    return client.raw_insert(table, None, body, settings=settings, fmt="Protobuf")


def _count(payload: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest.FromString(payload)
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


def _only(payload: bytes, want: set[tuple[str, str]]) -> Any:
    """The request with only the listed (trace id, span id) spans."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest.FromString(payload)
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            keep = [sp for sp in ss.spans if (sp.trace_id.hex(), sp.span_id.hex()) in want]
            del ss.spans[:]
            ss.spans.extend(keep)
    return req


__all__ = ["insert_requests", "batch_body", "rows_sql", "deferred_rows_sql", "REQUEST_TYPE",
           "PROTO_SCHEMA", "NULL_TABLE", "DEFERRED_TABLE"]
