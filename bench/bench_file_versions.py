"""Per-call cost of file versions: a decorated run whose inputs are two 10 MB local files.

Variants, interleaved round by round in this process (the order rotated every round, since
the slot a variant runs in shifts it by a few microseconds), all through the SDK's real export path
(a no-op exporter behind the SDK's BatchProcessor, as bench_sdk.py does), decorated the way
mltrace's docs write it (``@mltrace.register(name, inputs=[...], outputs=[...])``):

* baseline: 2 inputs and 2 outputs whose names are not files (one lstat each, no version);
* the same run whose two inputs are 10 MB files left unchanged between calls: each call costs
  one lstat per name and a cache hit (target: within 10% of the baseline's overhead);
* the same files changed before every call (their mtime bumped, outside the timed call), so
  each call re-hashes 20 MB: the hashing cost per MB (files in the page cache).

Then the baseline and the unchanged files again, with the SDK's real destination instead of the
no-op exporter (each run appended to the durable queue before the call returns; no collector),
the decorator as users run it.

    python bench/bench_file_versions.py            # full run (about 30 s)
    python bench/bench_file_versions.py --quick    # fewer rounds
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import mltrace_otel as mltrace
from mltrace_otel.sdk import export, files

FILE_MB = 10


class NoopExporter(SpanExporter):
    """Accepts every batch and does nothing (isolates the per-call cost)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def per_call_ns(fn: Callable[[], object], n: int,
                before: Callable[[], object] | None = None) -> tuple[float, float]:
    """(wall-clock, CPU time of this thread) in ns per call of fn; ``before`` runs ahead of each
    call, outside the timing."""
    if before is None:
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        for _ in range(n):
            fn()
        return (time.perf_counter_ns() - t0) / n, (time.thread_time_ns() - c0) / n
    wall = cpu = 0
    for _ in range(n):
        before()
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        fn()
        wall += time.perf_counter_ns() - t0
        cpu += time.thread_time_ns() - c0
    return wall / n, cpu / n


