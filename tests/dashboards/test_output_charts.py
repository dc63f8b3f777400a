"""The history page's output charts in real headless Chromium: a component whose runs return
a numeric value (and one returning many values) shows one chart per output, one point per run,
whose series read back equal the recorded summaries (mean; p50/p95 from the recorded sketch)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from mltrace_otel.sdk.stats import sketch_of

pytestmark = pytest.mark.browser

ACCURACIES = (0.61, 0.72, 0.68, 0.8)
ACCURACY = "metrics/accuracy"
SCORES = "scores/batch"
BATCHES = [np.linspace(0.0, 1.0, 41) ** p for p in (1.0, 2.0, 0.5)]


@pytest.fixture(scope="module")
def ui_store(ui_settings) -> Iterator[object]:
    """A store holding runs of ``evaluate`` (a float each) and ``score`` (41 floats each)."""
    from mltrace_otel.sdk import export
    from mltrace_otel.sdk.component import Component
    from mltrace_otel.store import open_store

    export.configure(settings=ui_settings.replace(export="spool"))
    try:
        ev = Component(name="evaluate", owner="bo", description="scores the model")
        sc = Component(name="score", owner="bo", description="scores a batch")

        @ev.run(outputs=[ACCURACY])
        def evaluate(acc: float) -> float:
            return acc

        @sc.run(outputs=[SCORES])
        def score(i: int) -> list[float]:
            return [float(x) for x in BATCHES[i]]

        for acc in ACCURACIES:
            evaluate(acc)
            time.sleep(0.01)  # distinct run starts
        for i in range(len(BATCHES)):
            score(i)
            time.sleep(0.01)
        assert export.flush()
    finally:
        export.reset()
    s = open_store(ui_settings)
    try:
        yield s
    finally:
        try:
            s.command("drop_test_database", f"DROP DATABASE IF EXISTS `{s.database}`")
        finally:
            s.close()


@pytest.fixture(scope="module")
def filled(ui_store) -> None:
    """This module's store needs no ids by role (the shared pipeline is not logged here)."""
    return None


def _charts(driver, url: str) -> dict[str, dict]:
    driver.get(url)

    def ready(d) -> bool:
        return bool(d.execute_script(
            "var c = document.querySelectorAll('.output-chart .js-plotly-plot');"
            "if (!c.length) { return false; }"
            "for (var i = 0; i < c.length; i++) { if (!c[i].querySelector('.main-svg')) { return false; } }"
            "return !document.querySelector('[data-dash-is-loading=\"true\"]');"))

    WebDriverWait(driver, 20).until(ready)
    charts = driver.execute_script("""
        return Array.from(document.querySelectorAll('.output-chart .js-plotly-plot')).map(function (gd) {
            var ytitle = ((gd.layout.yaxis || {}).title || {}).text || '';
            return {title: gd._fullLayout.title.text, ytitle: ytitle,
                    shown: Array.from(gd.querySelectorAll('.g-ytitle text')).map(function (e) {
                        return e.textContent; }).join(''),
                    xtype: gd._fullLayout.xaxis.type,
                    points: gd.querySelectorAll('path.point').length,
                    series: gd.data.map(function (t) {
                        return {name: t.name, x: t.x, y: t.y, runs: t.customdata}; })}; });""")
    return {c["title"]: c for c in charts}


def test_a_returned_metric_is_plotted_per_run(browser, ui_url, ui_store, screenshot):
    runs = list(reversed(ui_store.history("evaluate", 100)))  # oldest first
    assert len(runs) == len(ACCURACIES)
    charts = _charts(browser, f"{ui_url}/history/evaluate")
    assert ACCURACY in charts, sorted(charts)
    chart = charts[ACCURACY]
    by_name = {s["name"]: s for s in chart["series"]}
    assert list(by_name) == ["mean", "p50", "p95"]
    assert by_name["mean"]["y"] == pytest.approx(list(ACCURACIES), abs=1e-12)
    # one value per run: its sketch quantiles, clamped to the run's min/max, are the value itself
    assert by_name["p50"]["y"] == pytest.approx(list(ACCURACIES), abs=1e-12)
    assert by_name["p95"]["y"] == pytest.approx(list(ACCURACIES), abs=1e-12)
    assert by_name["mean"]["runs"] == [r.id for r in runs]
    xs = [datetime.fromisoformat(x) for x in by_name["mean"]["x"]]
    assert xs == [r.start for r in runs] and all(x.tzinfo is not None for x in xs)  # ISO, UTC
    assert chart["xtype"] == "date" and chart["ytitle"] == chart["shown"] == ""  # no unit recorded
    assert chart["points"] >= len(runs)
    el = browser.find_element(By.ID, "outputs-title")
    browser.execute_script("arguments[0].scrollIntoView()", el)
    screenshot(browser, "history_output_chart")


def test_many_valued_output_plots_mean_and_sketch_quantiles(browser, ui_url, ui_store, screenshot):
    charts = _charts(browser, f"{ui_url}/history/score")
    by_name = {s["name"]: s for s in charts[SCORES]["series"]}
    assert by_name["mean"]["y"] == pytest.approx([float(b.mean()) for b in BATCHES], rel=1e-9)
    for name, q in (("p50", 0.5), ("p95", 0.95)):
        expected = [min(max(sketch_of(b.tolist()).quantile(q), b.min()), b.max()) for b in BATCHES]
        assert by_name[name]["y"] == pytest.approx(expected, rel=1e-9), name
        # the sketch is within 1% of a value of the data
        for got, b in zip(by_name[name]["y"], BATCHES, strict=True):
            assert got == pytest.approx(float(np.quantile(b, q, method="lower")), rel=0.011, abs=1e-9)
    # the history chart still heads the page, and a component without numeric outputs has no section
    assert browser.find_elements(By.CSS_SELECTOR, "#history-chart")
    screenshot(browser, "history_output_quantiles")


def test_output_series_fall_back_to_min_and_max_without_a_sketch(monkeypatch):
    from datetime import timedelta, timezone

    from mltrace_otel.dashboards import outputs
    from mltrace_otel.store import metrics_queries as mq

    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    class R:
        def __init__(self, i: int) -> None:
            self.id, self.start = f"r{i}", t0 + timedelta(minutes=i)

    runs = [R(1), R(0)]
    rows = [mq.OutputStatsRow("c", "loss", "", f"r{i}", 0.0, 3, 0, float(i), float(i + 2), i + 1.0,
                              3 * (i + 1.0), "not a sketch") for i in (1, 0)]
    monkeypatch.setattr(mq, "run_output_stats", lambda *a: rows)
    (s,) = outputs.output_series(None, "c", runs)
    assert s.title == "loss" and s.x == [t0.isoformat(), (t0 + timedelta(minutes=1)).isoformat()]
    assert s.stats == {"mean": [1.0, 2.0], "min": [0.0, 1.0], "max": [2.0, 3.0]}
