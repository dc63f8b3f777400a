"""Helpers for reading run spans in SDK tests."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mltrace_otel import conventions as C
from mltrace_otel import spool


def runs(mem: InMemorySpanExporter) -> list:
    """Finished run spans, oldest first."""
    return [s for s in mem.get_finished_spans() if C.COMPONENT_NAME in s.attributes]


def attr(span: object, name: str) -> object:
    v = span.attributes.get(name)  # type: ignore[attr-defined]
    return list(v) if isinstance(v, tuple) else v


def events_of(span: object) -> list[dict]:
    """The mltrace.test events of a run, as dicts."""
    return [dict(e.attributes) for e in span.events if e.name == C.EVENT_TEST]  # type: ignore[attr-defined]


def spooled_spans(spool_dir: Path) -> dict[str, dict]:
    """{span id hex: {"name", "attrs", "service"}} of every span in the spool's sealed files."""
    out = {}
    for p in spool.pending(spool_dir):
        for payload in spool.payloads(p):
            out.update(_spans_of(ExportTraceServiceRequest.FromString(payload)))
    return out


def _value(v) -> object:  # noqa: ANN001
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind)


def _spans_of(req: ExportTraceServiceRequest) -> dict[str, dict]:
    out = {}
    for rs in req.resource_spans:
        res = {a.key: _value(a.value) for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out[s.span_id.hex()] = {
                    "name": s.name, "kind": s.kind, "scope": ss.scope.name, "resource": res,
                    "attrs": {a.key: _value(a.value) for a in s.attributes},
                    "trace_id": s.trace_id.hex(), "parent": s.parent_span_id.hex(),
                    "links": [(lk.span_id.hex(), {a.key: _value(a.value) for a in lk.attributes})
                              for lk in s.links],
                }
    return out
