"""mltrace's own client tests (tests/test_client.py, test_component.py, test_Test.py), as
behaviour of mltrace-otel's SDK; plus failures: a raising function and failing tests."""

# ruff: noqa: F841 - the decorated functions' locals are read by the SDK, not by Python code
from __future__ import annotations

import pandas as pd
import pytest
from sdk_helpers import attr, events_of, runs

import mltrace_otel as mltrace
from mltrace_otel import conventions as C
from mltrace_otel.sdk.pointers import IOPointer


def test_empty_component_run_is_refused(spans):
    cr = mltrace.ComponentRun("test_component")
    with pytest.raises(RuntimeError, match="start_timestamp and end_timestamp"):
        mltrace.log_component_run(cr)
    assert runs(spans) == []


def test_duplicate_inputs_and_outputs_are_deduplicated(spans):
    cr = mltrace.ComponentRun(component_name="test_component")
    cr.set_start_timestamp()
    cr.code_snapshot = b"def main(): return"
    cr.add_inputs(["duplicate_input", "duplicate_input"])
    cr.add_outputs(["duplicate_output", "duplicate_output"])
    cr.set_end_timestamp()
    run_id = mltrace.log_component_run(cr)
    (run,) = runs(spans)
    assert attr(run, C.RUN_INPUTS) == ["duplicate_input"]
    assert attr(run, C.RUN_OUTPUTS) == ["duplicate_output"]
    assert attr(run, C.CODE_SNAPSHOT) == "def main(): return"
    assert run_id == cr.id == f"{run.context.span_id:016x}"


def test_io_pointer_values_are_fingerprinted(spans):
    iop1 = IOPointer(name="iop1", value=["this", "is", "the", "first"])
    iop2 = IOPointer(name="iop2", value=["this", "is", "the", "second"])
    cr = mltrace.ComponentRun("valtest")
    cr.set_start_timestamp()
    cr.set_end_timestamp()
    cr.add_input(iop1)
    cr.add_output(iop2)
    mltrace.log_component_run(cr)
    (run,) = runs(spans)
    (v1,), (v2,) = attr(run, C.RUN_INPUT_VERSIONS), attr(run, C.RUN_OUTPUT_VERSIONS)
    assert len(v1) == 32 and len(v2) == 32 and v1 != v2
    assert v1 == IOPointer("other", ["this", "is", "the", "first"]).version


def test_register_with_input_and_output_vars(spans):
    @mltrace.register(component_name="test_component", input_vars=["foo"], output_vars=["bar"])
    def test_func():
        foo = "foo"
        bar = "bar"
        return

    test_func()
    (run,) = runs(spans)
    assert run.name == "test_component"
    assert attr(run, C.RUN_INPUTS) == ["foo"] and attr(run, C.RUN_OUTPUTS) == ["bar"]


def test_register_no_return_numbers_as_names(spans):
    @mltrace.register(component_name="test_component", input_vars=["foo"], output_vars=["bar"])
    def test_func():
        x = 0
        foo = x + 1
        bar = x + 2

    test_func()
    (run,) = runs(spans)
    assert attr(run, C.RUN_INPUTS) == ["1"] and attr(run, C.RUN_OUTPUTS) == ["2"]


@pytest.mark.parametrize("inputs, outputs, missing", [(["foory"], ["bar"], "foory"),
                                                       (["foo"], ["barry"], "barry")])
def test_register_wrong_var_raises_value_error_and_logs_nothing(spans, inputs, outputs, missing):
    @mltrace.register(component_name="test_component", input_vars=inputs, output_vars=outputs)
    def test_func():
        x = 0
        foo = x + 1
        bar = x + 2

    with pytest.raises(ValueError, match=missing):
        test_func()
    assert runs(spans) == []


def test_component_run_wrong_var(spans):
    c = mltrace.Component("aditi", "test", "test_description")

    @c.run(component_name="test_component", input_vars=["idontexist"], output_vars=["bar"])
    def test_function():
        x = 0
        foo = x + 1
        bar = x + 2

    with pytest.raises(ValueError, match="idontexist"):
        test_function()
    assert runs(spans) == []


