"""The per-call shortcuts stay exact: the encoder's caches never give one value another's
encoding, small output lists are summarized like numpy would, the sketch's JSON is json.dumps's,
runs whose pointers come from locals carry their pointer attributes once, locals are read at
return without a hook inside the function, and an unchanged file served from the per-path memo
is still re-hashed once it changes."""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import mltrace_otel as mltrace
from mltrace_otel import conventions as C
from mltrace_otel.sdk import files, stats
from mltrace_otel.sdk.wire import encode_request


def test_equal_values_of_other_types_keep_their_own_encoding():
    """True == 1 == 1.0 and 0.0 == -0.0, (True,) == (1,): a cached block or attribute encoding
    must never be reused for an equal value of another type or sign."""
    mem = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracer = provider.get_tracer("t")
    variants = [{"x": True, "l": [True]}, {"x": 1, "l": [1]}, {"x": 1.0, "l": [1.0]},
                {"x": 0.0, "l": [0.0]}, {"x": -0.0, "l": [-0.0]}, {"x": float("nan"), "l": ["a"]},
                {"x": "1", "l": ["1"]}, {"x": True, "l": [True]}]
    for attrs in variants * 2:  # the second pass is served from the caches
        with tracer.start_as_current_span("s", attributes=attrs) as s:
            s.add_event("e", attrs)
    for span in mem.get_finished_spans():
        assert ExportTraceServiceRequest.FromString(encode_request([span])) == encode_spans([span]), \
            dict(span.attributes)


def test_sketch_json_is_json_dumps():
    rng = random.Random(7)
    for _ in range(500):
        s = stats.Sketch()
        for _ in range(rng.randint(0, 40)):
            s.add(rng.choice([0.0, rng.uniform(-1e6, 1e6), rng.uniform(-1, 1) * 1e-12, rng.expovariate(1)]))
        d: dict = {"v": stats.SKETCH_VERSION, "a": stats.RELATIVE_ACCURACY}
        for prefix, store in (("p", s.pos), ("n", s.neg)):
            if store:
                keys = sorted(store)
                d[prefix + "k"] = [keys[0]] + [b - a for a, b in zip(keys, keys[1:], strict=False)]
                d[prefix + "c"] = [store[k] for k in keys]
        if s.zeros:
            d["z"] = s.zeros
        assert s.to_json() == json.dumps(d, separators=(",", ":"))


def test_small_lists_are_summarized_as_numpy_does():
    """Up to SMALL_SEQUENCE values the summary is computed in pure Python: the same counts,
    extremes and sketch as numpy's path, the sum and mean equal up to rounding."""
    rng = random.Random(3)
    for _ in range(300):
        xs = [rng.choice([None, math.nan, 0.0, rng.uniform(-1e3, 1e3), rng.randint(-5, 5)])
              for _ in range(rng.randint(1, stats.SMALL_SEQUENCE))]
        if all(x is None for x in xs):
            continue
        ((_, small),) = stats._summaries(xs)
        ((_, big),) = stats._array(np.array([math.nan if x is None else x for x in xs], dtype=np.float64))
        assert small.keys() == big.keys()
        for k in small:
            if k in (C.STATS_SUM, C.STATS_MEAN):
                assert math.isclose(small[k], big[k], rel_tol=1e-12, abs_tol=1e-9)
            else:
                assert small[k] == big[k], k


def test_pointers_from_locals_are_set_once_and_complete(spans):
    comp = mltrace.Component("c")

    @comp.run(inputs=["lit.csv"], input_vars=["src"], output_vars=["dst"])
    def step(src: str) -> None:
        dst = ["out.csv", "model.pkl"]  # noqa: F841

    step("in.csv")

    @comp.run(input_vars=["nothing"], output_vars=["none"])
    def empty() -> None:
        nothing = none = None  # noqa: F841

    empty()
    first, second = spans.get_finished_spans()
    a = first.attributes
    assert list(a[C.RUN_INPUTS]) == ["lit.csv", "in.csv"]
    assert list(a[C.RUN_OUTPUTS]) == ["out.csv", "model.pkl"]
    assert list(a[C.RUN_INPUT_TYPES]) == ["DATA", "DATA"]
    assert list(a[C.RUN_OUTPUT_TYPES]) == ["DATA", "MODEL"]
    assert len(a[C.RUN_INPUT_VERSIONS]) == 2 and len(a[C.RUN_OUTPUT_VERSIONS]) == 2
    b = second.attributes  # every variable None: the six attributes are still there, empty
    for key in (C.RUN_INPUTS, C.RUN_OUTPUTS, C.RUN_INPUT_VERSIONS, C.RUN_OUTPUT_VERSIONS,
                C.RUN_INPUT_TYPES, C.RUN_OUTPUT_TYPES):
        assert list(b[key]) == [], key


def test_the_per_path_memo_sees_every_change(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = Path("f.bin")
    p.write_bytes(b"a" * 1000)
    while files._racy(os.stat(p)):
        time.sleep(0.02)
    v1 = files.file_version("f.bin")
    hashed = files.cache_info().hashed
    assert files.file_version("f.bin") == v1 and files.cache_info().hashed == hashed  # served, not read
    p.write_bytes(b"b" * 1000)  # same size: the mtime and ctime tell
    v2 = files.file_version("f.bin")
    assert v2 != v1
    os.replace(tmp_path / "f.bin", tmp_path / "g.bin")
    Path("f.bin").write_bytes(b"a" * 1000)  # another file under the same name
    assert files.file_version("f.bin") == v1
    assert files.file_version("f.bin", limit=-1) != v1  # another hash limit: sampled, not whole
    os.unlink("f.bin")
    assert files.file_version("f.bin") == ""


def test_locals_are_read_at_return_with_no_hook_inside_the_function(spans):
    """The profile hook is gone once the function's frame starts (a previous profile function is
    back in place inside it); the locals are still those the function ended with, also when it
    raises."""
    seen: dict[str, object] = {}
    calls: list[str] = []

    def outer_profiler(frame, event, arg):  # noqa: ANN001, ANN202
        if event == "call":
            calls.append(frame.f_code.co_name)

    def helper(i: int) -> int:
        return i + 1

    @mltrace.register("hookless", output_vars=["out"])
    def work(fail: bool) -> str:
        seen["profile inside"] = sys.getprofile()
        out = "first.csv"
        for i in range(100):
            helper(i)
        out = "last.csv"
        if fail:
            raise ValueError("boom")
        return out

    work(False)
    sys.setprofile(outer_profiler)
    try:
        with pytest.raises(ValueError):
            work(True)
        inside = seen["profile inside"]
    finally:
        sys.setprofile(None)
    assert inside is outer_profiler
    assert calls.count("helper") == 100 and calls.count("work") == 1
    ok, failed = spans.get_finished_spans()
    assert list(ok.attributes[C.RUN_OUTPUTS]) == ["last.csv"]
    assert list(failed.attributes[C.RUN_OUTPUTS]) == ["last.csv"]
    work(False)
    assert seen["profile inside"] is None and sys.getprofile() is None