def report(samples: dict[str, list[tuple[float, float]]],
           baseline_name: str) -> dict[str, tuple[float, float]]:
    """Print each variant's median overhead (wall, CPU) and its ratio to the baseline's; return
    the overheads."""
    def med(k: str, i: int) -> float:
        return statistics.median(s[i] for s in samples[k])

    over = {k: (med(k, 0) - med("function alone", 0), med(k, 1) - med("function alone", 1))
            for k in samples}
    bw, bc = over[baseline_name]
    print(f"{'variant':46} {'wall (us)':>10} {'vs baseline':>12} {'CPU (us)':>10} {'vs baseline':>12}")
    for k, (w, c) in over.items():
        if k != "function alone":
            print(f"{k:46} {w / 1000:10.2f} {w / bw:11.2f}x {c / 1000:10.2f} {c / bc:11.2f}x")
    return over


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    rounds, n, n_changed = (7, 500, 3) if args.quick else (21, 2000, 5)

    work_dir = tempfile.mkdtemp(prefix="mltrace-bench-files-")
    os.chdir(work_dir)
    Path("data").mkdir()
    paths = ("data/a.bin", "data/b.bin", "data/c.bin", "data/d.bin")  # c, d: the changed ones
    for p in paths:
        Path(p).write_bytes(os.urandom(FILE_MB << 20))
    while any(files._racy(os.stat(p)) for p in paths):
        time.sleep(0.05)  # files older than the cache's racy window, like any file not just written

    export.configure(exporter=NoopExporter(), batch=True)

    def work() -> None:
        return None

    outs = ["features_table", "stats_table"]
    not_files = mltrace.register("featuregen", inputs=["raw_table", "lookup_table"], outputs=outs)(work)
    unchanged = mltrace.register("featuregen", inputs=["data/a.bin", "data/b.bin"], outputs=outs)(work)
    changed = mltrace.register("featuregen", inputs=["data/c.bin", "data/d.bin"], outputs=outs)(work)
    bump = [0]

    def touch() -> None:  # a new mtime and ctime: the cached versions no longer apply
        bump[0] += 1
        for p in ("data/c.bin", "data/d.bin"):
            os.utime(p, ns=(bump[0] * 10**9, bump[0] * 10**9))

    variants: dict[str, tuple[Callable[[], object], int, Callable[[], object] | None]] = {
        "function alone": (work, n, None),
        "2 in / 2 out, names not files (baseline)": (not_files, n, None),
        f"2 x {FILE_MB} MB input files, unchanged (cached)": (unchanged, n, None),
        f"2 x {FILE_MB} MB input files, changed every call": (changed, n_changed, touch),
    }
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for fn, _, before in variants.values():  # warm up (git lookup, page cache, code paths)
        per_call_ns(fn, 3, before)
    names = list(variants)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotated: no slot bias
            fn, count, before = variants[name]
            gc.collect()
            samples[name].append(per_call_ns(fn, count, before))
        export.flush()

    # raw hashing throughput, for comparison: blake2b over 10 MB in memory
    blob = os.urandom(FILE_MB << 20)
    t0 = time.perf_counter_ns()
    for _ in range(5):
        hashlib.blake2b(blob, digest_size=16)
    mem_ns_per_mb = (time.perf_counter_ns() - t0) / (5 * FILE_MB)

    base_name = "2 in / 2 out, names not files (baseline)"
    print(f"python {sys.version.split()[0]}, {rounds} rounds x {n} calls ({n_changed} for the changed "
          f"files), medians of the overhead per call over the undecorated function (wall-clock, and "
          f"CPU time of the calling thread); hash limit {files.hash_limit() >> 20} MB")
    over = report(samples, base_name)
    cached = f"2 x {FILE_MB} MB input files, unchanged (cached)"
    print(f"\nunchanged files / baseline overhead = {over[cached][0] / over[base_name][0]:.2f}x wall, "
          f"{over[cached][1] / over[base_name][1]:.2f}x CPU (target <= 1.10x)")
    changed = over[f"2 x {FILE_MB} MB input files, changed every call"]
    per_mb = [(changed[i] - over[base_name][i]) / (2 * FILE_MB) for i in (0, 1)]
    print(f"hashing changed files: {per_mb[0] / 1e6:.2f} ms per MB wall "
          f"({1e3 / (per_mb[0] / 1e6):.0f} MB/s), {per_mb[1] / 1e6:.2f} ms CPU; "
          f"blake2b in memory: {mem_ns_per_mb / 1e6:.2f} ms per MB")
    info = files.cache_info()
    print(f"version cache: {info.hits} hits, {info.hashed} files hashed; "
          f"spans exported {mltrace.delivery_stats().exported}, dropped {mltrace.delivery_stats().dropped}")
    durable(rounds, n, work, {"2 in / 2 out, names not files (baseline)": not_files,
                              f"2 x {FILE_MB} MB input files, unchanged (cached)": unchanged})
    export.reset()
    for p in paths:
        os.unlink(p)
    os.rmdir("data")
    os.chdir("/")
    os.rmdir(work_dir)
    return 0


def durable(rounds: int, n: int, work: Callable[[], object], runs: dict[str, Callable[[], object]]) -> None:
    """The same comparison through the real destination: the durable append (to a spool in a
    temporary MLTRACE_DIR, no collector), interleaved and rotated the same way."""
    from mltrace_otel.settings import Settings

    with tempfile.TemporaryDirectory(prefix="mltrace-bench-spool-") as d:
        export.configure(settings=Settings.from_env({}, mltrace_dir=Path(d)))
        variants = {"function alone": work, **runs}
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        for fn in variants.values():
            per_call_ns(fn, 50)
        names = list(variants)
        for r in range(rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                gc.collect()
                samples[name].append(per_call_ns(variants[name], n))
            export.flush()
        print("\nwith the real destination (durable append to the spool, no collector):")
        base_name, cached = runs
        over = report(samples, base_name)
        print(f"unchanged files / baseline overhead = {over[cached][0] / over[base_name][0]:.2f}x wall, "
              f"{over[cached][1] / over[base_name][1]:.2f}x CPU (target <= 1.10x); spooled "
              f"{mltrace.delivery_stats().spooled}, dropped {mltrace.delivery_stats().dropped}")

if __name__ == "__main__":
    raise SystemExit(main())
