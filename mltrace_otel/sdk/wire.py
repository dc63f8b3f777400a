"""OTLP protobuf encoding of one finished span, fast enough to run before a decorated call returns.

The durable queue (:mod:`mltrace_otel.spool`) holds serialized ``ExportTraceServiceRequest``
messages. Writing each run there before the call returns means encoding it on the caller's
thread, where the OpenTelemetry exporter's encoder builds a protobuf object per field. Runs of
one component repeat most of their attributes (component, owner, code location and snapshot, git
revision, pointer types), so this encoder writes the wire format directly and keeps encodings:
of a whole attribute block (the latest span's block is compared, not hashed; other blocks seen
before cost one look-up), of each attribute, keyed by field number, key, value and the value's
type (``True``, ``1`` and ``1.0`` are equal in Python, not on the wire), and of each span name
and kind. :class:`Envelope` keeps the request's parts around the spans (resource, scope,
schema URLs) and computes the nested lengths, so a request is one ``join`` of cached and
per-span fragments, in the field order the OTel exporter writes.

:func:`encode_request` gives a message that parses equal to
``opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans([span])`` (tested field by
field for every value type), so the queue's records are what any OTLP receiver expects.

Imports the OpenTelemetry SDK's types only.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from opentelemetry.trace.status import StatusCode

_log = logging.getLogger("mltrace_otel.sdk")

_KIND = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4,
         SpanKind.CONSUMER: 5}
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_CACHE_MAX = 50_000
_BLOCKS_MAX = 1024
"""Attribute blocks kept (a pipeline's components repeat a few; blocks that change every call,
new input versions say, are dropped with the rest when the cache is full)."""
_BLOCKS_MAX_BYTES = 4 << 20
_kv_cache: dict[tuple[int, str, type, Any], bytes] = {}
_blocks: dict[tuple[int, tuple, tuple, tuple], bytes] = {}  # (field, keys, values, types) -> bytes
_block_bytes = 0
_latest: dict[int, tuple[tuple, tuple, tuple, bytes]] = {}  # field -> the latest cached block
_fixed64 = struct.Struct("<Q").pack
_fixed32 = struct.Struct("<I").pack
_double = struct.Struct("<d").pack


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _ONE_BYTE[n]
    if 0 <= n < 0x4000:  # most lengths: two bytes
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if n < 0:
        n &= (1 << 64) - 1  # int64: two's complement, ten bytes
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_ONE_BYTE = [bytes((i,)) for i in range(0x80)]
_TAGS = [bytes((number << 3 | 2,)) for number in range(16)]  # length-delimited fields 0-15


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    tag = _TAGS[number] if number < 16 else _varint(number << 3 | 2)
    return tag + _varint(len(payload)) + payload


def _text(number: int, s: str) -> bytes:
    """A proto3 string field: nothing when empty."""
    return _field(number, s.encode("utf-8", "surrogatepass")) if s else b""


def _value(v: Any) -> bytes:
    """An AnyValue's fields (as the OTel exporter's ``_encode_value``)."""
    if v is None:
        return b""
    if isinstance(v, bool):
        return b"\x10\x01" if v else b"\x10\x00"
    if isinstance(v, str):
        return _field(1, v.encode("utf-8", "surrogatepass"))
    if isinstance(v, int):
        return b"\x18" + _varint(v)
    if isinstance(v, float):
        return b"\x21" + _double(v)
    if isinstance(v, bytes):
        return _field(7, v)
    if isinstance(v, Sequence):
        return _field(5, b"".join(_field(1, _value(x)) for x in v))
    if isinstance(v, Mapping):
        return _field(6, b"".join(_field(1, _key_value(str(k), x)) for k, x in v.items()))
    raise TypeError(f"invalid type {type(v).__name__} of value {v!r}")


def _key_value(key: str, value: Any) -> bytes:
    return _text(1, key) + _field(2, _value(value))


def _attributes(number: int, attributes: Mapping[str, Any] | None) -> bytes:
    """Repeated KeyValue field ``number``. A run's attributes repeat from call to call, so a whole
    block whose keys, values and value types were seen before is one look-up; otherwise each
    (key, value) is encoded once per process (:func:`_encode_items`)."""
    if not attributes:
        return b""
    # BoundedAttributes iterates through collections.abc's generic (slow) items(); its dict is there
    d = getattr(attributes, "_dict", attributes)
    keys, values = tuple(d), tuple(d.values())
    types = tuple(map(type, values))  # True == 1 == 1.0, but they encode differently
    last = _latest.get(number)  # the same block as the latest span's: compared, not hashed
    if last is not None and last[1] == values and last[0] == keys and last[2] == types:
        return last[3]
    try:
        block = (number, keys, values, types)
        hit = _blocks.get(block)
    except TypeError:  # an unhashable value (a mapping): not cached
        return _encode_items(number, tuple(d.items()))
    if hit is None:
        hit = _encode_items(number, tuple(d.items()))
        if not all(map(_exact, values)):  # equal values may encode differently: not kept
            return hit
        global _block_bytes
        if _block_bytes + len(hit) > _BLOCKS_MAX_BYTES or len(_blocks) >= _BLOCKS_MAX:
            _blocks.clear()
            _block_bytes = 0
        _blocks[block] = hit
        _block_bytes += len(hit)
    _latest[number] = (keys, values, types, hit)  # only blocks of exact values get here
    return hit


def _exact(v: Any) -> bool:
    """Whether values equal to ``v`` with ``v``'s type always encode like ``v``: not a float zero
    (0.0 == -0.0) nor NaN (never equal to itself: a cache entry never hit), not a sequence of
    numbers ((True,) == (1,))."""
    if isinstance(v, float):
        return v == v and v != 0.0
    return isinstance(v, (str, int, bytes)) or (
        isinstance(v, tuple) and all(isinstance(x, str) for x in v))


def _encode_items(number: int, items: Sequence[tuple[str, Any]]) -> bytes:
    parts = []
    cache = _kv_cache
    for key, value in items:
        # the field number too: the same (key, value) on a span, an event, a link or the resource
        ck = (number, key, type(value), value) if _exact(value) else None
        hit = cache.get(ck) if ck is not None else None
        if hit is None:
            try:
                hit = _field(number, _key_value(key, value))
            except Exception as e:  # noqa: BLE001 - the exporter skips such a key too
                _log.warning("mltrace: cannot encode attribute %s: %s", key, e)
                continue
            if ck is not None:
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[ck] = hit
        parts.append(hit)
    return b"".join(parts)


def _flags(parent: Any) -> int:
    return _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)


_LOCAL_FLAGS = b"\x85\x01" + _fixed32(_HAS_IS_REMOTE)  # field 16: a span whose parent is not remote
_UNSET_STATUS = _field(15, b"")
_times = struct.Struct("<BQBQ").pack  # start (field 7) and end (field 8), both fixed64
_heads: dict[tuple[str, Any], bytes] = {}  # (span name, kind) -> their encoding
_TAIL = _UNSET_STATUS + _LOCAL_FLAGS  # a span with status UNSET and no remote parent ends so
_UNSET = StatusCode.UNSET


def _head(name: str, kind: Any) -> bytes:
    """The encoded name and kind (fields 5, 6) of spans with this name and kind (cached under the
    kind's ``_value_``: an Enum member's hash is a Python-level call)."""
    number = _KIND.get(kind, 0)
    head = _text(5, name) + (b"\x30" + _varint(number) if number else b"")
    if len(_heads) >= _CACHE_MAX:
        _heads.clear()
    _heads[(name, getattr(kind, "_value_", kind))] = head
    return head


def _span_parts(span: ReadableSpan) -> list[bytes]:
    """The encoded fields of one span's ``Span`` message, in field order (joined by the caller).

    Reads the ``ReadableSpan``'s fields where they are: its properties copy the events and links,
    and wrap the attributes in a proxy whose items() is collections.abc's generic, slow one."""
    ctx = span._context  # a SpanContext is a tuple: trace id, span id, is_remote, flags, state
    parent = span._parent
    parts = [b"\x0a\x10", ctx[0].to_bytes(16, "big"), b"\x12\x08", ctx[1].to_bytes(8, "big")]
    state = ctx[4]
    if state:
        parts.append(_text(3, ",".join(f"{k}={v}" for k, v in state.items())))
    if parent is not None:
        parts.append(b"\x22\x08" + parent[1].to_bytes(8, "big"))
    name, kind = span._name, span._kind
    parts.append(_heads.get((name, getattr(kind, "_value_", kind))) or _head(name, kind))
    start, end = span._start_time, span._end_time
    if start and end:
        parts.append(_times(0x39, start, 0x41, end))
    elif start:
        parts.append(b"\x39" + _fixed64(start))
    elif end:
        parts.append(b"\x41" + _fixed64(end))
    attrs = span._attributes
    parts.append(_attributes(9, attrs))
    dropped = getattr(attrs, "dropped", 0)
    if dropped:
        parts.append(b"\x50" + _varint(dropped))
    events = span._events
    evs = getattr(events, "_dq", events)  # a BoundedList: its deque (its __len__ and __iter__
    if evs:                                 # are Python calls; __iter__ copies under a lock)
        for ev in evs:
            body = (b"\x09" + _fixed64(ev.timestamp) if ev.timestamp else b"") + _text(2, ev.name) \
                + _attributes(3, ev.attributes) + (b"\x20" + _varint(ev.dropped_attributes)
                                                   if ev.dropped_attributes else b"")
            parts.append(_field(11, body))
    dropped = getattr(events, "dropped", 0)
    if dropped:
        parts.append(b"\x60" + _varint(dropped))
    links = span._links
    lks = getattr(links, "_dq", links)
    if lks:
        for link in lks:
            lc = link.context
            body = (_field(1, lc.trace_id.to_bytes(16, "big")) + _field(2, lc.span_id.to_bytes(8, "big"))
                    + _attributes(4, link.attributes)
                    + (b"\x28" + _varint(link.dropped_attributes) if link.dropped_attributes else b"")
                    + b"\x35" + _fixed32(_flags(lc)))
            parts.append(_field(13, body))
    dropped = getattr(links, "dropped", 0)
    if dropped:
        parts.append(b"\x70" + _varint(dropped))
    status = span._status
    if status is not None and status._status_code is _UNSET and not status._description \
            and (parent is None or not parent[2]):  # the common end: unset status, local parent
        parts.append(_TAIL)
        return parts
    code = status.status_code.value if status is not None else 0
    if (status is None or not (code or status.description)) and (parent is None or not parent.is_remote):
        if status is not None:
            parts.append(_TAIL)
        else:
            parts.append(_LOCAL_FLAGS)
        return parts
    if status is not None:
        if code or status.description:
            parts.append(_field(15, _text(2, status.description or "")
                                + (b"\x18" + _varint(code) if code else b"")))
        else:
            parts.append(_UNSET_STATUS)
    parts.append(_LOCAL_FLAGS if parent is None or not parent.is_remote
                 else b"\x85\x01" + _fixed32(_flags(parent)))
    return parts


