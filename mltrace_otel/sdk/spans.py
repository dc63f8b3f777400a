"""Span building shared by decorated runs and ComponentRun: attributes, events, links.

Follows the conventions table (DESIGN.md / :mod:`mltrace_otel.conventions`): one INTERNAL span
per run, named after the component; pointer names, versions and types as parallel str[]
attributes; tests and output statistics as span events; failures as status ERROR plus an
``exception`` event. Same-process links: the span context of the latest run that output each
pointer is remembered (bounded), and a later run that inputs it links to it with link
attribute ``mltrace.io.name``.
"""

from __future__ import annotations

import logging
import operator
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode

from mltrace_otel import conventions as C
from mltrace_otel.sdk import export
from mltrace_otel.sdk.exporters import MAX_TIME_NS, MIN_TIME_NS
from mltrace_otel.sdk.pointers import IOPointer, PointerTypeEnum
from mltrace_otel.sdk.testing import TestOutcome

_log = logging.getLogger("mltrace_otel.sdk")

MAX_REMEMBERED = 10_000
"""Pointers (and value versions) whose producing span this process remembers for links."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_TYPE_VALUE = {t: t.value for t in PointerTypeEnum}
_name_of = operator.attrgetter("_name")
_stats: Any = None  # mltrace_otel.sdk.stats, imported at the first output statistics
_lock = threading.Lock()
_producers: dict[str, SpanContext] = {}
_names_by_version: dict[str, str] = {}


def _forget() -> None:
    with _lock:
        _producers.clear()
        _names_by_version.clear()


export._reset_hooks.append(_forget)


def clean(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes in the form the OTel SDK stores them on a span (sequences as tuples; a value of
    a type OTel does not allow dropped with the SDK's warning), by the SDK's own check. For
    attributes computed once and put on many spans with :func:`put` (which leaves a length limit,
    when one is set, to the SDK)."""
    return dict(BoundedAttributes(None, attrs, immutable=False, max_value_len=None))


def put(span: Span, attrs: Mapping[str, Any]) -> None:
    """Set attributes that are already in the SDK's stored form on a span that has not ended.

    Why not ``set_attributes``: the SDK checks each value it is given, about 1 µs an attribute,
    which is most of what a bare span costs. mltrace's own attributes are checked once per
    component (:func:`clean`) or built in the stored form (str tuples, str, int, bool), so they go
    into the span's attribute map as the SDK would have left them: the span, its encoding and what
    exporters and processors see at its end are the same. ``set_attributes`` is used instead
    where the SDK would change them: a length limit on values
    (``OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`` / ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``), more
    attributes than its count limit, an ended span (refused with its warning), a span that is
    not the SDK's."""
    store = getattr(span, "_attributes", None)
    d = getattr(store, "_dict", None)
    lock = getattr(span, "_lock", None)
    limit = getattr(store, "maxlen", None)
    if (d is None or lock is None or getattr(store, "max_value_len", None) is not None
            or (limit is not None and len(d) + len(attrs) > limit)):
        span.set_attributes(attrs)
        return
    with lock:  # the SDK's own lock: another thread may end the span or set attributes
        ended = getattr(span, "_end_time", 0) is not None
        if not ended:
            if d and not d.keys().isdisjoint(attrs):  # as the SDK does: a key set again moves to the end
                for k in attrs:
                    d.pop(k, None)
            d.update(attrs)
    if ended:
        span.set_attributes(attrs)


def add_own_event(span: Span, name: str, attrs: Mapping[str, Any], timestamp: int | None = None) -> None:
    """``span.add_event`` for an event of mltrace's own whose attributes are already in the SDK's
    stored form (scalars: tests, output statistics): the same ``Event`` with the same immutable
    attribute map, without the per-value check (:func:`put`). A length limit on values, more
    attributes than the event limit, or a span that is not the SDK's: ``add_event``."""
    limits = getattr(span, "_limits", None)
    add = getattr(span, "_add_event", None)  # the SDK's add_event after its check; refuses once ended
    limit = getattr(limits, "max_event_attributes", None)
    if (limits is None or add is None or getattr(limits, "max_attribute_length", None) is not None
            or (limit is not None and len(attrs) > limit)):
        span.add_event(name, attrs, timestamp)
        return
    stored = BoundedAttributes(limit, None, immutable=False, max_value_len=None)
    d = getattr(stored, "_dict", None)
    if d is None:
        span.add_event(name, attrs, timestamp)
        return
    d.update(attrs)
    stored._immutable = True
    add(Event(name, stored, timestamp))


