"""Ingest: OTLP span batches → ``otel_traces`` rows, rendered exactly as the contrib exporter does.

One rendering for everything that writes spans: OTel SDK ReadableSpans are encoded to OTLP
(``opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans``) and go the same path
as requests from the collector and batches from the spool.

Value mapping (the OpenTelemetry Collector contrib ClickHouse exporter's):
ids lowercase hex, an all-zero id ``''``; SpanKind ``Unspecified|Internal|Server|Client|
Producer|Consumer``; StatusCode ``Unset|Ok|Error``; ServiceName = resource ``service.name``;
attribute values as strings (pcommon ``Value.AsString``): bool ``true``/``false``, int decimal,
double the shortest round-trip form (ES6 style: 3.0 → ``3``, 1e-07 → ``1e-7``), bytes standard
base64, arrays and maps compact JSON (Go ``encoding/json``: sorted keys, ``<>&`` escaped);
Duration = end − start in ns; events and links as the Nested columns.

A span that cannot be stored (a trace id that is not 16 bytes, a span id that is not 8, an end
before its start) is rejected on its own and reported in :class:`IngestResult`.

May import: conventions, errors, spool, .writer, opentelemetry-proto.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from operator import itemgetter
from typing import Any

from mltrace_otel import spool
from mltrace_otel.errors import StoreUnavailable
from mltrace_otel.store import writer
from mltrace_otel.store.models import IngestResult
from mltrace_otel.store.protocols import IngestConnection

log = logging.getLogger(__name__)

TABLE = "otel_traces"
COLUMNS: tuple[str, ...] = (
    "Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind",
    "ServiceName", "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes", "Duration",
    "StatusCode", "StatusMessage", "Events.Timestamp", "Events.Name", "Events.Attributes",
    "Links.TraceId", "Links.SpanId", "Links.TraceState", "Links.Attributes",
)
"""The otel_traces columns the writer fills, in insert order."""

SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES = ("Unset", "Ok", "Error")
BAD_DIR = "bad"
"""Sub-directory of the spool where unreadable batch files are moved."""


# --- value rendering ---------------------------------------------------------------------------
def format_double(f: float) -> str:
    """A double as pcommon's AsString renders it (Go ``encoding/json`` / ES6 number form)."""
    if math.isnan(f):
        return "json: unsupported value: NaN"
    if math.isinf(f):
        return f"json: unsupported value: {'+Inf' if f > 0 else '-Inf'}"
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        r = repr(f)  # shortest digits, exponent form: '1e-07', '1.5e+21'
        mant, _, exp = r.partition("e")
        sign, digits = exp[0], exp[1:].lstrip("0") or "0"
        if sign == "+" and len(digits) < 2:
            digits = digits.rjust(2, "0")
        return f"{mant}e{sign}{digits}"
    if f == int(f) and a < 1e16:
        return str(int(f)) if not (f == 0 and math.copysign(1, f) < 0) else "-0"
    return format(Decimal(repr(f)).normalize(), "f")


_JSON_ESC = {
    '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f",
    "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029",
}
for _c in range(0x20):
    _JSON_ESC.setdefault(chr(_c), f"\\u{_c:04x}")
_JSON_TABLE = str.maketrans(_JSON_ESC)


_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f<>&\u2028\u2029]')


def json_string(s: str) -> str:
    """A string as Go's ``encoding/json`` quotes it (HTML-safe escapes, UTF-8 kept)."""
    if _NEEDS_ESCAPE.search(s) is None:
        return '"' + s + '"'
    return '"' + s.translate(_JSON_TABLE) + '"'


class _Unencodable(ValueError):
    """A NaN or infinity inside an array or map: Go's json.Marshal fails, AsString gives ''."""


def _json_value(v: Any) -> str:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return json_string(v.string_value)
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        d = v.double_value
        if math.isnan(d) or math.isinf(d):
            raise _Unencodable(d)
        return format_double(d)
    if kind == "bytes_value":
        return json_string(base64.b64encode(v.bytes_value).decode())
    if kind == "array_value":
        return "[" + ",".join([json_string(x.string_value) if x.WhichOneof("value") == "string_value"
                               else _json_value(x) for x in v.array_value.values]) + "]"
    if kind == "kvlist_value":
        items = sorted({kv.key: kv.value for kv in v.kvlist_value.values}.items(), key=_first)
        return "{" + ",".join(f"{json_string(k)}:{_json_value(x)}" for k, x in items) + "}"
    return "null"


