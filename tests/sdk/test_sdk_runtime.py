"""Runtime behaviour: locals capture beside debuggers and coverage, async and generator
functions, nesting, links, fingerprints, git once per process, nothing per call on disk."""

# ruff: noqa: F841 - the decorated functions' locals are read by the SDK
from __future__ import annotations

import asyncio
import cProfile
import sys
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from sdk_helpers import attr, runs

import mltrace_otel as mltrace
from mltrace_otel import conventions as C
from mltrace_otel.sdk import export
from mltrace_otel.sdk import git as sdk_git
from mltrace_otel.sdk.pointers import IOPointer, PointerTypeEnum, fingerprint, infer_pointer_type

# --- locals capture vs debuggers, coverage and profilers ---------------------------------------


def _helper(x):
    return x * 2


def test_settrace_debugger_still_sees_every_call_and_line(spans):
    @mltrace.register("traced", output_vars=["out"])
    def work():
        a = _helper(1)
        out = f"file-{a}.csv"
        return out

    seen: list[tuple[str, str]] = []

    def tracer(frame, event, arg):
        if frame.f_code.co_name in ("work", "_helper"):
            seen.append((frame.f_code.co_name, event))
        return tracer

    sys.settrace(tracer)
    try:
        assert work() == "file-2.csv"
        inside = sys.gettrace()
    finally:
        sys.settrace(None)
    assert inside is tracer
    assert ("work", "call") in seen and ("_helper", "call") in seen
    assert sum(1 for n, e in seen if n == "work" and e == "line") >= 3  # every body line traced
    assert attr(runs(spans)[0], C.RUN_OUTPUTS) == ["file-2.csv"]


def test_coverage_style_line_tracing_is_unaffected(spans):
    """A line tracer installed the way coverage.py's PyTracer does records the same lines with
    and without locals capture."""
    def body(flag):
        x = 1
        if flag:
            x += 1
        y = x * 3
        return y

    def lines_of(fn, *args):
        hit: set[int] = set()

        def tracer(frame, event, arg):
            if event == "line" and frame.f_code is body.__code__:
                hit.add(frame.f_lineno)
            return tracer

        sys.settrace(tracer)
        try:
            fn(*args)
        finally:
            sys.settrace(None)
        return hit

    plain = lines_of(body, True)
    captured = lines_of(mltrace.register("cov", output_vars=["y"])(body), True)
    assert plain == captured and len(plain) == 5
    assert attr(runs(spans)[0], C.RUN_OUTPUTS) == ["6"]


def test_stdlib_trace_coverage_counts_every_line_of_a_capturing_run(spans):
    import trace

    def body(n):
        total = 0
        for i in range(n):
            total += i
        dest = f"sum-{total}.txt"
        return dest

    decorated = mltrace.register("counted", output_vars=["dest"])(body)
    tracer = trace.Trace(count=1, trace=0)
    assert tracer.runfunc(decorated, 3) == "sum-3.txt"
    counts = {line: c for (fname, line), c in tracer.results().counts.items()
              if fname == body.__code__.co_filename and body.__code__.co_firstlineno < line
              <= body.__code__.co_firstlineno + 6}
    first = body.__code__.co_firstlineno
    assert counts[first + 1] == 1 and counts[first + 3] == 3 and counts[first + 5] == 1
    assert attr(runs(spans)[0], C.RUN_OUTPUTS) == ["sum-3.txt"]


def test_existing_profile_function_is_chained_and_restored(spans):
    events: list[tuple[str, str]] = []

    def profiler(frame, event, arg):
        if event in ("call", "return"):
            events.append((frame.f_code.co_name, event))

    @mltrace.register("profiled", output_vars=["name"])
    def work():
        name = f"out-{_helper(2)}"
        return name

    sys.setprofile(profiler)
    try:
        work()
        after = sys.getprofile()
    finally:
        sys.setprofile(None)
    assert after is profiler
    assert ("_helper", "call") in events and ("work", "return") in events
    assert attr(runs(spans)[0], C.RUN_OUTPUTS) == ["out-4"]


def test_fast_path_installs_no_hook(spans):
    hooks = {}

    @mltrace.register("fast", inputs=["a", "b"], outputs=["c", "d"])
    def work():
        hooks["profile"], hooks["trace"] = sys.getprofile(), sys.gettrace()

    work()
    assert hooks == {"profile": None, "trace": sys.gettrace()}


def test_under_cprofile_runs_are_still_logged(spans):
    @mltrace.register("cprof", inputs=["in.csv"], output_vars=["out"])
    def work():
        out = "o.csv"

    prof = cProfile.Profile()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        prof.enable()
        try:
            work()
        finally:
            prof.disable()
    (run,) = runs(spans)
    assert attr(run, C.RUN_INPUTS) == ["in.csv"]  # vars could not be read: skipped, not an error


# --- async, generators, nesting, threads -------------------------------------------------------