def start_run_span(name: str, attrs: Mapping[str, Any], links: list[Link] | None, start: int) -> Span:
    """The run's span, started at ``start`` (ns) with ``attrs`` (stored form: :func:`put`). With a
    processor added by :func:`~mltrace_otel.sdk.export.add_span_processor` the attributes are
    given to the tracer instead, so its ``on_start`` sees them, as it would on any span."""
    tracer = export.tracer()
    if export.has_added_processors():
        return tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attrs, links=links,
                                 start_time=start)
    span = tracer.start_span(name, kind=SpanKind.INTERNAL, links=links, start_time=start)
    put(span, attrs)
    return span


def links_for(names: Iterable[str]) -> list[Link]:
    """Links to the remembered producers of these input names."""
    out = []
    for n in names:
        ctx = _producers.get(n)
        if ctx is not None:
            out.append(Link(ctx, {C.LINK_IO_NAME: n}))
    return out


def remember_outputs(outputs: Iterable[IOPointer], ctx: SpanContext) -> None:
    """Record ``ctx`` as the latest producer of each output (and of each value version)."""
    with _lock:
        for p in outputs:
            name = p._name
            _producers.pop(name, None)
            _producers[name] = ctx
            v = p._version  # only versions already computed; never hash here
            if v:
                _names_by_version.pop(v, None)
                _names_by_version[v] = name
        while len(_producers) > MAX_REMEMBERED:
            _producers.pop(next(iter(_producers)))
        while len(_names_by_version) > MAX_REMEMBERED:
            _names_by_version.pop(next(iter(_names_by_version)))


def name_for_version(version: str) -> str | None:
    """The name of the latest output of this process whose value had this fingerprint."""
    return _names_by_version.get(version) if version else None


def dedupe(pointers: Iterable[IOPointer]) -> list[IOPointer]:
    """Pointers without repeated names (first kept; a later one's value fills a missing one)."""
    pointers = list(pointers)
    if len(pointers) < 2 or len(set(map(_name_of, pointers))) == len(pointers):  # no name repeats
        return pointers
    seen: dict[str, int] = {}
    out: list[IOPointer] = []
    for p in pointers:
        i = seen.get(p.name)
        if i is None:
            seen[p.name] = len(out)
            out.append(p)
        elif not has_value(out[i]) and has_value(p):
            out[i] = p
    return out


def has_value(p: IOPointer) -> bool:
    """Whether the pointer carries a value (mltrace's "" default means none)."""
    v = p.value
    return not (isinstance(v, str) and v == "")


def pointer_attributes(inputs: list[IOPointer], outputs: list[IOPointer]) -> dict[str, Any]:
    """The six parallel pointer attributes (names, versions, types of inputs and outputs), as str
    tuples (the form :func:`put` takes)."""
    i_names, i_versions, i_types = _columns(inputs)
    o_names, o_versions, o_types = _columns(outputs)
    return {C.RUN_INPUTS: i_names, C.RUN_INPUT_VERSIONS: i_versions, C.RUN_INPUT_TYPES: i_types,
            C.RUN_OUTPUTS: o_names, C.RUN_OUTPUT_VERSIONS: o_versions, C.RUN_OUTPUT_TYPES: o_types}