def render_value(v: Any) -> str:
    """An OTLP AnyValue as the string the contrib exporter stores (bool, int, arrays and maps as
    their JSON; '' for an array or map holding a NaN or an infinity, or no value)."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "double_value":
        return format_double(v.double_value)
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if kind not in ("bool_value", "int_value", "array_value", "kvlist_value"):
        return ""
    try:
        return _json_value(v)
    except _Unencodable:
        return ""


_KV_CACHE: dict[bytes, tuple[str, str]] = {}
_KV_CACHE_MAX = 20_000
"""Rendered attributes by their serialized KeyValue: spans repeat most attributes (component,
owner, code location, git hash, pointer types), and one ``SerializeToString`` plus a dict look-up
costs less than reading a KeyValue's fields through the protobuf API. Equal bytes are an equal
attribute, so a hit renders exactly what a miss would. Bounded: cleared when full."""


def render_attributes(kvs: Iterable[Any]) -> dict[str, str]:
    """OTLP KeyValues → the attribute map (keys sorted, values rendered; last duplicate wins)."""
    items = []
    append = items.append
    cache = _KV_CACHE
    for kv in kvs:
        raw = kv.SerializeToString()
        hit = cache.get(raw)
        if hit is None:
            hit = (kv.key, render_value(kv.value))
            if len(cache) >= _KV_CACHE_MAX:
                cache.clear()
            cache[raw] = hit
        append(hit)
    if len(items) > 1:
        items.sort(key=_first)
    return dict(items)


_first = itemgetter(0)


def hex_id(raw: bytes, size: int, what: str) -> str:
    """An id as lowercase hex, ``''`` when empty or all-zero; ValueError on a wrong length."""
    if not raw:
        return ""
    if len(raw) != size:
        raise ValueError(f"{what} has {len(raw)} bytes, expected {size}")
    if not any(raw):
        return ""
    return raw.hex()


# --- rows ----------------------------------------------------------------------------------------
class Columns:
    """Column-oriented rows for one otel_traces insert."""

    def __init__(self) -> None:
        self.data: list[list[Any]] = [[] for _ in COLUMNS]
        self.errors: list[str] = []
        self.rejected = 0

    def __len__(self) -> int:
        return len(self.data[0])

    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by column name (for tests and debugging)."""
        return [dict(zip(COLUMNS, r, strict=True)) for r in zip(*self.data, strict=True)]


def rows_from_otlp(request: bytes | Any, into: Columns | None = None) -> Columns:
    """Render every span of an ExportTraceServiceRequest (object or bytes) as otel_traces rows.

    Raises:
        ValueError: the bytes are not an ExportTraceServiceRequest.
    """
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    if isinstance(request, (bytes, bytearray, memoryview)):
        msg = ExportTraceServiceRequest()
        try:
            msg.ParseFromString(bytes(request))
        except Exception as e:  # protobuf's DecodeError
            raise ValueError(f"not an OTLP ExportTraceServiceRequest: {e}") from e
        request = msg
    cols = into if into is not None else Columns()
    (c_ts, c_trace, c_span, c_parent, c_state, c_name, c_kind, c_service, c_res, c_scope, c_scopev,
     c_attrs, c_dur, c_status, c_msg, c_ev_ts, c_ev_name, c_ev_attrs, c_ln_trace, c_ln_span,
     c_ln_state, c_ln_attrs) = cols.data
    for rs in request.resource_spans:
        res_attrs = render_attributes(rs.resource.attributes)
        service = ""
        for kv in rs.resource.attributes:
            if kv.key == "service.name":
                service = kv.value.string_value  # pcommon Str(): '' unless a string
        for ss in rs.scope_spans:
            scope_name, scope_version = ss.scope.name, ss.scope.version
            for sp in ss.spans:
                try:
                    trace_id = hex_id(sp.trace_id, 16, "trace_id")
                    span_id = hex_id(sp.span_id, 8, "span_id")
                    parent = hex_id(sp.parent_span_id, 8, "parent_span_id")
                    if not span_id or not trace_id:
                        raise ValueError("trace_id and span_id must be set and non-zero")
                    start, end = sp.start_time_unix_nano, sp.end_time_unix_nano
                    if end < start:
                        raise ValueError(f"end time {end} is before start time {start}")
                    ev_ts, ev_name, ev_attrs = [], [], []
                    for ev in sp.events:
                        ev_ts.append(ev.time_unix_nano)
                        ev_name.append(ev.name)
                        ev_attrs.append(render_attributes(ev.attributes))
                    ln_trace, ln_span, ln_state, ln_attrs = [], [], [], []
                    for ln in sp.links:
                        ln_trace.append(hex_id(ln.trace_id, 16, "link trace_id"))
                        ln_span.append(hex_id(ln.span_id, 8, "link span_id"))
                        ln_state.append(ln.trace_state)
                        ln_attrs.append(render_attributes(ln.attributes))
                    kind = SPAN_KINDS[sp.kind] if 0 <= sp.kind < len(SPAN_KINDS) else ""
                    code = sp.status.code
                    status = STATUS_CODES[code] if 0 <= code < len(STATUS_CODES) else ""
                    attrs = render_attributes(sp.attributes)
                except ValueError as e:
                    cols.rejected += 1
                    if len(cols.errors) < 20:
                        cols.errors.append(f"span {sp.span_id.hex() or '?'} ({sp.name!r}): {e}")
                    continue
                c_ts.append(start)
                c_trace.append(trace_id)
                c_span.append(span_id)
                c_parent.append(parent)
                c_state.append(sp.trace_state)
                c_name.append(sp.name)
                c_kind.append(kind)
                c_service.append(service)
                c_res.append(res_attrs)
                c_scope.append(scope_name)
                c_scopev.append(scope_version)
                c_attrs.append(attrs)
                c_dur.append(end - start)
                c_status.append(status)
                c_msg.append(sp.status.message)
                c_ev_ts.append(ev_ts)
                c_ev_name.append(ev_name)
                c_ev_attrs.append(ev_attrs)
                c_ln_trace.append(ln_trace)
                c_ln_span.append(ln_span)
                c_ln_state.append(ln_state)
                c_ln_attrs.append(ln_attrs)
    return cols