def test_register_kwargs_scalars(spans):
    @mltrace.register(component_name="test_component", input_kwargs={"inp_key": "inp_val"},
                      output_kwargs={"out_key": "out_val"})
    def some_func(inp_key, inp_val):
        out_key = "another_filename.pkl"
        out_val = pd.DataFrame({"a": [1, 2], "b": [2, 3]})

    some_func(inp_key="some_filename.pkl", inp_val=pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]}))
    (run,) = runs(spans)
    assert attr(run, C.RUN_INPUTS) == ["some_filename.pkl"]
    assert attr(run, C.RUN_OUTPUTS) == ["another_filename.pkl"]
    assert attr(run, C.RUN_INPUT_TYPES) == ["MODEL"]
    (vin,), (vout,) = attr(run, C.RUN_INPUT_VERSIONS), attr(run, C.RUN_OUTPUT_VERSIONS)
    assert vin and vout and vin != vout
    assert vin == IOPointer("x", pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]})).version


def test_register_kwargs_lists(spans):
    @mltrace.register(component_name="test_component", input_kwargs={"inp_key": "inp_val"},
                      output_kwargs={"out_key": "out_val"})
    def some_func(inp_key, inp_val):
        out_key = ["another_filename1.pkl", "another_filename2.pkl"]
        out_val = [1, 2]

    some_func(inp_key=["some_filename1.pkl", "some_filename2.pkl"], inp_val=[11, 22])
    (run,) = runs(spans)
    assert attr(run, C.RUN_INPUTS) == ["some_filename1.pkl", "some_filename2.pkl"]
    assert attr(run, C.RUN_OUTPUTS) == ["another_filename1.pkl", "another_filename2.pkl"]
    vin = attr(run, C.RUN_INPUT_VERSIONS)
    assert vin[0] == IOPointer("x", 11).version and vin[1] == IOPointer("x", 22).version


def test_register_kwargs_list_wrong_lengths(spans):
    @mltrace.register(component_name="test_component", input_kwargs={"inp_key": "inp_val"},
                      output_kwargs={"out_key": "out_val"})
    def some_func(inp_key, inp_val):
        out_key = ["another_filename1.pkl", "another_filename2.pkl"]
        out_val = 1

    with pytest.raises(ValueError, match='"inp_val" does not have the same length as the key "inp_key'):
        some_func(inp_key=["some_filename1.pkl", "some_filename2.pkl"], inp_val=1)
    assert runs(spans) == []


@pytest.mark.parametrize("inp, out, missing", [({"inp_keyeyey": "inp_valalalal"}, {"out_key": "out_val"},
                                                "inp_keyeyey"),
                                               ({"inp_key": "inp_val"}, {"out_keyeyeyey": "out_valalalal"},
                                                "out_keyeyeyey")])
def test_register_kwargs_wrong_names(spans, inp, out, missing):
    @mltrace.register(component_name="test_component", input_kwargs=inp, output_kwargs=out)
    def some_func(inp_key, inp_val):
        out_key = "another_filename.pkl"
        out_val = 1

    with pytest.raises(ValueError, match=missing):
        some_func(inp_key="some_filename.pkl", inp_val=pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]}))
    assert runs(spans) == []


def test_save_then_load_round_trips_and_is_recorded(spans, sdk_settings):
    frame = pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"]})

    @mltrace.register("writer")
    def write():
        path = mltrace.save(frame)
        return path

    @mltrace.register("reader")
    def read(path):
        df = mltrace.load(path)
        return df

    path = write()
    assert path.startswith(str(sdk_settings.artifact_dir / "writer")) and path.endswith(".mlt")
    pd.testing.assert_frame_equal(read(path), frame)
    w, r = runs(spans)
    assert attr(w, C.RUN_OUTPUTS) == [path] and attr(r, C.RUN_INPUTS) == [path]
    assert attr(w, C.RUN_OUTPUT_VERSIONS) == attr(r, C.RUN_INPUT_VERSIONS) != [""]
    assert [lk.context.span_id for lk in r.links] == [w.context.span_id]
    # outside a run, save/load just save and load
    p2 = mltrace.save({"k": 1}, str(sdk_settings.mltrace_dir / "obj.joblib"))
    assert mltrace.load(p2) == {"k": 1} and len(runs(spans)) == 2


