"""Run-like OTLP requests for the ingest and collector benchmarks (one builder for both).

By default every span is a run as the mltrace SDK really sends it (:func:`sdk_run_span`: the
README's example pipeline run once through the SDK, description, tags, code snapshot, git
revision, input and output versions, its link to the upstream run and all), copied with fresh
ids and its own input and output names; ``MLTRACE_BENCH_SPANS=minimal`` gives the smaller
hand-built spans of the first benchmarks (9 attributes) instead.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


def _clean_pipeline() -> None:
    """The README's example (a cleaning step), after an extract step that writes its input."""
    import mltrace_otel as mltrace

    @mltrace.register("extract", inputs=["warehouse.orders"], outputs=["raw.csv"])
    def extract() -> None:
        Path("raw.csv").write_text("id,amount\n1,10\n2,\n3,7\n")

    cleaning = mltrace.Component(name="cleaning", owner="plumber", tags=["etl"],
                                 description="Drops the rows with a missing value.")

    @cleaning.run(inputs=["raw.csv"], output_vars=["dest"])
    def clean(path: str) -> str:
        dest = "clean.csv"
        rows = [line for line in Path(path).read_text().splitlines() if not line.endswith(",")]
        Path(dest).write_text("\n".join(rows) + "\n")
        return dest

    extract()
    clean("raw.csv")


@functools.cache
def sdk_run_span() -> Any:
    """The cleaning run as the SDK emits it, as an ExportTraceServiceRequest of one span (its
    resource and scope included), recorded once per process in a scratch directory."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mltrace_otel.sdk import export
    from mltrace_otel.store.ingest import encode_spans

    here = os.getcwd()
    mem = InMemorySpanExporter()
    with tempfile.TemporaryDirectory() as d:
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
        for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "pipeline"], ["tag", "v1.2"]):
            subprocess.run(git + args, cwd=d, check=True, capture_output=True)  # a pipeline's repo
        os.chdir(d)
        export.configure(exporter=mem)
        try:
            _clean_pipeline()
        finally:
            export.reset()
            os.chdir(here)
    clean = [s for s in mem.get_finished_spans() if s.name == "cleaning"]
    return encode_spans(clean)


def make_request(n: int, seq: int, trace_id: bytes | None = None, status_code: int = 0) -> bytes:
    """A serialized ExportTraceServiceRequest of ``n`` run spans with fresh span ids, each
    reading and writing names of its own (``in/<seq>/<i>.csv``, ``out/<seq>/<i>.csv``) as one of
    20 components.

    ``trace_id``: one trace for every span of the request; None gives each span its own.
    ``status_code``: the spans' OTLP status code (0 unset, 1 ok).
    """
    if os.environ.get("MLTRACE_BENCH_SPANS", "sdk") == "minimal":
        return _minimal_request(n, seq, trace_id, status_code)
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from mltrace_otel import conventions as C

    req = ExportTraceServiceRequest()
    req.CopyFrom(sdk_run_span())
    ss = req.resource_spans[0].scope_spans[0]
    template = ss.spans[0]
    del ss.spans[:]
    t0 = time.time_ns()
    for i in range(n):
        comp = f"component_{i % 20}"
        sp = ss.spans.add()
        sp.CopyFrom(template)
        sp.trace_id = trace_id if trace_id is not None else os.urandom(16)
        sp.span_id = os.urandom(8)
        sp.name = comp
        sp.start_time_unix_nano, sp.end_time_unix_nano = t0 + i * 1000, t0 + i * 1000 + 5_000_000
        sp.status.code = status_code
        for kv in sp.attributes:
            if kv.key == C.COMPONENT_NAME:
                kv.value.string_value = comp
            elif kv.key == C.RUN_INPUTS:
                kv.value.array_value.values[0].string_value = f"in/{seq}/{i}.csv"
            elif kv.key == C.RUN_OUTPUTS:
                kv.value.array_value.values[0].string_value = f"out/{seq}/{i}.csv"
    return req.SerializeToString()


def _minimal_request(n: int, seq: int, trace_id: bytes | None, status_code: int) -> bytes:
    """The first benchmarks' spans: 9 hand-built attributes, no code snapshot, no link."""
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
