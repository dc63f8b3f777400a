"""Cost of output statistics (SDK side) and of a /metrics read of the store (collector side).

1. ``output_events`` on a float64 array of n values vs a baseline a user would write by hand for
   the same information (``np.nanquantile(x, [.01, .1, .5, .9, .99])`` plus ``np.nanmean``),
   both in this process, interleaved, median of rounds.
2. One full /metrics refresh (every aggregate query + sketch merges + exposition) over an
   embedded store holding R runs of C components, each run with one 1000-value output, vs a
   baseline ``store.count_runs()`` on the same store.

    python bench/bench_metrics.py            # about 30 s
    python bench/bench_metrics.py --quick    # smaller store, fewer rounds
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

from mltrace_otel import conventions as C
from mltrace_otel.metrics import register_store_metrics
from mltrace_otel.sdk.stats import output_events
from mltrace_otel.settings import Settings


def median_time(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_stats(rounds: int) -> None:
    rng = np.random.default_rng(0)
    print("output_events vs np.nanquantile(5 quantiles) + np.nanmean")
    for n in (1_000, 100_000, 1_000_000):
        x = rng.normal(0, 1, n)
        ours = median_time(lambda x=x: output_events({"preds": x}), rounds)
        base = median_time(lambda x=x: (np.nanquantile(x, [.01, .1, .5, .9, .99]), np.nanmean(x)), rounds)
        size = len(output_events({"preds": x})[0][C.STATS_SKETCH])
        print(f"  n={n:>9,}: {ours * 1e3:8.2f} ms vs {base * 1e3:8.2f} ms  ratio {ours / base:5.2f}  "
              f"sketch {size:,} bytes")


def bench_scrape(runs: int, components: int, rounds: int) -> None:
    from mltrace_otel.store import open_store

    d = Path(tempfile.mkdtemp())
    settings = Settings.from_env({}, mltrace_dir=d, store_url=f"chdb://{d}/store?database=bench")
    rng = np.random.default_rng(1)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(C.SCOPE_NAME)
    now = time.time_ns()
    with open_store(settings) as store:
        for i in range(runs):
            comp = f"component_{i % components}"
            start = now - (runs - i) * 1_000_000_000
            span = tracer.start_span(comp, attributes={C.COMPONENT_NAME: comp, C.RUN_OUTPUTS: [f"out_{i}"]},
                                     start_time=start)
            for ev in output_events({"preds": rng.normal(i % 7, 1, 1000)}):
                span.add_event(C.EVENT_OUTPUT_STATS, ev)
            span.add_event(C.EVENT_TEST, {C.TEST_NAME: "T", C.TEST_METHOD: "testA",
                                          C.TEST_PASSED: i % 5 != 0})
            span.end(end_time=start + 500_000_000)
            if len(exporter.get_finished_spans()) >= 500:
                store.insert_spans(exporter.get_finished_spans())
                exporter.clear()
        if exporter.get_finished_spans():
            store.insert_spans(exporter.get_finished_spans())
        registry = CollectorRegistry()
        collector = register_store_metrics(registry, store, settings)

        def scrape() -> None:
            collector.invalidate()
            generate_latest(registry)

        scrape()
        ours = median_time(scrape, rounds)
        base = median_time(store.count_runs, rounds)
        cached = median_time(lambda: generate_latest(registry), rounds)
        print(f"/metrics refresh over {runs:,} runs of {components} components: {ours * 1e3:.1f} ms "
              f"vs count_runs {base * 1e3:.1f} ms  ratio {ours / base:.1f}; cached scrape "
              f"{cached * 1e3:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    bench_stats(5 if args.quick else 15)
    bench_scrape(1000 if args.quick else 5000, 50, 3 if args.quick else 7)


if __name__ == "__main__":
    main()
