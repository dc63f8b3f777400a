"""A pipeline process for the crash test: logs runs with the mltrace SDK, exporting over OTLP.

    python tests/collector/pipeline_worker.py WORKER_ID RUNS MARKER_DIR

Logs RUNS/2 runs, flushes them (over OTLP, to the collector), writes MARKER_DIR/<id>.half, then
logs the other half without waiting. Every run writes output ``w<id>/item-<i>``. Settings come
from the environment (OTEL_EXPORTER_OTLP_ENDPOINT, MLTRACE_DIR): OTLP first, the spool when the
collector is gone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mltrace_otel as mltrace


def main(worker: int, runs: int, marker_dir: Path) -> None:
    @mltrace.register("crash_step", output_vars=["out"])
    def step(i: int) -> None:
        out = f"w{worker}/item-{i}"  # noqa: F841 - read by the decorator

    half = runs // 2
    for i in range(half):
        step(i)
    mltrace.flush()
    (marker_dir / f"{worker}.half").write_text(str(mltrace.delivery_stats()))
    for i in range(half, runs):
        step(i)
    mltrace.flush()
    (marker_dir / f"{worker}.done").write_text(str(mltrace.delivery_stats()))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
