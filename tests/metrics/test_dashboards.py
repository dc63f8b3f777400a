"""The Grafana dashboard and the example Prometheus alert rules: loaded and checked."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import yaml
from metrics_helpers import RunSpec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mltrace_otel.metrics import LabelLimiter, Snapshot, register_store_metrics
from mltrace_otel.metrics.families import render

GRAFANA = resources.files("mltrace_otel.dashboards").joinpath("grafana")
METRIC = re.compile(r"\b(mltrace_[a-z0-9_]+)\b")
HERE = Path(__file__).parent


def dashboard() -> dict:
    return json.loads(GRAFANA.joinpath("mltrace.json").read_text(encoding="utf-8"))


def dashboard_exprs() -> list[str]:
    out = []
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        out += [t["expr"] for t in panel["targets"]]
    return out


def rule_exprs() -> list[str]:
    doc = yaml.safe_load(GRAFANA.joinpath("alerts.yml").read_text(encoding="utf-8"))
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def exposed_names(store, settings, load) -> set[str]:
    """Every sample name /metrics exposes for a populated store, plus the staleness series
    (rendered from a snapshot: the same code path as the store's)."""
    load([RunSpec("clean", ago_s=60, duration_s=1.0, tests=[("T", "testA", False)], failed=True,
                  outputs={"rows": [1.0, 2.0]}),
          RunSpec("clean", ago_s=30, duration_s=1.0, outputs={"rows": [1.0, 2.0]})])
    reg = CollectorRegistry()
    register_store_metrics(reg, store, settings.replace(metrics_label_cap=1))
    load([RunSpec("other", ago_s=20, duration_s=1.0)])  # cut by the cap: the dropped counter shows
    names = {s.name for fam in text_string_to_metric_families(generate_latest(reg).decode())
             for s in fam.samples}
    from mltrace_otel.collector.metrics import CollectorMetrics  # the collector's own series

    collector_registry = CollectorRegistry()
    CollectorMetrics(collector_registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names |= {fam.name + sfx for fam in collector_registry.collect() for sfx in suffixes.get(fam.type, ())}
    snap = Snapshot(stale={("clean", "old_input"): 1}, flagged_total=0)
    for fam in render(snap, LabelLimiter(10)):
        names |= {s.name for s in fam.samples}
    return names


def test_dashboard_and_rules_reference_only_exposed_metrics(store, tmp_settings, load):
    names = exposed_names(store, tmp_settings, load)
    # sanity: the check below is not vacuous
    assert {"mltrace_component_runs_total", "mltrace_output_quantile",
            "mltrace_component_run_duration_seconds_bucket", "mltrace_component_stale_runs",
            "mltrace_metrics_series_dropped_total"} <= names
    d = dashboard()
    assert d["uid"] and d["title"] and len(d["panels"]) >= 10
    used = set()
    for expr in dashboard_exprs() + rule_exprs():
        found = set(METRIC.findall(expr))
        assert found, expr
        used |= found
        assert found <= names, (expr, found - names)
    for var in d["templating"]["list"]:
        if var["type"] == "query":
            assert set(METRIC.findall(var["definition"])) <= names
    # every family the issue asks for is on the dashboard
    for wanted in ("mltrace_component_runs_total", "mltrace_component_run_duration_seconds_bucket",
                   "mltrace_component_tests_total", "mltrace_component_stale_runs",
                   "mltrace_component_last_success_timestamp_seconds", "mltrace_flagged_outputs",
                   "mltrace_output_quantile"):
        assert wanted in used, wanted


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: apt-get install -y prometheus"
    return path


def test_alert_rules_pass_promtool_check_and_unit_tests():
    rules = Path(str(GRAFANA.joinpath("alerts.yml")))
    check = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 8 rules found" in check.stdout
    # behaviour: drift, failing tests, freshness and staleness alerts fire (and only) when they should
    test = subprocess.run([promtool(), "test", "rules", "alerts_test.yml"], cwd=HERE,
                          capture_output=True, text=True)
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout


def test_every_exposed_series_is_documented(store, tmp_settings, load):
    doc = (HERE.parents[1] / "docs" / "metrics.md").read_text(encoding="utf-8")
    histogram = "mltrace_component_run_duration_seconds"
    names = {histogram if n.startswith(histogram) else n for n in exposed_names(store, tmp_settings, load)
             if not n.startswith("mltrace_collector_") and not n.endswith("_created")}
    assert len(names) >= 15
    missing = sorted(n for n in names if f"`{n}`" not in doc)
    assert not missing, f"series missing from docs/metrics.md: {missing}"