_NS = 1_000_000_000
_TS = COLUMNS.index("Timestamp")
_EV_TS = COLUMNS.index("Events.Timestamp")
_SECONDS: dict[int, str] = {}  # "SSSSSSSSSS." by second: a batch's spans share a few seconds


def _ts_text(ns: int) -> str:
    """Nanoseconds since the epoch as the text DateTime64(9) reads exactly: ``SSSSSSSSSS.NNNNNNNNN``
    (ten zero-padded digits of seconds, so ClickHouse reads a Unix time for any value, 0 too)."""
    s, f = divmod(ns, _NS)
    return f"{s:010d}.{f:09d}"


def json_body(cols: Columns) -> bytes:
    """The rows as one ``JSONCompactColumns`` document (one JSON array per column, in
    :data:`COLUMNS` order): ``json.dumps`` builds it in C, several times faster than
    clickhouse-connect's Native serialization in Python, so the insert holds the GIL briefly.
    Timestamps become exact decimal text (JSON numbers would be read as seconds)."""
    data = list(cols.data)
    seconds = _SECONDS
    out = []
    append = out.append
    for ns in data[_TS]:
        s, f = divmod(ns, _NS)
        head = seconds.get(s)
        if head is None:
            if len(seconds) > 4096:
                seconds.clear()
            head = seconds[s] = f"{s:010d}."
        append(f"{head}{f:09d}")
    data[_TS] = out
    data[_EV_TS] = [[_ts_text(t) for t in ts] if ts else ts for ts in data[_EV_TS]]
    return json.dumps(data, ensure_ascii=False, check_circular=False, separators=(",", ":")).encode()


INSERT_SETTINGS: dict[str, Any] = {
    "async_insert": 0,  # one synchronous insert per batch
    # no de-duplication by key inside the inserted block (the ReplacingMergeTree mltrace tables
    # the views fill): readers de-duplicate anyway, and collapsing every block costs CPU per span
    "optimize_on_insert": 0,
}
"""Settings of every span insert into otel_traces (rows rendered here, or by the engine)."""


def insert_columns(store: IngestConnection, cols: Columns, *, dedup_token: str | None = None) -> IngestResult:
    """Insert rendered rows in one synchronous insert (with an optional dedup token), as one
    JSONCompactColumns body (:func:`json_body`)."""
    if len(cols):
        settings: dict[str, Any] = dict(INSERT_SETTINGS)
        if dedup_token:
            settings["insert_deduplication_token"] = dedup_token
        store.insert_body("insert_spans", TABLE, json_body(cols), fmt="JSONCompactColumns", columns=COLUMNS,
                          settings=settings)
    return IngestResult(accepted=len(cols), rejected=cols.rejected, errors=tuple(cols.errors))


def insert_otlp(store: IngestConnection, request: bytes | Any, *,
                dedup_token: str | None = None) -> IngestResult:
    """Insert an OTLP ExportTraceServiceRequest (object or serialized protobuf).

    Raises:
        ValueError: bytes that are not an ExportTraceServiceRequest.
        QueryError / StoreUnavailable: the insert failed.
    """
    return insert_columns(store, rows_from_otlp(request), dedup_token=dedup_token)


