"""Store benchmark: queries on a store holding 1,000,000 runs (embedded chDB).

    python bench/bench_store.py [--runs 1000000] [--repeat 20] [--dir DIR]

Builds a throwaway store under a temp dir: 100,000 ten-stage chain pipelines generated
server-side (INSERT ... SELECT FROM numbers() into otel_traces; the materialized views fill the
mltrace tables), merged (OPTIMIZE FINAL, the state background merges reach at rest). Then times,
as medians over --repeat calls: trace of a final output (10 levels deep), review of 100 flagged
outputs (and scoped to one component), history (10 runs; again as a process's first call for
that component, before the fresher-run windows can be guessed) and recent (10 runs), inspect
(which walks the run's trace for inherited staleness and reads what changed since the previous
run), impact, stale runs (of every component, of one, direct causes only) and components, and
reports bytes per run on disk. A last phase adds one run (a newer stage_0 rewriting the last
pipeline's first output: stage_1 is stale, stages 2..9 inherit it) and times trace, stale runs
and inspect with staleness present (--no-stale-phase skips it). Each time is
also printed as a ratio to a trivial query (SELECT 1) measured in the same process, with the CPU
time of the process (less sensitive to other load on the machine). --dir keeps the store, so a
second run skips building it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def median_ms(fn, repeat: int) -> tuple[float, float]:  # noqa: ANN001
    """Median wall time and median CPU time of this process (chDB runs in-process, so CPU time
    counts the engine's threads too and is less sensitive to other load on the machine)."""
    fn()  # warm
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def supersede(store, pointer: str, pipelines: int) -> None:  # noqa: ANN001
    """Log one newer stage_0 run rewriting ``pointer`` (once per store: skipped when present)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mltrace_otel import conventions as cv

    if len(store.pointer(pointer).producers) > 1:
        return
    mem = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(mem))
    start = (1_767_225_600 + pipelines * 2 + 3600) * 1_000_000_000  # an hour after the last run
    span = provider.get_tracer("bench").start_span(
        "stage_0", start_time=start,
        attributes={cv.COMPONENT_NAME: "stage_0", cv.RUN_INPUTS: ["raw_new"], cv.RUN_OUTPUTS: [pointer]})
    span.end(end_time=start + 50_000_000)
    result = store.insert_spans(mem.get_finished_spans())
    assert result.rejected == 0, result.errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--dir", type=Path, default=None, help="store directory (default: a temp dir)")
    ap.add_argument("--no-stale-phase", action="store_true",
                    help="skip the last phase, which adds one run that makes the last pipeline stale "
                         "(on a kept --dir store, later runs then measure every query with it)")
    args = ap.parse_args()

    import bench_data

    from mltrace_otel.settings import Settings
    from mltrace_otel.store import open_store, queries, staleness

    root = args.dir or Path(tempfile.mkdtemp(prefix="mltrace-bench-"))
    settings = Settings.from_env({}, mltrace_dir=root, store_url=f"chdb://{root / 'store'}?database=bench")
    stages = 10
    with open_store(settings) as store:
        t = time.perf_counter()
        if store.count_runs() < args.runs or store.count_runs() > args.runs + 1:
            if store.count_runs():
                store.clean()
            bench_data.generate_chain_runs(store, args.runs, stages)
            bench_data.merge_all(store)
        n = store.count_runs()
        print(f"store: {n:,} runs ready in {time.perf_counter() - t:.1f} s "
              "(INSERT ... SELECT FROM numbers() into otel_traces, MVs fill the mltrace tables)")
        pipelines = n // stages
        last = pipelines - 1
        base = median_ms(lambda: store.query("baseline", "SELECT 1"), args.repeat)

        lin = store.trace(f"p{last}_s{stages - 1}")
        assert len(lin.nodes) == stages and lin.nodes[-1].depth == stages - 1, lin
        store.unflag_all()
        for i in range(100):
            store.flag(f"p{last - i}_s{stages - 1}")
        rv = store.review()
        assert len(rv.entries) == 100 * stages and rv.entries[0].count == 1
        assert len(store.history("stage_3", 10)) == 10 and len(store.recent(10)) == 10

        results = {
            "trace (10 levels deep)": (median_ms(lambda: store.trace(f"p{last}_s{stages - 1}"),
                                                 args.repeat), 50),
            "trace of an older output (10 levels)": (
                median_ms(lambda: store.trace(f"p{pipelines // 2}_s{stages - 1}"), args.repeat), None),
            "review of 100 flagged outputs": (median_ms(store.review, max(3, args.repeat // 4)), 1000),
            "history (10 runs)": (median_ms(lambda: store.history("stage_3", 10), args.repeat), 20),
            "history, first call (no window guess)": (median_ms(lambda: (
                staleness.forget_hints(store), store.history("stage_3", 10)), args.repeat), 20),
            "recent (10 runs)": (median_ms(lambda: store.recent(10), args.repeat), 20),
            "recent run ids (get_recent_run_ids, 10)": (
                median_ms(lambda: queries.recent_ids(store, 10), args.repeat), 20),
            "inspect (one run)": (median_ms(lambda: store.get_run(lin.nodes[3].run.id[:8]),
                                            args.repeat), None),
            "impact of a first run (9 downstream)": (
                median_ms(lambda: store.impact(f"p{last}_s0"), max(3, args.repeat // 4)), None),
            "stale runs (latest of each component)": (
                median_ms(store.stale_runs, max(3, args.repeat // 4)), None),
            "stale runs of one component (stage_9)": (
                median_ms(lambda: store.stale_runs("stage_9"), args.repeat), 100),
            "stale runs, direct causes only": (
                median_ms(lambda: store.stale_runs(direct=True), max(3, args.repeat // 4)), None),
            "review of 100 flagged outputs, scoped to one component": (
                median_ms(lambda: store.review(component="stage_9"), max(3, args.repeat // 4)), None),
            "components (with run counts)": (median_ms(store.components, max(3, args.repeat // 4)),
                                             None),
        }
        sizes = bench_data.bytes_on_disk(store)
        total = sum(sizes.values())
        store.unflag_all()

        # staleness present: a newer stage_0 run rewrites the last pipeline's first output, so
        # stage_1 of that pipeline is stale (newer upstream) and stages 2..9 inherit it
        if not args.no_stale_phase:
            supersede(store, f"p{last}_s0", pipelines)
            assert len(store.stale_runs()) == stages - 1
            assert store.stale_runs("stage_9")[0].stale_reasons[0].kind == "upstream_stale"
            results.update({
                "trace, every upstream run stale (10 levels)": (
                    median_ms(lambda: store.trace(f"p{last}_s{stages - 1}"), args.repeat), 50),
                "stale runs of one component, inherited 8 hops": (
                    median_ms(lambda: store.stale_runs("stage_9"), args.repeat), 100),
                "stale runs, 9 stale (latest of each component)": (
                    median_ms(store.stale_runs, max(3, args.repeat // 4)), None),
                "inspect a run with inherited staleness": (
                    median_ms(lambda: store.get_run(lin.nodes[0].run.id[:8]), args.repeat), None),
            })

    print(f"baseline SELECT 1: {base[0]:.2f} ms wall, {base[1]:.2f} ms CPU; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'query':54} {'wall ms':>9} {'CPU ms':>8} {'target':>8} {'x SELECT 1':>10}")
    for name, ((ms, cpu), target) in results.items():
        tgt = f"<= {target}" if target else ""
        print(f"{name:54} {ms:9.1f} {cpu:8.1f} {tgt:>8} {ms / base[0]:10.1f}")
    print(f"bytes per run on disk: {total / n:.0f} (all tables; "
          + ", ".join(f"{k} {v / n:.0f}" for k, v in sorted(sizes.items()) if v) + ")")
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
