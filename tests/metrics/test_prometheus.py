"""A real Prometheus server scrapes /metrics while a pipeline runs through the SDK; the series,
the dashboard's queries and the alert rules are read back through Prometheus's HTTP API."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, start_http_server

import mltrace_otel as mltrace
from mltrace_otel.metrics import register_store_metrics
from mltrace_otel.sdk import config, export

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

GRAFANA = resources.files("mltrace_otel.dashboards").joinpath("grafana")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, fn: Callable[[], Any], ok: Callable[[Any], bool], timeout_s: float = 60) -> Any:
    """Poll ``fn`` until ``ok(value)``; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout_s
    value: Any = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if ok(value):
                return value
        except OSError as e:
            value = e
        time.sleep(0.5)
    pytest.fail(f"gave up waiting for {what}; last value: {value!r}")


class Prometheus:
    """A real prometheus process with its own config and data dir, on a free loopback port."""

    def __init__(self, tmp: Path, target_port: int) -> None:
        binary = shutil.which("prometheus")
        assert binary, "the prometheus binary is missing: apt-get install -y prometheus"
        rules = tmp / "alerts.yml"
        rules.write_text(GRAFANA.joinpath("alerts.yml").read_text(encoding="utf-8"), encoding="utf-8")
        cfg = tmp / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files: ['{rules}']\n"
            "scrape_configs:\n  - job_name: mltrace\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n",
            encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def get(self, path: str, **params: str) -> Any:
        q = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{q}", timeout=10) as resp:
            body = resp.read().decode()
        return json.loads(body) if path.startswith("/api/") else body

    def query(self, expr: str) -> list[dict]:
        doc = self.get("/api/v1/query", query=expr)
        assert doc["status"] == "success", (expr, doc)
        return doc["data"]["result"]

    def value(self, expr: str) -> float | None:
        res = self.query(expr)
        return float(res[0]["value"][1]) if res else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def sdk_to_store(tmp_settings) -> Iterator[None]:
    """The SDK writes each run synchronously to tmp_settings' spool (the store drains it)."""
    export.reset()
    config.clear_overrides()
    export.configure(settings=tmp_settings, sync=True)
    yield
    export.reset()
    config.clear_overrides()


class RangeCheck(mltrace.Test):
    def testNoNulls(self, preds):  # noqa: N802 - mltrace's test naming
        if np.isnan(preds).any():
            raise ValueError("null predictions")


def test_prometheus_scrapes_pipeline_series_and_sees_the_prediction_shift(
        store, tmp_settings, tmp_path, sdk_to_store):
    predict = mltrace.Component("predict", owner="ml", afterTests=[RangeCheck])

    @predict.run(outputs=["predictions"])
    def serve(mu: float, nulls: int = 0) -> np.ndarray:
        preds = np.random.default_rng(int(mu * 10)).normal(mu, 1.0, 3000)
        preds[:nulls] = np.nan
        return preds

    serve(0.0)
    serve(0.0)
    store.drain_spool()

    registry = CollectorRegistry()
    register_store_metrics(registry, store, tmp_settings, cache_s=0.5)
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    prom = Prometheus(tmp_path, server.server_address[1])
    try:
        wait_for("prometheus ready", lambda: prom.get("/-/ready"), lambda body: "Ready" in body)
        p50 = ('mltrace_output_quantile{component="predict",output="predictions",'
               'window="last_run",quantile="0.5"}')
        before = wait_for("the first p50 sample", lambda: prom.value(p50), lambda v: v is not None)
        assert abs(before) < 0.1
        assert prom.value('mltrace_component_runs_total{component="predict",status="ok"}') == 2
        assert prom.value('mltrace_output_count{component="predict",output="predictions",column=""}') == 3000

        # the model's predictions shift; one run also returns NaNs, so its after-test fails
        serve(3.0)
        with pytest.raises(ValueError, match="null predictions"):
            serve(3.0, nulls=30)
        store.drain_spool()

        after = wait_for("the shifted p50", lambda: prom.value(p50), lambda v: v is not None and v > 2)
        assert after == pytest.approx(3.0, abs=0.1)
        # both levels are in Prometheus's history: the shift is a series
        moved = prom.value(f"max_over_time({p50}[5m]) - min_over_time({p50}[5m])")
        assert moved == pytest.approx(3.0, abs=0.15)
        assert prom.value('mltrace_component_runs_total{component="predict",status="error"}') == 1
        assert prom.value('mltrace_component_tests_total{component="predict",test="RangeCheck",'
                          'method="testNoNulls",result="failed"}') == 1
        assert prom.value('mltrace_output_nulls{component="predict",output="predictions"}') == 30
        assert prom.value('histogram_quantile(0.5, sum by (le) '
                          '(mltrace_component_run_duration_seconds_bucket{component="predict"}))') < 60
        last_ok = prom.value('mltrace_component_last_success_timestamp_seconds{component="predict"}')
        assert time.time() - 600 < last_ok <= time.time()

        # every dashboard query is valid PromQL here, and the main panels have data
        empty = []
        for panel in json.loads(GRAFANA.joinpath("mltrace.json").read_text(encoding="utf-8"))["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$component", ".*").replace("$output", ".*")
                if not prom.query(expr):
                    empty.append(panel["title"])
        assert "Output quantiles, latest run" not in empty and "Runs (all time)" not in empty

        # the example alert rules load and evaluate; the failing run fires its alerts
        groups = prom.get("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) == 8 and all(r["health"] == "ok" for r in rules), rules
        def firing_alerts() -> set[str]:
            alerts = prom.get("/api/v1/alerts")["data"]["alerts"]
            return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

        firing = wait_for("alerts firing", firing_alerts,
                          lambda names: {"MltraceTestsFailing", "MltraceRunsFailing"} <= names)
        assert "MltraceMetricsStoreDown" not in firing
    finally:
        prom.stop()
        server.shutdown()
        server.server_close()
