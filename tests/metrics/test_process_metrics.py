"""In-process metrics for long-running processes: the same series, from the process's own runs."""

from __future__ import annotations

import urllib.request

import numpy as np
from metrics_helpers import RunSpec, SpanFactory
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mltrace_otel.metrics import MetricsSpanProcessor, register_store_metrics, serve_process_metrics

RNG = np.random.default_rng(11)
RUNS = [
    RunSpec("predict", ago_s=90, duration_s=0.3, outputs={"preds": RNG.normal(0, 1, 500)},
            tests=[("Range", "testRange", True)]),
    RunSpec("predict", ago_s=60, duration_s=0.7, outputs={"preds": RNG.normal(3, 1, 500)},
            tests=[("Range", "testRange", False)], failed=True),
    RunSpec("clean", ago_s=30, duration_s=12.0, outputs={"rows": 1234}),
]


def samples(registry: CollectorRegistry, prefixes: tuple[str, ...]) -> dict[tuple, float]:
    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            if s.name.startswith(prefixes):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_processor_exposes_the_same_series_as_the_store(store, tmp_settings):
    factory = SpanFactory()
    proc_registry, store_registry = CollectorRegistry(), CollectorRegistry()
    processor = MetricsSpanProcessor(tmp_settings)
    proc_registry.register(processor)
    factory.add_processor(processor)
    store.insert_spans(factory.emit(RUNS))
    register_store_metrics(store_registry, store, tmp_settings)

    shared = ("mltrace_component_runs", "mltrace_component_run_duration", "mltrace_component_tests",
              "mltrace_component_last_success", "mltrace_output_")
    from_process, from_store = samples(proc_registry, shared), samples(store_registry, shared)
    assert from_process.keys() == from_store.keys()
    for key, v in from_store.items():
        tolerance = 0.002 if v > 1e9 else 1e-9 * max(1.0, abs(v))  # timestamps: the store keeps ms
        assert abs(from_process[key] - v) <= tolerance, key
    errors = ("mltrace_component_runs_total", (("component", "predict"), ("status", "error")))
    assert from_process[errors] == 1
    p50 = ("mltrace_output_quantile", (("column", ""), ("component", "predict"), ("output", "preds"),
                                       ("quantile", "0.5"), ("window", "last_run")))
    assert 2.7 < from_process[p50] < 3.3


def test_processor_ignores_non_run_spans_and_never_raises(tmp_settings):
    factory = SpanFactory()
    processor = MetricsSpanProcessor(tmp_settings)
    factory.add_processor(processor)
    with factory.tracer.start_as_current_span("http request"):
        pass
    processor.on_end(object())  # type: ignore[arg-type]  # garbage in: logged, not raised
    assert processor.snapshot().runs == {}


def test_serve_process_metrics_serves_over_http(tmp_settings):
    factory = SpanFactory()
    registry = CollectorRegistry()
    pm = serve_process_metrics(0, host="127.0.0.1", registry=registry, settings=tmp_settings,
                               provider=factory.provider)
    try:
        factory.emit(RUNS[:1])
        with urllib.request.urlopen(f"http://127.0.0.1:{pm.port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        assert 'mltrace_component_runs_total{component="predict",status="ok"} 1.0' in text
        assert 'mltrace_output_count{column="",component="predict",output="preds"} 500.0' in text
    finally:
        pm.stop()


def test_endpoint_process_serves_its_own_runs_through_the_sdk(tmp_settings):
    import mltrace_otel as mltrace
    from mltrace_otel.sdk import config, export

    export.reset()
    config.clear_overrides()
    export.configure(settings=tmp_settings, exporter=InMemorySpanExporter())
    pm = serve_process_metrics(0, registry=CollectorRegistry(), settings=tmp_settings)  # SDK's provider
    try:
        endpoint = mltrace.Component("scorer", owner="ml")

        @endpoint.run(outputs=["scores"], endpoint=True)
        def score(xs: list[float]) -> np.ndarray:
            return np.asarray(xs) * 2

        score([1.0, 2.0, 3.0])
        score([10.0])
        with urllib.request.urlopen(f"http://127.0.0.1:{pm.port}/metrics", timeout=10) as resp:
            fams = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
        values = {(s.name, tuple(sorted(s.labels.items()))): s.value
                  for f in fams.values() for s in f.samples}
        series = (("column", ""), ("component", "scorer"), ("output", "scores"))
        assert values[("mltrace_component_runs_total", (("component", "scorer"), ("status", "ok")))] == 2
        assert values[("mltrace_output_count", series)] == 1  # the latest request
        assert values[("mltrace_output_max", series)] == 20.0
        window = series + (("quantile", "0.01"), ("window", "last_10_runs"))
        assert abs(values[("mltrace_output_quantile", window)] - 2.0) <= 0.02  # merged over requests
    finally:
        pm.stop()
        export.reset()
        config.clear_overrides()
