"""Output statistics (mltrace_otel.sdk.stats): what a pipeline's outputs turn into on the span."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mltrace_otel import conventions as C
from mltrace_otel.sdk import stats
from mltrace_otel.sdk.stats import RELATIVE_ACCURACY, Sketch, output_events, sketch_of


def by_key(events: list[dict]) -> dict[tuple[str, str], dict]:
    return {(e[C.STATS_OUTPUT], e[C.STATS_COLUMN]): e for e in events}


def test_array_summary_is_exact_and_sketch_quantiles_within_accuracy():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 1.0, 20_000)
    (ev,) = output_events({"predictions": x})
    assert ev[C.STATS_OUTPUT] == "predictions" and ev[C.STATS_COLUMN] == ""
    assert ev[C.STATS_COUNT] == 20_000 and ev[C.STATS_NULLS] == 0
    assert ev[C.STATS_MIN] == x.min() and ev[C.STATS_MAX] == x.max()
    assert ev[C.STATS_MEAN] == pytest.approx(x.mean(), rel=1e-12)
    assert ev[C.STATS_SUM] == pytest.approx(x.sum(), rel=1e-12)
    sk = Sketch.from_json(ev[C.STATS_SKETCH])
    assert sk.count == 20_000
    xs = np.sort(x)
    for q in (0.01, 0.1, 0.5, 0.9, 0.99):
        exact = xs[math.floor(q * (len(xs) - 1))]  # the sketch's rank rule: lower quantile
        assert abs(sk.quantile(q) - exact) <= RELATIVE_ACCURACY * abs(exact) + 1e-12, q


def test_sketches_merge_to_the_quantiles_of_the_union():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 5000), rng.normal(3, 1, 5000)
    sa = Sketch.from_json(output_events({"p": a})[0][C.STATS_SKETCH])
    sb = Sketch.from_json(output_events({"p": b})[0][C.STATS_SKETCH])
    merged = Sketch().merge(sa).merge(sb)
    both = np.sort(np.concatenate([a, b]))
    assert merged.count == 10_000
    for q in (0.1, 0.5, 0.9):
        exact = both[math.floor(q * (len(both) - 1))]
        assert abs(merged.quantile(q) - exact) <= RELATIVE_ACCURACY * abs(exact) + 1e-12


def test_pure_python_sketch_equals_numpy_sketch_and_json_round_trips():
    values = [-5.5, -0.001, 0.0, 1e-12, 0.5, 1.0, 2.0, 2.0, 1e6, float("nan")]
    (ev,) = output_events({"v": values})
    assert ev[C.STATS_COUNT] == 10 and ev[C.STATS_NULLS] == 1
    via_numpy = Sketch.from_json(ev[C.STATS_SKETCH])
    via_python = sketch_of(values)
    assert (via_numpy.pos, via_numpy.neg, via_numpy.zeros) == (via_python.pos, via_python.neg, 2)
    assert Sketch.from_json(via_python.to_json()).pos == via_python.pos
    doc = json.loads(ev[C.STATS_SKETCH])
    assert doc["v"] == 1 and doc["a"] == 0.01 and doc["z"] == 2
    assert all(d > 0 for d in doc["pk"][1:])  # delta-encoded ascending keys
    assert via_numpy.quantile(0.0) == pytest.approx(-5.5, rel=0.01)
    assert via_numpy.quantile(1.0) == pytest.approx(1e6, rel=0.01)


def test_dataframe_one_event_per_numeric_column_with_nans_and_nullable_dtypes():
    df = pd.DataFrame({
        "score": [0.1, np.nan, 0.3, 0.4],
        "label": ["a", "b", "c", "d"],
        "n": pd.array([1, None, 3, None], dtype="Int64"),
        "ok": [True, False, True, True],
        "when": pd.date_range("2024-01-01", periods=4),
    })
    evs = by_key(output_events({"features": df}))
    assert set(evs) == {("features", "score"), ("features", "n"), ("features", "ok")}
    score = evs["features", "score"]
    assert (score[C.STATS_COUNT], score[C.STATS_NULLS]) == (4, 1)
    assert score[C.STATS_MIN] == 0.1 and score[C.STATS_MAX] == 0.4
    assert score[C.STATS_MEAN] == pytest.approx(0.8 / 3)
    n = evs["features", "n"]
    assert (n[C.STATS_COUNT], n[C.STATS_NULLS], n[C.STATS_SUM]) == (4, 2, 4.0)
    assert evs["features", "ok"][C.STATS_MEAN] == 0.75  # a bool column's mean is its rate


def test_series_scalars_and_all_null_values():
    evs = by_key(output_events({
        "s": pd.Series([1.0, 2.0, None], name="whatever"),
        "i": 7,
        "f": np.float32(2.5),
        "nan": float("nan"),
        "nones": [None, None],
    }))
    assert evs["s", ""][C.STATS_COUNT] == 3 and evs["s", ""][C.STATS_NULLS] == 1
    assert evs["i", ""][C.STATS_MEAN] == 7.0 and Sketch.from_json(evs["i", ""][C.STATS_SKETCH]).count == 1
    assert evs["f", ""][C.STATS_MAX] == 2.5
    for key in (("nan", ""), ("nones", "")):
        ev = evs[key]
        assert ev[C.STATS_NULLS] == ev[C.STATS_COUNT] > 0
        assert C.STATS_MIN not in ev and C.STATS_MEAN not in ev  # nothing to summarize


def test_empty_numeric_array_reports_zero_count_but_empty_list_and_non_numeric_give_no_event():
    evs = by_key(output_events({
        "empty_array": np.array([], dtype=np.float64),
        "empty_list": [],
        "text": "data/out.csv",
        "words": ["a", "b"],
        "mixed": [1, "b"],
        "strings_array": np.array(["1", "2"]),
        "dict": {"a": 1},
        "obj": object(),
        "nested": [[1, 2], [3]],
        "empty_frame": pd.DataFrame({"x": pd.Series([], dtype=float)}),
    }))
    assert set(evs) == {("empty_array", ""), ("empty_frame", "x")}
    assert evs["empty_array", ""][C.STATS_COUNT] == 0
    assert Sketch.from_json(evs["empty_array", ""][C.STATS_SKETCH]).quantile(0.5) is None


def test_never_raises_and_caps_events():
    class Exploding:
        def items(self):
            raise RuntimeError("boom")

    assert output_events(Exploding()) == []  # type: ignore[arg-type]
    wide = pd.DataFrame(np.ones((2, stats.MAX_EVENTS + 10)))
    assert len(output_events({"wide": wide, "x": 1})) == stats.MAX_EVENTS


def test_huge_arrays_are_sampled_with_counts_scaled(monkeypatch):
    monkeypatch.setattr(stats, "SKETCH_MAX_VALUES", 1000)
    x = np.arange(1, 10_001, dtype=np.float64)
    (ev,) = output_events({"x": x})
    assert ev[C.STATS_COUNT] == 10_000 and ev[C.STATS_SUM] == x.sum()  # exact on every value
    sk = Sketch.from_json(ev[C.STATS_SKETCH])
    assert sk.count == 10_000
    assert sk.quantile(0.5) == pytest.approx(5000, rel=0.02)


def test_importing_stats_loads_neither_numpy_nor_pandas():
    code = ("import sys, mltrace_otel, mltrace_otel.sdk.stats as s; "
            "assert len(s.output_events({'x': 1.5, 'flag': True})) == 2; "
            "print('numpy' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