def encode_span(span: ReadableSpan) -> bytes:
    """One span's ``Span`` message."""
    return b"".join(_span_parts(span))


def encode_resource(span: ReadableSpan) -> bytes:
    """The ``Resource`` message of a span's resource (the same for every span of a pipeline)."""
    return _attributes(1, span.resource.attributes)


def encode_scope(span: ReadableSpan) -> bytes:
    """The ``InstrumentationScope`` message of a span's scope."""
    scope = span.instrumentation_scope
    if scope is None:
        return b""
    return _text(1, scope.name) + _text(2, scope.version or "") + _attributes(3, scope.attributes)


def encode_request(spans: Sequence[ReadableSpan], resource: bytes | None = None,
                   scope: bytes | None = None) -> bytes:
    """An ``ExportTraceServiceRequest`` of spans that share one resource and one scope (the SDK's
    own spans do), as bytes. ``resource`` / ``scope``: their encodings, when the caller keeps them."""
    if not spans:
        return b""
    first = spans[0]
    res = encode_resource(first) if resource is None else resource
    sc = encode_scope(first) if scope is None else scope
    schema = first.instrumentation_scope.schema_url if first.instrumentation_scope is not None else ""
    return Envelope(res, sc, schema or "", first.resource.schema_url or "").request(spans)


