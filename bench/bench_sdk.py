"""Per-call overhead of a decorated mltrace-otel run vs a bare OpenTelemetry SDK span.

Both sides run in this process, interleaved round by round, on private TracerProviders with the
same no-op exporter behind a BatchSpanProcessor. The workload is mltrace's common case: a
decorated function with 2 inputs and 2 outputs, no auto_log. The bare span carries exactly the
attributes the mltrace run carries (copied from a real run) and is made the current span, as
the run is. Overhead = time per call minus the time of calling the undecorated function.

    python bench/bench_sdk.py            # full run (about 20 s)
    python bench/bench_sdk.py --quick    # fewer rounds

Target: median mltrace overhead <= 1.5x the bare span's.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import mltrace_otel as mltrace
from mltrace_otel.sdk import export


class NoopExporter(SpanExporter):
    """Accepts every batch and does nothing (isolates the per-call cost)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def per_call_ns(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t0) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    rounds, n = (7, 1000) if args.quick else (21, 2000)

    def work(i: int = 0) -> None:
        return None

    # one real run, to copy its attributes onto the bare span
    mem = InMemorySpanExporter()
    export.configure(exporter=mem)
    decorated = mltrace.register("featuregen", inputs=["raw.csv", "lookup.csv"],
                                 outputs=["features.pq", "stats.csv"])(work)
    decorated()
    attrs = dict(mem.get_finished_spans()[0].attributes)

    # the measured configuration: same no-op exporter, batched, for both sides
    export.configure(exporter=NoopExporter(), batch=True)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoopExporter(), max_queue_size=export.MAX_QUEUE_SPANS,
                                                   schedule_delay_millis=export.SCHEDULE_DELAY_MS))
    tracer = provider.get_tracer("bare")

    def bare_span() -> None:
        with tracer.start_as_current_span("featuregen", kind=SpanKind.INTERNAL, attributes=attrs):
            work()

    def with_vars() -> None:
        captured()

    @mltrace.register("featuregen", input_vars=["src"], output_vars=["dst"])
    def captured() -> None:
        src = ["raw.csv", "lookup.csv"]  # noqa: F841
        dst = ["features.pq", "stats.csv"]  # noqa: F841

    returns_float = mltrace.register("featuregen", inputs=["raw.csv", "lookup.csv"],
                                     outputs=["features.pq", "stats.csv"])(lambda: 0.5)

    variants: dict[str, Callable[[], object]] = {
        "function alone": work,
        "bare OTel span": bare_span,
        "mltrace @register (2 in, 2 out)": decorated,
        "... returning a float (output stats event)": returns_float,
        "... with input_vars/output_vars (locals)": with_vars,
    }
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():  # warm up (git lookup, code paths)
        per_call_ns(fn, 200)
    for _ in range(rounds):
        for name, fn in variants.items():
            gc.collect()
            samples[name].append(per_call_ns(fn, n))
        export.flush()
        provider.force_flush()

    base = statistics.median(samples["function alone"])
    med = {k: statistics.median(v) for k, v in samples.items()}
    bare = med["bare OTel span"] - base
    print(f"python {sys.version.split()[0]}, {rounds} rounds x {n} calls, median per call")
    print(f"{'variant':44} {'per call (us)':>14} {'overhead (us)':>14} {'vs bare span':>13}")
    for k, v in med.items():
        over = v - base
        ratio = f"{over / bare:.2f}x" if k != "function alone" else ""
        print(f"{k:44} {v / 1000:14.2f} {over / 1000:14.2f} {ratio:>13}")
    ratio = (med["mltrace @register (2 in, 2 out)"] - base) / bare
    print(f"\nmltrace overhead / bare OTel span overhead = {ratio:.2f}x (target <= 1.5x)")
    stats = mltrace.delivery_stats()
    print(f"spans exported: mltrace {stats.exported}, dropped {stats.dropped}")
    durable(rounds, n, work, med["bare OTel span"] - base, base)
    export.reset()
    provider.shutdown()
    return 0


def durable(rounds: int, n: int, work: Callable[[], None], bare: float, base: float) -> None:
    """The real destination with no collector: each run appended to the durable queue (the spool)
    before the call returns. Its per-call cost beside the bare span, the append alone, and the
    calls per second a tight loop sustains."""
    import tempfile
    from pathlib import Path

    from mltrace_otel.settings import Settings

    with tempfile.TemporaryDirectory(prefix="mltrace-bench-") as d:
        export.configure(settings=Settings.from_env({}, mltrace_dir=Path(d)))
        decorated = mltrace.register("featuregen", inputs=["raw.csv", "lookup.csv"],
                                     outputs=["features.pq", "stats.csv"])(work)
        per_call_ns(decorated, 200)
        samples = []
        for _ in range(rounds):
            gc.collect()
            samples.append(per_call_ns(decorated, n))
            export.flush()
        over = statistics.median(samples) - base
        print(f"{'mltrace @register, durable append (spool)':44} {statistics.median(samples) / 1000:14.2f} "
              f"{over / 1000:14.2f} {over / bare:>12.2f}x")
        calls = 50_000
        t0 = time.perf_counter()
        for _ in range(calls):
            decorated()
        rate = calls / (time.perf_counter() - t0)
        export.flush()
        stats = mltrace.delivery_stats()
        print(f"tight loop: {rate:,.0f} calls/s sustained; spooled {stats.spooled}, dropped "
              f"{stats.dropped}, calls that waited {stats.waits}")


if __name__ == "__main__":
    raise SystemExit(main())