def test_async_function_span_covers_the_awaited_body(spans):
    inside = {}

    @mltrace.register("fetch", output_vars=["dest"])
    async def fetch(n):
        await asyncio.sleep(0.01)
        inside["t"] = time.time_ns()
        dest = f"page-{n}.json"
        return dest

    async def main():
        return await asyncio.gather(fetch(1), fetch(2))

    assert asyncio.run(main()) == ["page-1.json", "page-2.json"]
    r1, r2 = runs(spans)
    assert sorted(attr(r, C.RUN_OUTPUTS)[0] for r in (r1, r2)) == ["page-1.json", "page-2.json"]
    last = max(r1.end_time, r2.end_time)
    assert min(r1.start_time, r2.start_time) < inside["t"] <= last


def test_async_function_that_raises(spans):
    @mltrace.register("afail")
    async def boom():
        await asyncio.sleep(0)
        raise RuntimeError("no network")

    with pytest.raises(RuntimeError, match="no network"):
        asyncio.run(boom())
    assert not runs(spans)[0].status.is_ok


def test_generator_run_covers_the_iteration(spans):
    @mltrace.register("batches", inputs=["raw.csv"], output_vars=["written"])
    def batches(n):
        written = []
        for i in range(n):
            written.append(f"batch-{i}.pq")
            yield i

    gen = batches(3)
    assert runs(spans) == []  # nothing ran yet
    assert list(gen) == [0, 1, 2]
    (run,) = runs(spans)
    assert attr(run, C.RUN_OUTPUTS) == ["batch-0.pq", "batch-1.pq", "batch-2.pq"]

    gen = batches(10)
    next(gen)
    gen.close()  # consumer stopped early: the run is still recorded
    assert attr(runs(spans)[1], C.RUN_OUTPUTS) == ["batch-0.pq"]


def test_async_generator(spans):
    @mltrace.register("astream", output_vars=["seen"])
    async def stream():
        seen = []
        for i in range(2):
            seen.append(f"s{i}")
            yield i

    async def main():
        return [x async for x in stream()]

    assert asyncio.run(main()) == [0, 1]
    assert attr(runs(spans)[0], C.RUN_OUTPUTS) == ["s0", "s1"]


def test_nested_runs_are_child_spans(spans):
    @mltrace.register("inner", outputs=["part"])
    def inner():
        pass

    @mltrace.register("outer", outputs=["whole"])
    def outer():
        inner()

    outer()
    i, o = runs(spans)
    assert i.parent.span_id == o.context.span_id and i.context.trace_id == o.context.trace_id
    assert o.parent is None


def test_threads_record_their_own_runs(spans):
    @mltrace.register("worker", input_vars=["src"])
    def work(k):
        src = f"shard-{k}"
        time.sleep(0.001)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(attr(r, C.RUN_INPUTS)[0] for r in runs(spans)) == [f"shard-{k}" for k in range(8)]


# --- links and pointers ---------------------------------------------------------------------------


def test_links_follow_the_latest_producer_and_skip_self(spans):
    mk = mltrace.register

    mk("a", outputs=["x.csv"])(lambda: None)()
    mk("b", outputs=["x.csv"])(lambda: None)()
    mk("rewrite", inputs=["x.csv"], outputs=["x.csv"])(lambda: None)()
    mk("read", inputs=["x.csv", "never-written"])(lambda: None)()
    a, b, rw, rd = runs(spans)
    assert [lk.context.span_id for lk in rw.links] == [b.context.span_id]  # not itself
    assert [(lk.context.span_id, lk.attributes[C.LINK_IO_NAME]) for lk in rd.links] == [
        (rw.context.span_id, "x.csv")]


def test_span_conventions(spans):
    c = mltrace.Component("conv", owner="o", description="d", tags=["t1", "t2"])

    @c.run(inputs=["in.csv"], outputs=["m.pkl"], endpoint=True, staleness_threshold=60)
    def f():
        return 1

    f()
    (run,) = runs(spans)
    assert run.name == "conv" and run.kind.name == "INTERNAL"
    assert run.instrumentation_scope.name == C.SCOPE_NAME
    assert attr(run, C.RUN_OUTPUT_TYPES) == ["ENDPOINT"] and attr(run, C.RUN_ENDPOINT) is True
    assert attr(run, C.RUN_STALENESS_THRESHOLD_S) == 60
    for name in (C.RUN_INPUTS, C.RUN_OUTPUTS, C.RUN_INPUT_VERSIONS, C.RUN_OUTPUT_TYPES, C.COMPONENT_TAGS):
        assert all(isinstance(v, str) for v in run.attributes[name])
    commit, tags = sdk_git.process_git_info()
    assert attr(run, C.VCS_REVISION) == commit
    assert set(run.attributes) <= set(C.ALL_ATTRIBUTES)
    stats = [e for e in run.events if e.name == C.EVENT_OUTPUT_STATS]
    assert all(e.attributes.get(C.STATS_OUTPUT) == "m.pkl" for e in stats)  # the return value


