"""OTLP request decoding: bodies (protobuf or JSON, plain/gzip/deflate) to validated requests.

Both receivers (HTTP and gRPC) call :func:`decode`, so every request goes through one check and
reaches the store as one serialized ``ExportTraceServiceRequest`` holding only the spans that
passed. OTLP/JSON is converted to that protobuf request (hex ids, both field casings, enums as
integers, 64-bit integers as strings), so the store renders rows from one format.

A request that does not parse or decompress, or whose every span is invalid, is refused whole
(:class:`BadRequest`; :class:`PayloadTooLarge` past ``max_bytes`` before or after
decompression: the decompressor stops at the limit, so a zip bomb costs nothing). A span with
unusable ids, an end before its start or a time past 2262 (it does not fit DateTime64 and would
fail the whole insert) is dropped alone (partial success): the store's own checks, made here
per request so each response counts its own. Spans whose mltrace attributes have another type
than the conventions say are accepted and counted (:func:`off_contract`).

Nesting: protobuf's parsers (upb for protobuf bodies, ``json_format.ParseDict`` for OTLP/JSON)
refuse messages nested deeper than 100 levels, and JSON nested past ``json``'s recursion limit
does not parse: each is a BadRequest naming the problem, never a RecursionError (a 500 and a
traceback). Both encodings accept the same depths, and the store parses what was accepted again
with the same limit.

Imports only :mod:`mltrace_otel.errors`, :mod:`mltrace_otel.conventions` and
opentelemetry-proto / protobuf.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mltrace_otel import conventions as C
from mltrace_otel.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_MEDIA_TYPES = {PROTOBUF: PROTOBUF, "application/protobuf": PROTOBUF, JSON: JSON}
_ZERO16 = bytes(16)
_ZERO8 = bytes(8)
_MAX_TIME = 2**63 - 1  # DateTime64(9) holds Int64 nanoseconds (year 2262)
_MAX_ERRORS = 5
_TOO_DEEP = ("nested too deeply (the limit is 100 levels of messages: an attribute value holds "
             "at most ~31 levels of key-value lists or ~47 of arrays)")


@dataclass(frozen=True)
class Decoded:
    """A checked request: the serialized request of its good spans, and what was rejected.

    Attributes:
        payload: a serialized ExportTraceServiceRequest holding only the accepted spans.
            Serialized requests concatenate into one valid request, which is how batches merge.
        spans: number of accepted spans.
        rejected: number of spans dropped as invalid.
        error: why they were dropped ("" when none were).
        off_contract: spans per mltrace attribute whose value had another type than the span
            conventions say (still accepted; the receiver counts them in a metric).
    """

    payload: bytes
    spans: int
    rejected: int = 0
    error: str = ""
    off_contract: Mapping[str, int] = field(default_factory=dict)


def media_type(content_type: str | None) -> str:
    """The OTLP encoding a Content-Type names (protobuf or JSON); UnsupportedMediaType otherwise."""
    mt = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        return _MEDIA_TYPES[mt]
    except KeyError:
        raise UnsupportedMediaType(
            f"Content-Type {content_type or '(none)'!r} is not supported",
            hint="send application/x-protobuf or application/json",
        ) from None


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo Content-Encoding (identity, gzip, deflate), never producing more than ``max_bytes``."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity", "none"):
        return body
    if enc in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif enc == "deflate":
        wbits = zlib.MAX_WBITS  # zlib-wrapped; raw deflate is tried below
    else:
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported",
                                   hint="send gzip, deflate or no encoding")
    try:
        return _inflate(body, wbits, max_bytes)
    except zlib.error as e:
        if enc == "deflate":
            try:
                return _inflate(body, -zlib.MAX_WBITS, max_bytes)
            except zlib.error:
                pass
        raise BadRequest(f"body is not valid {enc} data: {e}") from None


def _inflate(body: bytes, wbits: int, max_bytes: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = d.decompress(body, max_bytes + 1)
    if len(out) > max_bytes or d.unconsumed_tail:
        raise PayloadTooLarge(f"body decompresses to more than the limit of {max_bytes} bytes",
                              hint="send smaller batches or raise MLTRACE_MAX_BODY_BYTES")
    if not d.eof:
        raise zlib.error("truncated stream")
    return out


def decode(body: bytes, media: str) -> Decoded:
    """Parse and check one (decompressed) OTLP body in the given encoding.

    Raises:
        BadRequest: the body does not parse, or no span in it is valid.
    """
    if media == PROTOBUF:
        req = _parse_protobuf(body)
        rejected, errors = _drop_invalid_spans(req)
        if not rejected:
            return Decoded(body, _count_spans(req), off_contract=off_contract(req, body))
    else:
        req, rejected, errors = _parse_json(body)
        rejected2, errors2 = _drop_invalid_spans(req)
        rejected += rejected2
        errors += errors2
    spans = _count_spans(req)
    if rejected and not spans:
        raise BadRequest(f"every span in the request is invalid ({rejected}): {'; '.join(errors)}")
    message = ""
    if rejected:
        message = f"{rejected} invalid span(s) rejected: {'; '.join(errors)}"
    payload = req.SerializeToString()
    return Decoded(payload, spans, rejected, message, off_contract(req, payload))


def _request_class() -> Any:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    return ExportTraceServiceRequest


def _parse_protobuf(body: bytes) -> Any:
    from google.protobuf.message import DecodeError

    try:
        return _request_class().FromString(body)
    except DecodeError as e:
        if "MaxDepth" in str(e):  # upb's recursion limit
            raise BadRequest(f"OTLP protobuf request is {_TOO_DEEP}") from None
        raise BadRequest(f"body is not a valid OTLP protobuf ExportTraceServiceRequest: {e}") from None
    except RecursionError:  # a pure-Python protobuf implementation recurses
        raise BadRequest(f"OTLP protobuf request is {_TOO_DEEP}") from None


def _count_spans(req: Any) -> int:
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


def _drop_invalid_spans(req: Any) -> tuple[int, list[str]]:
    """Remove spans with unusable ids from ``req`` in place; (how many, first few reasons)."""
    rejected = 0
    errors: list[str] = []
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            bad: list[int] = []
            for i, sp in enumerate(ss.spans):
                tid = sp.trace_id
                sid = sp.span_id
                if (len(tid) == 16 and tid != _ZERO16 and len(sid) == 8 and sid != _ZERO8
                        and len(sp.parent_span_id) in (0, 8) and not sp.links and not sp.events
                        and _MAX_TIME >= sp.end_time_unix_nano >= sp.start_time_unix_nano):
                    continue
                why = _span_problem(sp)
                if why:
                    bad.append(i)
                    if len(errors) < _MAX_ERRORS:
                        errors.append(f"span {sp.name!r}: {why}")
            for i in reversed(bad):
                del ss.spans[i]
            rejected += len(bad)
    return rejected, errors


def _span_problem(sp: Any) -> str:
    if len(sp.trace_id) != 16:
        return f"trace id must be 16 bytes, got {len(sp.trace_id)}"
    if sp.trace_id == _ZERO16:
        return "trace id is all zeros"
    if len(sp.span_id) != 8:
        return f"span id must be 8 bytes, got {len(sp.span_id)}"
    if sp.span_id == _ZERO8:
        return "span id is all zeros"
    if len(sp.parent_span_id) not in (0, 8):
        return f"parent span id must be 8 bytes or empty, got {len(sp.parent_span_id)}"
    for link in sp.links:
        if len(link.trace_id) != 16 or len(link.span_id) != 8:
            return "a link's trace id / span id must be 16 / 8 bytes"
    if sp.end_time_unix_nano < sp.start_time_unix_nano:
        return f"end time {sp.end_time_unix_nano} is before start time {sp.start_time_unix_nano}"
    if sp.end_time_unix_nano > _MAX_TIME:
        return f"time {sp.end_time_unix_nano} is past the year 2262 (DateTime64 range)"
    for ev in sp.events:
        if ev.time_unix_nano > _MAX_TIME:
            return f"event {ev.name!r} time {ev.time_unix_nano} is past the year 2262 (DateTime64 range)"
    return ""


# --- OTLP/JSON ---------------------------------------------------------------------------------
# json_format would read hex ids as base64 and silently store wrong ids, so ids are converted
# here (hex -> base64 of the bytes) before ParseDict, which then handles both casings, integer
# enums and string int64s. A span whose ids are not hex is dropped (partial success).

def _field(obj: dict, camel: str, snake: str) -> tuple[str | None, Any]:
    if camel in obj:
        return camel, obj[camel]
    if snake in obj:
        return snake, obj[snake]
    return None, None


def _list_field(obj: Any, camel: str, snake: str, where: str) -> list:
    if not isinstance(obj, dict):
        raise BadRequest(f"OTLP/JSON: {where} must be an object, got {type(obj).__name__}")
    _, v = _field(obj, camel, snake)
    if v is None:
        return []
    if not isinstance(v, list):
        raise BadRequest(f"OTLP/JSON: {where}.{camel} must be an array, got {type(v).__name__}")
    return v


def _hex_to_b64(value: Any, nbytes: int, what: str, optional: bool) -> str:
    if value is None or value == "":
        if optional:
            return ""
        raise ValueError(f"{what} is missing")
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a hex string, got {type(value).__name__}")
    try:
        raw = binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} {value[:40]!r} is not hex") from None
    if len(raw) != nbytes:
        raise ValueError(f"{what} {value[:40]!r} must be {2 * nbytes} hex chars")
    return base64.b64encode(raw).decode("ascii")


def _convert_span_ids(span: dict) -> None:
    for camel, snake, n, optional in (("traceId", "trace_id", 16, False), ("spanId", "span_id", 8, False),
                                      ("parentSpanId", "parent_span_id", 8, True)):
        key, v = _field(span, camel, snake)
        span[key or camel] = _hex_to_b64(v, n, snake.replace("_", " "), optional)
    links = span.get("links")
    if isinstance(links, list):
        for link in links:
            if not isinstance(link, dict):
                continue
            for camel, snake, n in (("traceId", "trace_id", 16), ("spanId", "span_id", 8)):
                key, v = _field(link, camel, snake)
                link[key or camel] = _hex_to_b64(v, n, "link " + snake.replace("_", " "), False)


def _check_enums(span: dict, where: str) -> None:
    """json_format ignores unknown enum names under ignore_unknown_fields; refuse them here."""
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    checks = [("kind", span.get("kind"), Span.SpanKind)]
    status = span.get("status")
    if isinstance(status, dict):
        checks.append(("status.code", status.get("code"), Status.StatusCode))
    for name, value, enum in checks:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            continue
        if isinstance(value, str) and value in enum.keys():
            continue
        raise BadRequest(f"OTLP/JSON: {where}.{name} must be an integer enum value, got {value!r}")


def _parse_json(body: bytes) -> tuple[Any, int, list[str]]:
    from google.protobuf import json_format

    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"body is not valid JSON: {e}") from None
    except RecursionError:  # json's C scanner recurses per array / object level
        raise BadRequest(f"OTLP/JSON body is {_TOO_DEEP}") from None
    rejected = 0
    errors: list[str] = []
    for r, rs in enumerate(_list_field(doc, "resourceSpans", "resource_spans", "request")):
        for s, ss in enumerate(_list_field(rs, "scopeSpans", "scope_spans", f"resourceSpans[{r}]")):
            spans = _list_field(ss, "spans", "spans", f"resourceSpans[{r}].scopeSpans[{s}]")
            keep = []
            for i, span in enumerate(spans):
                if not isinstance(span, dict):
                    raise BadRequest(f"OTLP/JSON: resourceSpans[{r}].scopeSpans[{s}].spans[{i}] "
                                     f"must be an object, got {type(span).__name__}")
                _check_enums(span, f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]")
                try:
                    _convert_span_ids(span)
                except ValueError as e:
                    rejected += 1
                    if len(errors) < _MAX_ERRORS:
                        errors.append(f"span {str(span.get('name', ''))[:80]!r}: {e}")
                    continue
                keep.append(span)
            spans[:] = keep
    req = _request_class()()
    try:
        json_format.ParseDict(doc, req, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as e:
        if "too deep" in str(e):  # ParseDict's depth limit: upb's, so both encodings agree
            raise BadRequest(f"OTLP/JSON request is {_TOO_DEEP}") from None
        raise BadRequest(f"OTLP/JSON does not match ExportTraceServiceRequest: {e}") from None
    except RecursionError:  # not expected (ParseDict stops at its depth limit); never a 500
        raise BadRequest(f"OTLP/JSON request is {_TOO_DEEP}") from None
    return req, rejected, errors


# --- off-contract attribute types ----------------------------------------------------------------
_STR = (C.COMPONENT_NAME, C.COMPONENT_OWNER, C.COMPONENT_DESCRIPTION, C.RUN_NOTES, C.CODE_SNAPSHOT)
_STR_ARRAY = (C.COMPONENT_TAGS, C.RUN_INPUTS, C.RUN_OUTPUTS, C.RUN_INPUT_VERSIONS, C.RUN_OUTPUT_VERSIONS,
              C.RUN_INPUT_TYPES, C.RUN_OUTPUT_TYPES, C.RUN_UPSTREAM, C.GIT_TAGS)
EXPECTED_KINDS: Mapping[str, str] = {
    **dict.fromkeys(_STR, "string_value"), **dict.fromkeys(_STR_ARRAY, "array_value"),
    C.RUN_STALENESS_THRESHOLD_S: "int_value", C.RUN_ENDPOINT: "bool_value",
}
"""The AnyValue kind each ``mltrace.*`` span attribute has by the conventions (a str[] holds
string_value elements)."""

_PREFIX = "mltrace."
_VARINT = rb"[\x80-\xff]{0,9}[\x00-\x7f]"
_TAGS = {"string_value": rb"\n", "bool_value": rb"\x10", "int_value": rb"\x18"}


def _candidate_pattern() -> re.Pattern[bytes]:
    """Bytes of a serialized KeyValue with one of our keys whose value may be off contract: the
    key, the value's tag and length, then not the expected AnyValue field tag (for a str[]: not
    an array, or an array whose first element is not a string). One branch per kind."""
    branches = []
    for kind in dict.fromkeys(EXPECTED_KINDS.values()):
        names = rb"|".join(re.escape(key[len(_PREFIX):].encode())
                           for key, k in EXPECTED_KINDS.items() if k == kind)
        head = rb"(?:" + names + rb")\x12" + _VARINT
        if kind == "array_value":
            branches.append(head + rb"(?:(?!\*)|\*" + _VARINT + rb"\n" + _VARINT + rb"(?!\n))")
        else:
            branches.append(head + rb"(?!" + _TAGS[kind] + rb")")
    return re.compile(re.escape(_PREFIX.encode()) + rb"(?:" + rb"|".join(branches) + rb")")


_CANDIDATE = _candidate_pattern()


def off_contract(req: Any, payload: bytes) -> dict[str, int]:
    """Per ``mltrace.*`` attribute, the spans carrying ``mltrace.component.name`` whose value has
    another kind than :data:`EXPECTED_KINDS` (for a str[], also a first element that is not a
    string); ``{}`` when there are none.

    Cheap, because the collector runs it on every request: requests whose every scope is the
    mltrace SDK's (:data:`~mltrace_otel.conventions.SCOPE_NAME`) are not looked at (the SDK
    writes each attribute with its convention's type). Otherwise a regular expression over
    ``payload`` (the serialized request) finds the places where an off-contract value may be,
    and only when there is one are the spans of ``req`` walked (a walk of every attribute of
    every span would cost several times the rest of :func:`decode`; the scan less). The scan reads
    fields in the order every OTLP encoder writes them (a KeyValue's key before its value); a
    body ordered otherwise is not counted (its spans are still accepted: this is a metric).
    """
    if all(ss.scope.name == C.SCOPE_NAME for rs in req.resource_spans for ss in rs.scope_spans):
        return {}
    if _CANDIDATE.search(payload) is None:
        return {}
    counts: dict[str, int] = {}
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for sp in ss.spans:
                found = {kv.key: kv.value for kv in sp.attributes if kv.key.startswith(_PREFIX)}
                if C.COMPONENT_NAME not in found:
                    continue
                for key, value in found.items():
                    want = EXPECTED_KINDS.get(key)
                    if want is None:
                        continue
                    kind = value.WhichOneof("value")
                    if kind != want or (kind == "array_value" and value.array_value.values
                                        and value.array_value.values[0].WhichOneof("value")
                                        != "string_value"):
                        counts[key] = counts.get(key, 0) + 1
    return counts


# --- responses ---------------------------------------------------------------------------------

def export_response(media: str, rejected: int = 0, error: str = "") -> bytes:
    """An ExportTraceServiceResponse in the request's encoding (partial success when rejected)."""
    if media == JSON:
        if not rejected and not error:
            return b"{}"
        return json.dumps({"partialSuccess": {"rejectedSpans": str(rejected),
                                              "errorMessage": error}}).encode()
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    resp = ExportTraceServiceResponse()
    if rejected or error:
        resp.partial_success.rejected_spans = rejected
        resp.partial_success.error_message = error
    return resp.SerializeToString()


def status_body(media: str, code: int, message: str) -> bytes:
    """A google.rpc.Status error body in the request's encoding (the OTLP/HTTP error shape).

    ``code`` is the gRPC status code matching the HTTP status.
    """
    if media == PROTOBUF:
        from google.rpc import status_pb2

        return status_pb2.Status(code=code, message=message).SerializeToString()
    return json.dumps({"code": code, "message": message}).encode()
