"""Native ingest: serialized OTLP requests parsed and rendered by ClickHouse itself.

Python rendering (:mod:`.ingest`) costs ~25 µs per span of interpreter work; here the engine
does it in C++. The requests of a batch are concatenated (length-delimited, ClickHouse's
``Protobuf`` format) and inserted into ``otel_traces_otlp`` (ENGINE = Null, one row per request,
typed by :data:`PROTO_FILE`); the materialized view ``otel_traces_otlp_mv``
(``migrations/0100_baseline.sql``, section 4) renders each span as the ``otel_traces`` row
:mod:`.ingest` would (``tests/store/test_otlp_native.py`` checks they are identical).

What SQL does not render (rare, and never written by mltrace's SDK): a map value, an array
inside an array, an array value on an event or a link, a duplicate attribute key, a string in an
array holding one of the control characters ClickHouse's JSON writer escapes in upper case. The
view skips such a span and records it in ``otel_traces_otlp_deferred`` under the batch's token;
:func:`insert_requests` then renders those spans in Python. Requests must be checked first (ids,
times: the collector's ``otlp.decode`` does it).

Imports :mod:`.ingest` (the Python renderer for deferred spans) and opentelemetry-proto.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mltrace_otel.errors import QueryError
from mltrace_otel.store import ingest
from mltrace_otel.store.models import IngestResult
from mltrace_otel.store.protocols import IngestConnection
from mltrace_otel.store.schema import quote_ident

log = logging.getLogger(__name__)

NULL_TABLE = "otel_traces_otlp"
_NATIVE: dict[str, bool] = {}  # store URL -> whether its server takes every setting sent here
DEFERRED_TABLE = "otel_traces_otlp_deferred"

PROTO_FILE = Path(__file__).with_name("otlp_trace.proto")
"""The OTLP trace messages as ClickHouse reads them (real field numbers, cut to what
otel_traces stores; see the file's header)."""
PROTO_SCHEMA = " ".join(line for line in PROTO_FILE.read_text(encoding="utf-8").splitlines()
                        if not line.startswith("//"))
"""The schema's text, sent with each insert to a ClickHouse server (``format_schema_source =
'string'``). The embedded engine reads :data:`PROTO_FILE` instead: given the text, it caches a
copy under the process's working directory."""


SETTINGS_SINCE: dict[str, tuple[int, int]] = {
    "format_schema_source": (25, 6),
    "format_schema_message_name": (25, 6),
    "input_format_protobuf_oneof_presence": (25, 9),
}
"""The ClickHouse release that first has each setting the native insert sends beyond the
long-standing ones (``async_insert``, ``optimize_on_insert``, ``insert_deduplication_token``,
``max_block_size``, ``format_schema``). Source: ClickHouse ``src/Core/SettingsChangesHistory.cpp``
(``addSettingsChanges(settings_changes_history, "25.6", ...)`` lists ``format_schema_source``
and ``format_schema_message_name`` as "New setting"; the ``"25.9"`` block lists
``input_format_protobuf_oneof_presence``)."""

MIN_CLICKHOUSE_VERSION: tuple[int, int] = max(SETTINGS_SINCE.values())
"""The oldest ClickHouse server that runs every code path (the one place it is declared):
older servers get spans rendered in Python (:func:`native_supported`); docker-compose.yaml pins
a server at least this new (``tests/test_deploy_clickhouse.py`` checks both)."""


def parse_version(text: str) -> tuple[int, ...]:
    """``SELECT version()``'s text (``25.9.2.1``, ``25.10.1.3832-stable``) as integers."""
    out = []
    for part in str(text).split("-", 1)[0].split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


def native_supported(store: IngestConnection) -> bool:
    """Whether the store's server has every setting :func:`insert_requests` sends (asked once
    per store URL with ``SELECT version()``, compared with :data:`MIN_CLICKHOUSE_VERSION`)."""
    known = _NATIVE.get(store.url)
    if known is None:
        rows = store.query("server_version", "SELECT version()")
        version = parse_version(rows[0][0]) if rows else ()
        known = version >= MIN_CLICKHOUSE_VERSION
        if not known:
            log.warning("mltrace: ClickHouse %s is older than %s, the first with every setting of the "
                        "native insert; rendering spans in Python (upgrade the server for ~25 us/span less)",
                        ".".join(map(str, version)) or "?", ".".join(map(str, MIN_CLICKHOUSE_VERSION)))
        _NATIVE[store.url] = known
    return known


def _unknown_setting(e: QueryError) -> bool:
    """The insert failed on a setting the server does not have: the server's error code 115
    (UNKNOWN_SETTING, e.g. a server downgraded under a running collector), or
    clickhouse-connect's ProgrammingError (a setting it refuses before sending)."""
    from clickhouse_connect.driver.exceptions import ProgrammingError

    return e.code == 115 or isinstance(e.__cause__, ProgrammingError)


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


def insert_requests(store: IngestConnection, payloads: Sequence[bytes], spans: int | None = None,
                    dedup_token: str | None = None) -> IngestResult:
    """Insert checked, serialized ExportTraceServiceRequests in one insert, rendered by the engine.

    ``spans``: how many spans the requests hold (counted here when None). Spans SQL does not
    render (see module docstring) are then rendered in Python and inserted in a second insert.
    ``dedup_token``: the insert's insert_deduplication_token (unique per batch: it also names
    the batch's deferred spans), so the same requests inserted again with it are dropped (the
    journal's replay); None: a fresh token. Returns how many spans were stored.
    """
    if not payloads:
        return IngestResult()
    if not native_supported(store):
        return ingest.insert_requests_rendered(store, payloads, dedup_token=dedup_token)
    token = dedup_token or uuid.uuid4().hex  # also names the batch for its deferred spans
    settings: dict[str, Any] = {
        **ingest.INSERT_SETTINGS,
        "insert_deduplication_token": token,
        "input_format_protobuf_oneof_presence": 1,
        # smaller blocks through the rendering view: about half the insert's peak memory at the
        # same CPU; the insert still writes one part per table
        "max_block_size": 8192,
    }
    if store.settings.is_embedded:
        settings["format_schema"] = f"{PROTO_FILE}:Req"
    else:
        settings.update(format_schema_source="string", format_schema=PROTO_SCHEMA,
                        format_schema_message_name="Req")
    try:
        store.insert_body("insert_spans_native", NULL_TABLE, batch_body(payloads), fmt="Protobuf",
                          settings=settings)
    except QueryError as e:
        if not _unknown_setting(e):
            raise
        # the version said yes, the server said no (a build without a setting): Python from now on
        log.warning("mltrace: the store cannot parse OTLP itself (%s); rendering spans in Python", e)
        _NATIVE[store.url] = False
        return ingest.insert_requests_rendered(store, payloads, dedup_token=dedup_token)
    if spans is None:
        spans = sum(_count(p) for p in payloads)
    db = quote_ident(store.database)
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


__all__ = ["insert_requests", "native_supported", "MIN_CLICKHOUSE_VERSION", "SETTINGS_SINCE",
           "parse_version", "batch_body", "varint", "PROTO_FILE", "PROTO_SCHEMA", "NULL_TABLE",
           "DEFERRED_TABLE"]
