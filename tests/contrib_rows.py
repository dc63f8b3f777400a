"""Contrib-shaped otel_traces rows, written without mltrace's ingest code.

A plain module (not conftest) so tests in any folder can import it by one name.
"""

from __future__ import annotations


def _contrib_value(v: object) -> str:
    """An attribute value as the contrib exporter renders it (facts file, "Value mapping")."""
    import base64
    import json

    def js(x: object) -> object:
        if isinstance(x, bytes):
            return base64.b64encode(x).decode()
        if isinstance(x, float) and x == int(x) and abs(x) < 1e16:
            return int(x)
        return x

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v == int(v) and abs(v) < 1e16 else repr(v)
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, (list, tuple)):
        return json.dumps([js(x) for x in v], separators=(",", ":"), ensure_ascii=False)
    return str(v)


def contrib_row(span: object) -> dict[str, object]:
    """One otel_traces row for an OTel SDK ReadableSpan, in the contrib exporter's shape.

    Written independently of mltrace_otel.store.ingest (plain Python from the facts file), so
    tests can fill a store "as otelcol-contrib would" and compare our writer against it.
    """
    ctx = span.context
    parent = span.parent.span_id if span.parent is not None else 0
    attrs = lambda a: dict(sorted((k, _contrib_value(v)) for k, v in (a or {}).items()))  # noqa: E731
    res = dict(span.resource.attributes)
    scope = span.instrumentation_scope
    return {
        "Timestamp": span.start_time,
        "TraceId": f"{ctx.trace_id:032x}",
        "SpanId": f"{ctx.span_id:016x}",
        "ParentSpanId": f"{parent:016x}" if parent else "",
        "TraceState": ctx.trace_state.to_header() if ctx.trace_state else "",
        "SpanName": span.name,
        "SpanKind": span.kind.name.title(),
        "ServiceName": res.get("service.name", "") if isinstance(res.get("service.name"), str) else "",
        "ResourceAttributes": attrs(res),
        "ScopeName": scope.name if scope else "",
        "ScopeVersion": (scope.version or "") if scope else "",
        "SpanAttributes": attrs(span.attributes),
        "Duration": span.end_time - span.start_time,
        "StatusCode": span.status.status_code.name.title(),
        "StatusMessage": span.status.description or "",
        "Events.Timestamp": [e.timestamp for e in span.events],
        "Events.Name": [e.name for e in span.events],
        "Events.Attributes": [attrs(e.attributes) for e in span.events],
        "Links.TraceId": [f"{lk.context.trace_id:032x}" for lk in span.links],
        "Links.SpanId": [f"{lk.context.span_id:016x}" for lk in span.links],
        "Links.TraceState": [lk.context.trace_state.to_header() if lk.context.trace_state else ""
                             for lk in span.links],
        "Links.Attributes": [attrs(lk.attributes) for lk in span.links],
    }


