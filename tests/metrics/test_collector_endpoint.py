"""The collector's /metrics carries the pipeline series: a pipeline exports its runs over real
OTLP/HTTP to a real collector, and its /metrics shows them next to the collector's own health."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import mltrace_otel as mltrace
from mltrace_otel.collector.server import Collector
from mltrace_otel.sdk import config, export


@pytest.fixture
def collector(tmp_settings, store) -> Iterator[Collector]:
    c = Collector(tmp_settings.replace(otlp_http_port=0, otlp_grpc_port=0, batch_delay_s=0.05), store,
                  grpc=False, drain_every_s=0)
    c.start()
    try:
        yield c
    finally:
        c.stop()


def scrape(url: str) -> dict[tuple, float]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_collector_metrics_show_runs_and_output_distribution(collector, tmp_settings):
    export.reset()
    config.clear_overrides()
    export.configure(settings=tmp_settings.replace(export="otlp", otlp_endpoint=collector.addresses.http_url),
                     sync=True)
    try:
        score = mltrace.Component("score", owner="ml")

        @score.run(outputs=["scores"])
        def run(mu: float) -> np.ndarray:
            return np.random.default_rng(3).normal(mu, 1.0, 2000)

        run(5.0)
        run(5.0)
        assert mltrace.delivery_stats().exported == 2
    finally:
        export.reset()
        config.clear_overrides()

    url = collector.addresses.http_url + "/metrics"
    runs = ("mltrace_component_runs_total", (("component", "score"), ("status", "ok")))
    deadline = time.monotonic() + 30  # the store read is cached for a few seconds
    values = scrape(url)
    while values.get(runs) != 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        values = scrape(url)
    assert values.get(runs) == 2
    p50 = ("mltrace_output_quantile", (("column", ""), ("component", "score"), ("output", "scores"),
                                       ("quantile", "0.5"), ("window", "last_run")))
    assert values[p50] == pytest.approx(5.0, rel=0.02)
    assert values[("mltrace_metrics_store_up", ())] == 1
    assert sum(v for (name, _), v in values.items() if name == "mltrace_collector_spans_received_total") >= 2
