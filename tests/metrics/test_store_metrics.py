"""Exact /metrics values for a known set of runs in a real embedded store."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from metrics_helpers import BASE_NOW, RunSpec
from prometheus_client import CollectorRegistry, generate_latest

from mltrace_otel.metrics import register_store_metrics
from mltrace_otel.metrics.families import DURATION_BUCKETS
from mltrace_otel.sdk.stats import RELATIVE_ACCURACY

RNG = np.random.default_rng(7)
PRED_1 = RNG.normal(0.0, 1.0, 2000)
PRED_2 = RNG.normal(3.0, 1.0, 2000)


def lower_quantile(x: np.ndarray, q: float) -> float:
    xs = np.sort(x)
    return float(xs[math.floor(q * (len(xs) - 1))])


def close(sketch_value: float | None, exact: float) -> bool:
    return sketch_value is not None and abs(sketch_value - exact) <= RELATIVE_ACCURACY * abs(exact) + 1e-9


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_runs_durations_tests_and_freshness_are_exact(store, tmp_settings, load, registry):
    load([
        RunSpec("clean", ago_s=300, duration_s=0.02, tests=[("NoNulls", "testNulls", True)]),
        RunSpec("clean", ago_s=200, duration_s=2.0, tests=[("NoNulls", "testNulls", True)]),
        RunSpec("clean", ago_s=100, duration_s=40.0, failed=True, tests=[("NoNulls", "testNulls", False)]),
        RunSpec("train", ago_s=50, duration_s=700.0),
    ])
    register_store_metrics(registry, store, tmp_settings)
    get = registry.get_sample_value

    assert get("mltrace_component_runs_total", {"component": "clean", "status": "ok"}) == 2
    assert get("mltrace_component_runs_total", {"component": "clean", "status": "error"}) == 1
    assert get("mltrace_component_runs_total", {"component": "train", "status": "ok"}) == 1
    assert get("mltrace_component_runs_total", {"component": "train", "status": "error"}) == 0  # not absent

    def bucket(c: str, le: str) -> float | None:
        return get("mltrace_component_run_duration_seconds_bucket", {"component": c, "le": le})

    assert [bucket("clean", le) for le in ("0.01", "0.05", "1.0", "5.0", "30.0", "60.0", "+Inf")] == \
        [0, 1, 1, 2, 2, 3, 3]
    assert bucket("train", "300.0") == 0 and bucket("train", "900.0") == 1
    assert get("mltrace_component_run_duration_seconds_count", {"component": "clean"}) == 3
    assert get("mltrace_component_run_duration_seconds_sum", {"component": "clean"}) == pytest.approx(42.02)
    assert len(DURATION_BUCKETS) + 1 == sum(
        1 for line in generate_latest(registry).decode().splitlines()
        if line.startswith('mltrace_component_run_duration_seconds_bucket{component="train"'))

    # freshness: the end of the last run that did not fail (the failed one is newer)
    last_ok = get("mltrace_component_last_success_timestamp_seconds", {"component": "clean"})
    assert last_ok == pytest.approx(BASE_NOW - 200 + 2.0, abs=0.002)

    t = {"component": "clean", "test": "NoNulls", "method": "testNulls"}
    assert get("mltrace_component_tests_total", {**t, "result": "passed"}) == 2
    assert get("mltrace_component_tests_total", {**t, "result": "failed"}) == 1
    assert get("mltrace_metrics_store_up") == 1


def test_duplicate_span_delivery_counts_once(store, tmp_settings, spans, registry):
    batch = spans.emit([RunSpec("clean", ago_s=10, duration_s=1.0)])
    store.insert_spans(batch)
    store.insert_spans(batch)  # an OTLP retry after a lost acknowledgement
    register_store_metrics(registry, store, tmp_settings)
    assert registry.get_sample_value("mltrace_component_runs_total",
                                     {"component": "clean", "status": "ok"}) == 1


def test_output_distribution_shift_moves_the_p50_series(store, tmp_settings, load, registry):
    frame = pd.DataFrame({"score": [0.5, np.nan, 1.5, 2.5], "label": list("abcd")})
    load([RunSpec("predict", ago_s=120, duration_s=1.0, outputs={"preds": PRED_1, "features": frame})])
    collector = register_store_metrics(registry, store, tmp_settings)
    get = registry.get_sample_value
    series = {"component": "predict", "output": "preds", "column": ""}

    def q(window: str, quantile: str) -> float | None:
        return get("mltrace_output_quantile", {**series, "window": window, "quantile": quantile})

    p50_before = q("last_run", "0.5")
    assert close(p50_before, lower_quantile(PRED_1, 0.5))
    assert abs(p50_before) < 0.1
    assert get("mltrace_output_count", series) == 2000 and get("mltrace_output_nulls", series) == 0
    assert get("mltrace_output_mean", series) == pytest.approx(PRED_1.mean())

    col = {"component": "predict", "output": "features", "column": "score"}
    assert (get("mltrace_output_count", col), get("mltrace_output_nulls", col)) == (4, 1)
    assert (get("mltrace_output_min", col), get("mltrace_output_max", col)) == (0.5, 2.5)
    assert get("mltrace_output_count", {**col, "column": "label"}) is None  # not numeric

    load([RunSpec("predict", ago_s=60, duration_s=1.0, outputs={"preds": PRED_2})])
    collector.invalidate()
    p50_after = q("last_run", "0.5")
    assert close(p50_after, lower_quantile(PRED_2, 0.5))
    assert p50_after - p50_before == pytest.approx(3.0, abs=0.15)
    for quantile in ("0.01", "0.1", "0.9", "0.99"):
        assert close(q("last_run", quantile), lower_quantile(PRED_2, float(quantile))), quantile
    both = np.concatenate([PRED_1, PRED_2])
    for quantile in ("0.1", "0.5", "0.9"):
        assert close(q("last_10_runs", quantile), lower_quantile(both, float(quantile))), quantile
    assert get("mltrace_output_mean", series) == pytest.approx(PRED_2.mean())
    assert get("mltrace_output_min", series) == PRED_2.min()
    assert get("mltrace_output_last_run_timestamp_seconds", series) == pytest.approx(BASE_NOW - 60, abs=0.002)


def test_scrapes_are_cached_and_invalidate_rereads(store, tmp_settings, load, registry):
    load([RunSpec("clean", ago_s=10, duration_s=1.0)])
    collector = register_store_metrics(registry, store, tmp_settings, cache_s=3600)
    generate_latest(registry)
    generate_latest(registry)
    assert collector.refreshes == 1
    load([RunSpec("clean", ago_s=5, duration_s=1.0)])
    assert registry.get_sample_value("mltrace_component_runs_total",
                                     {"component": "clean", "status": "ok"}) == 1  # cached
    collector.invalidate()
    assert registry.get_sample_value("mltrace_component_runs_total",
                                     {"component": "clean", "status": "ok"}) == 2
    assert collector.refreshes == 2


def test_label_cap_drops_extra_series_and_counts_them(store, tmp_settings, load, registry):
    load([RunSpec(f"c{i}", ago_s=100 - i, duration_s=1.0, outputs={"o": float(i)}) for i in range(5)])
    collector = register_store_metrics(registry, store, tmp_settings.replace(metrics_label_cap=2))
    text = generate_latest(registry).decode()
    kept = [ln for ln in text.splitlines() if ln.startswith("mltrace_component_runs_total{")]
    assert len(kept) == 4 and all('component="c0"' in k or 'component="c1"' in k for k in kept)
    get = registry.get_sample_value
    assert get("mltrace_metrics_series_dropped_total", {"metric": "mltrace_component_runs"}) == 6
    assert get("mltrace_metrics_series_dropped_total", {"metric": "mltrace_output"}) == 3
    assert get("mltrace_output_count", {"component": "c4", "output": "o", "column": ""}) is None
    collector.invalidate()
    generate_latest(registry)  # the counter accumulates across reads of the store
    assert get("mltrace_metrics_series_dropped_total", {"metric": "mltrace_component_runs"}) == 12


def test_store_failure_keeps_the_scrape_up_and_is_reported(store, tmp_settings, load, registry):
    load([RunSpec("clean", ago_s=10, duration_s=1.0)])
    collector = register_store_metrics(registry, store, tmp_settings)
    generate_latest(registry)
    store.close()
    collector.invalidate()
    text = generate_latest(registry).decode()  # does not raise
    assert 'mltrace_component_runs_total{component="clean",status="ok"} 1.0' in text  # last good data
    assert registry.get_sample_value("mltrace_metrics_store_up") == 0
    assert registry.get_sample_value("mltrace_metrics_store_errors_total", {"query": "run_totals"}) == 1


def test_flagged_outputs_per_producing_component(store, tmp_settings, load, registry):
    load([RunSpec("clean", ago_s=20, duration_s=1.0, pointers=["a.csv", "b.csv"]),
          RunSpec("train", ago_s=10, duration_s=1.0, pointers=["model.pkl"])])
    store.flag("a.csv")
    store.flag("model.pkl")
    store.flag("b.csv")
    store.unflag("b.csv")
    register_store_metrics(registry, store, tmp_settings)
    get = registry.get_sample_value
    assert get("mltrace_flagged_outputs") == 2
    assert get("mltrace_component_flagged_outputs", {"component": "clean"}) == 1
    assert get("mltrace_component_flagged_outputs", {"component": "train"}) == 1


def test_stale_latest_runs_by_rule(store, tmp_settings, load, registry):
    load([
        RunSpec("ingest", ago_s=500, duration_s=1.0, pointers=["raw.csv"]),
        RunSpec("train", ago_s=100, duration_s=1.0, inputs=["raw.csv"], pointers=["model.pkl"],
                staleness_threshold_s=60),  # its input was produced 400 s before it started
        RunSpec("ingest", ago_s=50, duration_s=1.0, pointers=["raw.csv"]),  # and is newer now
    ])
    register_store_metrics(registry, store, tmp_settings)

    def stale(component: str, rule: str) -> float | None:
        labels = {"component": component, "rule": rule}
        return registry.get_sample_value("mltrace_component_stale_runs", labels)

    assert [stale("train", r) for r in ("old_input", "fresher_run", "newer_upstream")] == [1, 0, 1]
    assert [stale("ingest", r) for r in ("old_input", "fresher_run", "newer_upstream")] == [0, 0, 0]


def test_stale_rule_reads_the_store_wording():
    from mltrace_otel.metrics.families import stale_rule
    from mltrace_otel.store.staleness import fresher_message, newer_message, old_message

    tricky = "newer fresher runs 3 days ago"  # a component name cannot mislead the rule
    assert stale_rule(old_message(tricky, "ab12", 40)) == "old_input"
    assert stale_rule(fresher_message(tricky, "ab12", 1)) == "fresher_run"
    assert stale_rule(fresher_message(tricky, "ab12", 3)) == "fresher_run"
    assert stale_rule(newer_message("x days ago", "ab12", "cd34")) == "newer_upstream"
    assert stale_rule("something else") == "other"


def test_stale_rule_reads_failed_and_inherited_staleness():
    from mltrace_otel.metrics.families import STALE_RULES, stale_rule
    from mltrace_otel.store.staleness import failed_message, newer_message

    tricky = "was run, which is stale: x"  # a component name must not mislead it
    assert stale_rule(failed_message(tricky, "ab12", "ValueError: negative amount")) == "upstream_failed"
    inherited = (f"report (ID ab12) read clean.csv from {tricky} (ID cd34), which is stale: "
                 + newer_message("extract", "ef56", "0a1b"))
    assert stale_rule(inherited) == "upstream_stale"
    assert {"upstream_failed", "upstream_stale"} <= set(STALE_RULES)
