"""The CLI's ``recent`` through a holder's query API (``/api/v1``) vs a direct read of the store.

    python bench/bench_api.py [--runs 10000] [--repeat 15] [--limit 10]

Builds a throwaway embedded store (MLTRACE_DIR under a temp dir) with --runs runs (spooled as
OTLP batches, then drained), and times, as medians over --repeat calls:

- **direct**: ``mltrace recent --json -n LIMIT`` as a new process with nobody holding the store
  (it opens the engine, checks the schema, drains the spool, asks, closes);
- **api**: the same command while another process holds the store and announces its API (a
  :class:`~mltrace_otel.web_api.StoreHost` on a loopback port, as ``mltrace collector`` or a
  notebook using ``mltrace_otel.api`` runs it): the CLI finds the announcement and asks over HTTP;
- the same question in one process, warm: ``StoreQueries.recent`` on the open store vs
  ``ApiClient.recent`` against the holder (what a long-lived caller pays per question).

The outputs of the two CLI paths are checked to be equal. Reported: each median and the ratio
api / direct (issue 15's target: at most 1.2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

HOLDER = """
import sys
from mltrace_otel.settings import Settings
from mltrace_otel.store import open_store
from mltrace_otel.web_api import StoreHost
store = open_store(Settings.from_env())
host = StoreHost(store).start()
print(host.url, host.token, flush=True)
sys.stdin.readline()
store.close()
"""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLTRACE_", "OTEL_"))}
    env.update(MLTRACE_DIR=str(home), MLTRACE_STORE_WAIT_S="30", NO_COLOR="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return env


def build(home: Path, runs: int) -> None:
    """Spool ``runs`` runs (500 per batch, chains of 10 components) and drain them, in a child."""
    code = f"""
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from mltrace_otel import conventions as c, spool
from mltrace_otel.settings import Settings
from mltrace_otel.store import open_store
from mltrace_otel.store.ingest import encode_spans
settings = Settings.from_env()
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("bench")
for start in range(0, {runs}, 500):
    for i in range(start, min({runs}, start + 500)):
        k = i % 10
        with tracer.start_as_current_span(f"stage_{{k}}", attributes={{
                c.COMPONENT_NAME: f"stage_{{k}}", c.RUN_INPUTS: [f"p{{i // 10}}/s{{k}}"],
                c.RUN_OUTPUTS: [f"p{{i // 10}}/s{{k + 1}}"]}}):
            pass
    spool.write_batch(settings.spool_dir, encode_spans(exporter.get_finished_spans()).SerializeToString())
    exporter.clear()
with open_store(settings) as store:
    print(store.count_runs())
"""
    r = subprocess.run([sys.executable, "-c", code], env=_env(home), capture_output=True, text=True,
                       check=True)
    assert int(r.stdout.split()[-1]) == runs, r.stdout


def cli_median(home: Path, limit: int, repeat: int) -> tuple[float, str]:
    """Median wall seconds of ``mltrace recent --json -n LIMIT`` as a new process; its output."""
    cmd = [sys.executable, "-m", "mltrace_otel.cli.app", "recent", "--json", "-n", str(limit)]
    times, out = [], ""
    for i in range(repeat + 1):
        t = time.perf_counter()
        r = subprocess.run(cmd, env=_env(home), capture_output=True, text=True, check=True)
        if i:  # the first call warms the page cache
            times.append(time.perf_counter() - t)
        out = r.stdout
    return statistics.median(times), out


def in_process(home: Path, url: str, token: str, limit: int, repeat: int) -> float:
    """Median wall seconds of ApiClient.recent against the holder (warm, this process)."""
    from mltrace_otel.client import ApiClient

    client = ApiClient(url, token)
    client.recent(limit)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        client.recent(limit)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def direct_in_process(home: Path, limit: int, repeat: int) -> float:
    """Median wall seconds of StoreQueries.recent on the store opened in a child process."""
    code = f"""
import statistics, time
from mltrace_otel.settings import Settings
from mltrace_otel.shapes import StoreQueries
from mltrace_otel.store import open_store
with open_store(Settings.from_env()) as store:
    q = StoreQueries(store)
    q.recent({limit})
    times = []
    for _ in range({repeat}):
        t = time.perf_counter()
        q.recent({limit})
        times.append(time.perf_counter() - t)
print(statistics.median(times))
"""
    r = subprocess.run([sys.executable, "-c", code], env=_env(home), capture_output=True, text=True,
                       check=True)
    return float(r.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--limit", type=int, default=10)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mltrace-bench-api-"))
    home = tmp / "home"
    try:
        t = time.perf_counter()
        build(home, args.runs)
        print(f"store: {args.runs} runs ({time.perf_counter() - t:.1f} s to build)")
        direct_s, direct_out = cli_median(home, args.limit, args.repeat)
        direct_q = direct_in_process(home, args.limit, args.repeat)
        holder = subprocess.Popen([sys.executable, "-c", HOLDER], env=_env(home), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            url, token = holder.stdout.readline().split()
            api_s, api_out = cli_median(home, args.limit, args.repeat)
            api_q = in_process(home, url, token, args.limit, args.repeat)
        finally:
            holder.communicate("\n", timeout=60)
        assert json.loads(api_out) == json.loads(direct_out), "the two paths answered differently"
        print(f"CLI `recent --json -n {args.limit}`, new process, median of {args.repeat}:")
        print(f"  direct read      {direct_s * 1000:8.1f} ms")
        print(f"  through the API  {api_s * 1000:8.1f} ms   ratio api/direct {api_s / direct_s:.2f}")
        print(f"one question in a warm process (recent, {args.limit} runs), median of {args.repeat}:")
        print(f"  StoreQueries     {direct_q * 1000:8.2f} ms")
        print(f"  ApiClient        {api_q * 1000:8.2f} ms   ratio {api_q / direct_q:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
