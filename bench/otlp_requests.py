"""Run-like OTLP requests for the ingest and collector benchmarks (one builder for both)."""

from __future__ import annotations

import os
import time


def make_request(n: int, seq: int, trace_id: bytes | None = None, status_code: int = 0) -> bytes:
    """A serialized ExportTraceServiceRequest of ``n`` run-like spans with fresh span ids.

    ``trace_id``: one trace for every span of the request; None gives each span its own.
    ``status_code``: the spans' OTLP status code (0 unset, 1 ok).
    """
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

    from mltrace_otel import conventions as C

    def kv(k: str, v: object) -> KeyValue:
        if isinstance(v, list):
            return KeyValue(key=k, value=AnyValue(array_value=ArrayValue(
                values=[AnyValue(string_value=x) for x in v])))
        return KeyValue(key=k, value=AnyValue(string_value=str(v)))

    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([kv("service.name", "bench"), kv("telemetry.sdk.language", "python")])
    ss = rs.scope_spans.add()
    ss.scope.name = C.SCOPE_NAME
    t0 = time.time_ns()
    for i in range(n):
        comp = f"component_{i % 20}"
        sp = ss.spans.add()
        sp.trace_id = trace_id if trace_id is not None else os.urandom(16)
        sp.span_id = os.urandom(8)
        sp.name, sp.kind = comp, 1
        sp.start_time_unix_nano, sp.end_time_unix_nano = t0 + i * 1000, t0 + i * 1000 + 5_000_000
        if status_code:
            sp.status.code = status_code
        sp.attributes.extend([
            kv(C.COMPONENT_NAME, comp), kv(C.COMPONENT_OWNER, "team"),
            kv(C.RUN_INPUTS, [f"s3://bucket/in/{seq}/{i}.parquet"]),
            kv(C.RUN_OUTPUTS, [f"s3://bucket/out/{seq}/{i}.parquet"]),
            kv(C.RUN_INPUT_TYPES, ["DATA"]), kv(C.RUN_OUTPUT_TYPES, ["DATA"]),
            kv(C.VCS_REVISION, "0123456789abcdef0123456789abcdef01234567"),
            kv(C.CODE_FUNCTION, "pipeline.step"), kv(C.CODE_FILE, "/src/pipeline.py"),
        ])
    return req.SerializeToString()