def insert_requests_rendered(store: IngestConnection, requests: Sequence[bytes | Any], *,
                             dedup_token: str | None = None) -> IngestResult:
    """Render several OTLP requests (objects or bytes) in Python and insert them in one insert
    (with an optional insert_deduplication_token)."""
    cols = Columns()
    for request in requests:
        rows_from_otlp(request, into=cols)
    return insert_columns(store, cols, dedup_token=dedup_token)


def one_request_per_span(payload: bytes) -> list[bytes]:
    """A serialized request split into one request per span (each with its resource and scope):
    when a request cannot be stored whole, each span is tried alone."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    out: list[bytes] = []
    req = ExportTraceServiceRequest.FromString(payload)
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for sp in ss.spans:
                one = ExportTraceServiceRequest()
                r = one.resource_spans.add()
                r.resource.CopyFrom(rs.resource)
                r.schema_url = rs.schema_url
                s = r.scope_spans.add()
                s.scope.CopyFrom(ss.scope)
                s.schema_url = ss.schema_url
                s.spans.add().CopyFrom(sp)
                out.append(one.SerializeToString())
    return out


def stripped(payload: bytes) -> bytes:
    """A request with its spans reduced to what any store can hold: ids, name, kind, times,
    status and the resource's service.name (attributes, events and links dropped). The last
    resort for a span no renderer can store: an ordinary span without its bad field."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest.FromString(payload)
    req.DiscardUnknownFields()
    for rs in req.resource_spans:
        keep = [kv for kv in rs.resource.attributes if kv.key == "service.name"
                and kv.value.WhichOneof("value") == "string_value"]
        del rs.resource.attributes[:]
        rs.resource.attributes.extend(keep)
        for ss in rs.scope_spans:
            del ss.scope.attributes[:]
            for sp in ss.spans:
                del sp.attributes[:]
                del sp.events[:]
                del sp.links[:]
                sp.trace_state = ""
    return req.SerializeToString()


def encode_spans(spans: Sequence[Any]) -> Any:
    """OTel SDK ReadableSpans → ExportTraceServiceRequest (the OTLP exporters' own encoder)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as _encode

    return _encode(spans)


def insert_spans(store: IngestConnection, spans: Sequence[Any]) -> IngestResult:
    """Insert OTel SDK ReadableSpans, rendered exactly as the contrib exporter would."""
    if not spans:
        return IngestResult()
    return insert_otlp(store, encode_spans(spans))


# --- spool drain ---------------------------------------------------------------------------------
def _move_aside(claimed: spool.Claimed, reason: str) -> None:
    bad = claimed.path.parent / BAD_DIR
    bad.mkdir(mode=0o700, exist_ok=True)
    target = bad / claimed.restore
    try:
        os.replace(claimed.path, target)
    except FileNotFoundError:
        return
    log.error("mltrace: spool file %s moved to %s: %s", claimed.restore, target, reason)


def drain_spool(store: IngestConnection) -> int:
    """Move every sealed segment of the local spool (:mod:`mltrace_otel.spool`) into the store,
    exactly once; spans stored.

    Each segment is claimed (an atomic rename, so concurrent drains never share one), its records
    inserted in one insert with the segment's name as ``insert_deduplication_token`` (a segment
    re-inserted after a crash between commit and delete is stored once), then deleted. A damaged
    record is skipped alone (logged at ERROR by the scan); a segment that cannot be read or parsed
    at all is moved to ``spool/bad/`` with a logged error and never blocks the rest; a segment the
    store refuses is given back (logged) for the next drain; when the store goes away it is given
    back and the error raised.
    """
    total = 0
    for claimed in spool.claim_all(store.settings.spool_dir):
        try:
            entries, _corrupt = claimed.entries()
            # rendered in Python: the SDK's requests were not checked the way the collector's are
            result = writer.write(store, [e.payload for e in entries], sum(e.spans for e in entries),
                                  None, dedup_token=claimed.token)
        except (OSError, ValueError) as e:  # unreadable, or bytes that are not OTLP
            _move_aside(claimed, str(e))
            continue
        except StoreUnavailable:
            claimed.release()
            raise
        except Exception as e:  # the store refused it: keep the segment for the next drain
            claimed.release()
            log.error("mltrace: spool file %s not drained, kept for the next drain: %s", claimed.restore, e)
            continue
        if result.rejected:
            log.warning("mltrace: spool file %s: %d spans rejected: %s", claimed.restore,
                        result.rejected, "; ".join(result.errors))
        claimed.done()
        total += result.accepted
    return total