def test_pointer_types_follow_mltrace():
    assert infer_pointer_type("data/abalone.csv") is PointerTypeEnum.DATA
    assert infer_pointer_type("weights.H5") is PointerTypeEnum.MODEL
    assert infer_pointer_type("training_data") is PointerTypeEnum.DATA
    assert infer_pointer_type("my_model") is PointerTypeEnum.MODEL
    assert infer_pointer_type("prediction-42") is PointerTypeEnum.UNKNOWN
    assert IOPointer("x.csv", pointer_type=PointerTypeEnum.ENDPOINT).pointer_type is PointerTypeEnum.ENDPOINT
    assert IOPointer("x.csv", pointer_type="UNKNOWN").pointer_type is PointerTypeEnum.UNKNOWN
    assert len(mltrace.create_random_ids(3)) == 3 and len(set(mltrace.create_random_ids(5))) == 5


def test_fingerprints_differ_in_any_cell_and_match_equal_content(tmp_path):
    rng = np.random.default_rng(0)
    big = pd.DataFrame(rng.normal(size=(5000, 8)), columns=list("abcdefgh"))
    changed = big.copy()
    changed.iloc[2500, 4] += 1e-9  # invisible in repr()
    assert repr(big) == repr(changed)
    assert fingerprint(big) != fingerprint(changed)
    assert fingerprint(big) == fingerprint(big.copy())
    assert fingerprint(big) != fingerprint(big.rename(columns={"a": "z"}))
    assert fingerprint(big) != fingerprint(big.astype("float32"))

    arr = rng.integers(0, 100, size=(300, 300))
    arr2 = arr.copy()
    arr2[150, 150] += 1
    assert fingerprint(arr) != fingerprint(arr2) and fingerprint(arr) == fingerprint(arr.copy())
    assert fingerprint(arr) != fingerprint(arr.reshape(900, 100))
    assert fingerprint(np.asfortranarray(arr)) == fingerprint(arr)

    assert fingerprint(1) != fingerprint(1.0) != fingerprint("1")
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert len(fingerprint(object)) == 32

    f = tmp_path / "data.csv"
    f.write_text("a,b\n1,2\n")
    before = fingerprint(f)
    f.write_text("a,b\n1,3\n")
    assert fingerprint(f) != before

    class Unpicklable:
        def __reduce__(self):
            raise TypeError("nope")

    assert fingerprint(Unpicklable()).startswith("w:")  # never raises: a weak version (issue 20)


# --- per-call cost: no file system, no git ---------------------------------------------------

_audit: dict[str, object] = {"on": False, "thread": None, "events": []}


def _hook(event: str, args: tuple) -> None:
    if _audit["on"] and threading.get_ident() == _audit["thread"] and (
            event in ("open", "subprocess.Popen", "os.system", "os.listdir", "os.scandir", "os.mkdir",
                      "os.rename", "os.remove", "shutil.copyfile") or event.startswith("os.exec")):
        _audit["events"].append((event, args[:1]))


sys.addaudithook(_hook)


def test_nothing_per_call_touches_the_file_system_or_runs_git(sdk_settings):
    export.configure(settings=sdk_settings)  # the real default: batched export to the spool
    sdk_git.clear_cache()

    @mltrace.register("hot", inputs=["a.csv", "b.csv"], outputs=["c.csv", "d.csv"])
    def hot(i):
        return None

    _audit.update(on=True, thread=threading.get_ident(), events=[])
    try:
        hot(0)
        first = list(_audit["events"])
        _audit["events"] = []
        for i in range(300):
            hot(i)
        later = list(_audit["events"])
    finally:
        _audit["on"] = False
    assert any(e == "subprocess.Popen" for e, _ in first)  # git, looked up once
    assert later == []
    assert mltrace.flush() and mltrace.delivery_stats().spooled == 301


def test_auto_log_fingerprints_inputs_before_the_function_changes_them(spans):
    @mltrace.register("mutator", auto_log=True)
    def mutate(train_data: pd.DataFrame):
        train_data.loc[0, "x"] = 99  # in place
        return None

    df = pd.DataFrame({"x": [1, 2, 3]})
    original = fingerprint(df.copy())
    mutate(df)
    (run,) = runs(spans)
    assert attr(run, C.RUN_INPUT_VERSIONS) == [original]


def test_generator_closed_before_a_var_is_set_is_still_logged(spans):
    @mltrace.register("lazy", output_vars=["final"])
    def lazy():
        yield 1
        yield 2
        final = "done.csv"

    g = lazy()
    next(g)
    g.close()  # `final` never assigned: no ValueError at close
    (run,) = runs(spans)
    assert attr(run, C.RUN_OUTPUTS) == []
    assert list(lazy()) == [1, 2] and attr(runs(spans)[1], C.RUN_OUTPUTS) == ["done.csv"]