def _columns(pointers: list[IOPointer]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Names, versions and type strings of pointers (one pass)."""
    names: list[str] = []
    versions: list[str] = []
    types: list[str] = []
    for p in pointers:
        names.append(p._name)
        v = p._version
        versions.append(v if type(v) is str else p.version if v is None else str(v))
        types.append(_TYPE_VALUE[p._type])
    return tuple(names), tuple(versions), tuple(types)


def component_attributes(name: str, owner: str = "", description: str = "",
                         tags: Iterable[str] = ()) -> dict[str, Any]:
    """Static component metadata (empty values omitted so they never blank stored ones)."""
    attrs: dict[str, Any] = {C.COMPONENT_NAME: str(name)}
    if owner:
        attrs[C.COMPONENT_OWNER] = str(owner)
    if description:
        attrs[C.COMPONENT_DESCRIPTION] = str(description)
    if tags:
        tags = tuple(str(t) for t in tags)
        if tags:
            attrs[C.COMPONENT_TAGS] = tags
    return attrs


def snapshot(source: str | bytes | None) -> str:
    """The code snapshot, as text, capped at CODE_SNAPSHOT_MAX_BYTES of UTF-8."""
    if source is None:
        return ""
    if isinstance(source, (bytes, bytearray)):
        source = bytes(source).decode("utf-8", "replace")
    b = source.encode("utf-8")
    if len(b) <= C.CODE_SNAPSHOT_MAX_BYTES:
        return source
    return b[: C.CODE_SNAPSHOT_MAX_BYTES].decode("utf-8", "ignore")


def add_test_events(span: Span, outcomes: Iterable[TestOutcome]) -> None:
    for o in outcomes:
        add_own_event(span, C.EVENT_TEST, {C.TEST_NAME: str(o.name), C.TEST_METHOD: str(o.method),
                                           C.TEST_PHASE: str(o.phase), C.TEST_PASSED: bool(o.passed),
                                           C.TEST_MESSAGE: str(o.message)}, o.time_ns)


def add_stats_events(span: Span, values: Mapping[str, Any]) -> None:
    """One ``mltrace.output.stats`` event per summary the stats module returns; never raises."""
    if not values:
        return
    try:
        global _stats
        if _stats is None:
            from mltrace_otel.sdk import stats as _stats
        for attrs in _stats.output_events(values):  # scalars only: stored as they are
            add_own_event(span, C.EVENT_OUTPUT_STATS, attrs)
    except Exception as e:  # noqa: BLE001 - statistics never break a run
        _log.debug("mltrace: output statistics failed: %s", e)


def record_failure(span: Span, exc: BaseException, description: str | None = None) -> None:
    """Status ERROR and an ``exception`` event."""
    try:
        span.record_exception(exc, escaped=True)
        span.set_status(Status(StatusCode.ERROR, description or f"{type(exc).__name__}: {exc}"[:1000]))
    except Exception:  # noqa: BLE001
        _log.debug("mltrace: cannot record the failure", exc_info=True)


def to_ns(ts: datetime) -> int:
    """Nanoseconds since the epoch; naive datetimes are UTC (mltrace used utcnow())."""
    d = ts - (_EPOCH_NAIVE if ts.tzinfo is None else _EPOCH)
    return ((d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds) * 1000


def clamp_run_times(component: str, start_ns: int, end_ns: int) -> tuple[int, int]:
    """A hand-built run's start and end, moved into the range a span can carry; one warning
    per run that needed it, naming the component, the times given and the times recorded.

    Clamped rather than refused: a run logged with a placeholder time (``datetime(1900, 1, 1)``,
    ``datetime.max``) still carries its inputs, outputs, notes and code, and its lineage
    (which producer wrote what it read) holds whatever its times; dropping it would lose all
    that over one field, and mltrace (SQL timestamps) stored such runs. Refusing the whole
    export batch (protobuf cannot encode a time before 1970, and the collector refuses one
    after 2262) dropped the valid runs batched with it. Clamping is monotonic, so a run that
    ended no earlier than it started still does (a run entirely before 1970 becomes a
    zero-length run at the epoch).
    """
    new_start = min(max(start_ns, MIN_TIME_NS), MAX_TIME_NS)
    new_end = min(max(end_ns, MIN_TIME_NS), MAX_TIME_NS)
    if (new_start, new_end) != (start_ns, end_ns):
        _log.warning(
            "mltrace: run of %r has start %s and end %s, outside what a span can carry "
            "(1970-01-01 to 2262-04-11 UTC); recorded as start %s and end %s, with its inputs, "
            "outputs and lineage", component, _show(start_ns), _show(end_ns), _show(new_start),
            _show(new_end))
    return new_start, new_end


def _show(ns: int) -> str:
    try:
        t = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=ns // 1000)
        return t.isoformat().replace("+00:00", "Z")
    except OverflowError:  # beyond datetime's years 1-9999 (cannot come from a datetime)
        return f"{ns} ns since the epoch"


def endpoint_outputs(pointers: list[IOPointer]) -> list[IOPointer]:
    """The pointers, typed ENDPOINT (for endpoint=True runs)."""
    return [p if p.pointer_type is PointerTypeEnum.ENDPOINT
            else IOPointer(p.name, p.value, PointerTypeEnum.ENDPOINT, p.flag, version=p._version)
            for p in pointers]