def test_all_test_methods_run_and_only_them(spans):
    class DummyTest(mltrace.Test):
        def __init__(self):
            super().__init__("Dummy")

        def testCorrect(self, n: list):
            n[0] += 10

        def testAlsoCorrect(self, n: list):
            n[0] += 10

        def TestNotCorrect(self, n: list):
            raise Exception("TestNotCorrect called!")

        def notCorrect(self, n: list):
            raise Exception("notCorrect called!")

    c = mltrace.Component("aditi", "test", "test_description", afterTests=[DummyTest])
    val = [100]

    @c.run
    def function():
        n = val
        return

    function()
    assert val[0] == 120
    assert sorted(e[C.TEST_METHOD] for e in events_of(runs(spans)[0])) == ["testAlsoCorrect", "testCorrect"]


def test_test_argument_renaming_and_skips(spans):
    seen = {}

    class DfTest(mltrace.Test):
        def testShape(self, df):
            seen["df"] = df

    c = mltrace.Component("renamer", beforeTests=[DfTest], afterTests=[DfTest])

    @c.run(df="raw")  # mltrace: pass the function's `raw` to tests as `df`
    def f(raw):
        raw = raw + 1
        return raw

    f(1)
    assert seen["df"] == 2
    seen.clear()

    @c.run(skip_before=True, skip_after=True)
    def g(df):
        return df

    g(5)
    assert seen == {} and events_of(runs(spans)[-1]) == []


# --- failures ----------------------------------------------------------------------------------


def test_function_that_raises_is_recorded_and_reraised(spans):
    @mltrace.register("flaky", inputs=["in.csv"], outputs=["out.csv"], input_vars=["extra"])
    def boom():
        extra = "side_input.csv"
        raise KeyError("column tip")

    with pytest.raises(KeyError, match="column tip") as info:
        boom()
    assert info.value.args == ("column tip",)
    (run,) = runs(spans)
    assert not run.status.is_ok and "KeyError" in run.status.description
    exc = [e for e in run.events if e.name == C.EVENT_EXCEPTION]
    assert exc and exc[0].attributes["exception.type"] == "KeyError"
    assert "column tip" in exc[0].attributes["exception.message"]
    assert attr(run, C.RUN_INPUTS) == ["in.csv", "side_input.csv"]  # inputs still recorded


def test_failing_after_test_is_recorded_with_reason_and_raises(spans):
    class NonNegative(mltrace.Test):
        def testPositive(self, result):
            if result < 0:
                raise ValueError(f"result {result} is negative")

    c = mltrace.Component("scorer", afterTests=[NonNegative])

    @c.run(outputs=["score"])
    def score(x):
        result = x * 2
        return result

    assert score(2) == 4
    with pytest.raises(ValueError, match="result -4 is negative"):
        score(-2)
    good, bad = runs(spans)
    assert good.status.is_ok and events_of(good)[0][C.TEST_PASSED] is True
    (ev,) = events_of(bad)
    assert (ev[C.TEST_NAME], ev[C.TEST_METHOD], ev[C.TEST_PHASE], ev[C.TEST_PASSED]) == (
        "NonNegative", "testPositive", "after", False)
    assert ev[C.TEST_MESSAGE] == "ValueError: result -4 is negative"
    assert not bad.status.is_ok and "after test NonNegative.testPositive failed" in bad.status.description
    assert attr(bad, C.RUN_OUTPUTS) == ["score"]  # the function did run and write