class Envelope:
    """The parts of a request around its spans (resource, scope, schema URLs), encoded once:
    :meth:`request` then costs the spans' own encoding and one join."""

    __slots__ = ("scope_head", "scope_tail", "resource_head", "resource_tail")

    def __init__(self, resource: bytes, scope: bytes, scope_schema: str = "",
                 resource_schema: str = "") -> None:
        self.scope_head = _field(1, scope)
        self.scope_tail = _text(3, scope_schema)
        self.resource_head = _field(1, resource)
        self.resource_tail = _text(3, resource_schema)

    @classmethod
    def of(cls, span: ReadableSpan) -> Envelope:
        """The envelope of requests carrying this span's resource and scope."""
        scope = span.instrumentation_scope
        return cls(encode_resource(span), encode_scope(span), (scope.schema_url if scope else "") or "",
                   span.resource.schema_url or "")

    def request(self, spans: Sequence[ReadableSpan]) -> bytes:
        """An ``ExportTraceServiceRequest`` of these spans, in one join (lengths computed, not
        nested messages concatenated)."""
        parts: list[bytes] = []
        body = 0
        for s in spans:
            sp = _span_parts(s)
            n = sum(map(len, sp))
            head = b"\x12" + _varint(n)  # ScopeSpans.spans (field 2)
            parts.append(head)
            parts += sp
            body += len(head) + n
        scope_spans = len(self.scope_head) + body + len(self.scope_tail)
        ss_head = b"\x12" + _varint(scope_spans)  # ResourceSpans.scope_spans (field 2)
        resource_spans = (len(self.resource_head) + len(ss_head) + scope_spans
                          + len(self.resource_tail))
        return b"".join((b"\x0a", _varint(resource_spans), self.resource_head, ss_head,
                         self.scope_head, *parts, self.scope_tail, self.resource_tail))
