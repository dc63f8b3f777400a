"""Benchmark: sustained OTLP/HTTP protobuf ingest through the collector into the embedded store.

    python bench/bench_collector.py [--seconds 60] [--senders 4] [--spans 512] [--runs 3]
        [--env JE_MALLOC_CONF=...] [--no-baseline] [--engine-memory]

What it measures, in one run on this machine:

1. **baseline**: a bulk insert of pre-built rows (the same kind of spans, already rendered to
   otel_traces columns) straight into an embedded store, 5,120 rows per insert -- the floor
   any writer in Python pays (ClickHouse work incl. the mltrace materialized views, plus
   the insert body: ``ingest.insert_columns``, the writer's own path). Also
   ``Store.insert_otlp`` (render + insert) on one thread.
2. **collector**: ``python -m mltrace_otel.collector`` in a subprocess on its own embedded store;
   ``--senders`` processes POST ``--spans``-span protobuf requests over keep-alive HTTP/1.1
   for ``--seconds`` (after a warm-up), one request in flight per sender (``--connections``
   raises that); throughput = spans acknowledged (200) per second. Each
   request gets a fresh trace id, so no two inserted blocks are identical (ClickHouse would
   de-duplicate those and flatter the numbers). 429 answers are counted and retried after
   Retry-After, as OTel exporters do.
3. peak RSS (VmHWM) of the collector process; with ``--engine-memory``, also its
   ``mltrace_collector_engine_memory_bytes`` gauges every second (what the embedded engine's
   tracker and allocator hold), reported at the highest sample.

``--runs N`` repeats step 2 (a fresh collector and store each time) and prints the median rate
and the highest peak RSS: the machine's load moves single runs by several thousand spans/s.
``--env NAME=VALUE`` sets a variable for the collector process only (a trade-off curve over
``MLTRACE_INDEX_SPANS``, or the engine allocator's ``JE_MALLOC_CONF``).

Prints spans/s, the ratio collector / bulk insert, and writes bench/results/collector.json.
Spans look like mltrace runs: 9 attributes (4 string arrays), one resource with service.name.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = bytes(range(1, 17))  # the trace id senders replace per request


def make_request(n: int, seq: int, marker: bool = False) -> bytes:
    """A serialized ExportTraceServiceRequest of ``n`` run-like spans, one trace per request
    (the MARKER trace id, replaced per send, when ``marker``), status OK."""
    from otlp_requests import make_request as build

    return build(n, seq, trace_id=MARKER if marker else os.urandom(16), status_code=1)


def baseline(spans_per_request: int, total_rows: int) -> dict:
    """Bulk insert of pre-built rows, and insert_otlp on one thread, into a fresh store."""
    from mltrace_otel.settings import Settings
    from mltrace_otel.store import ingest, open_store

    per_insert = 5120
    n_inserts = max(2, total_rows // per_insert)
    bodies = [make_request(per_insert, 10_000 + k) for k in range(n_inserts * 2 + 1)]
    with tempfile.TemporaryDirectory() as d:
        store = open_store(Settings.from_env({}, mltrace_dir=Path(d)))
        ingest.insert_otlp(store, bodies[-1])  # warm-up
        t = time.perf_counter()
        cols = [ingest.rows_from_otlp(b) for b in bodies[:n_inserts]]
        render_s = time.perf_counter() - t
        t = time.perf_counter()
        for c in cols:
            ingest.insert_columns(store, c)
        bulk_s = time.perf_counter() - t
        t = time.perf_counter()
        for b in bodies[n_inserts:2 * n_inserts]:
            store.insert_otlp(b)
        otlp_s = time.perf_counter() - t
        store.close()
    rows = n_inserts * per_insert
    return {"rows": rows, "bulk_insert_spans_per_s": rows / bulk_s,
            "bench_process_peak_rss_mb": _peak_rss_mb(os.getpid()),
            "render_spans_per_s": rows / render_s, "insert_otlp_spans_per_s": rows / otlp_s}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sender(port: int, spans: int, seed: int, warmup: float, seconds: float, connections: int,
            out: mp.Queue) -> None:
    """One sender process: ``connections`` keep-alive connections, each one request at a time."""
    import threading

    templates = [make_request(spans, seed * 100 + k, marker=True) for k in range(4)]
    headers = {"Content-Type": "application/x-protobuf"}
    start = time.monotonic()
    measure_from, end = start + warmup, start + warmup + seconds
    totals = {"acked": 0, "refused": 0, "requests": 0}
    lock = threading.Lock()

    def loop(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        acked = refused = requests = 0
        k = c
        while True:
            now = time.monotonic()
            if now >= end:
                break
            body = templates[k % len(templates)].replace(MARKER, os.urandom(16))
            k += 1
            conn.request("POST", "/v1/traces", body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                if now >= measure_from and time.monotonic() <= end:
                    acked += spans
                    requests += 1
            else:
                refused += 1
                time.sleep(float(r.getheader("Retry-After") or 1))
        conn.close()
        with lock:
            totals["acked"] += acked
            totals["refused"] += refused
            totals["requests"] += requests

    threads = [threading.Thread(target=loop, args=(c,)) for c in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(totals)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_parts_mb(pid: int) -> dict[str, float]:
    """VmRSS / RssAnon / RssFile of a process in MiB (RssFile is mostly chDB's code pages)."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(line.split()[1]) / 1024
    return out


class _RssSampler:
    """Samples a process's resident memory every ``period_s`` from a thread: the peak alone
    (VmHWM) does not say whether the collector sits near it or touches it once per index
    insert."""

    def __init__(self, pid: int, period_s: float = 0.25, engine_port: int | None = None) -> None:
        import threading

        self.pid, self.period_s, self.samples = pid, period_s, []
        self.engine_port = engine_port  # also read the engine's memory gauges, every 4th sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        k = 0
        while not self._stop.wait(self.period_s):
            try:
                sample = _rss_parts_mb(self.pid)
            except OSError:
                return
            if self.engine_port is not None and k % 4 == 0:
                try:
                    sample.update(_engine_memory_mb(self.engine_port))
                except Exception as e:  # noqa: BLE001 - a failed scrape must not end the sampling
                    sample["engine_error"] = repr(e)
            self.samples.append(sample)
            k += 1

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        rss = sorted(s["VmRSS"] for s in self.samples) or [float("nan")]
        top = max(self.samples, key=lambda s: s["VmRSS"], default={})
        out = {"rss_p50_mb": rss[len(rss) // 2], "rss_p90_mb": rss[int(len(rss) * 0.9)],
               "rss_max_sampled_mb": rss[-1], "anon_at_max_mb": top.get("RssAnon", float("nan")),
               "file_at_max_mb": top.get("RssFile", float("nan")), "rss_samples": len(self.samples)}
        engine = [s for s in self.samples if "resident" in s]
        if engine:
            at = max(engine, key=lambda s: s["VmRSS"])
            out["engine_at_max_mb"] = {k: at[k] for k in ("VmRSS", "tracked", "allocated", "resident")}
            out["engine_allocated_max_mb"] = max(s["allocated"] for s in engine)
        return out


def collector_run(senders: int, spans: int, warmup: float, seconds: float, connections: int = 1,
                  native: bool = True, ack: str = "journaled",
                  extra_env: dict[str, str] | None = None, engine_memory: bool = False) -> dict:
    """Start the collector subprocess (with ``extra_env`` on top of the bench's environment),
    load it, measure; stop it with SIGTERM."""
    port, gport = _free_port(), _free_port()
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "MLTRACE_DIR": d, "MLTRACE_OTLP_HTTP_PORT": str(port),
               "MLTRACE_OTLP_GRPC_PORT": str(gport), "MLTRACE_NATIVE_INGEST": str(native).lower(),
               "MLTRACE_ACK": ack, **(extra_env or {})}
        proc = subprocess.Popen([sys.executable, "-m", "mltrace_otel.collector"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    c.request("GET", "/healthz")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        err = proc.stderr.read() if proc.poll() is not None else ""
                        raise RuntimeError("collector did not start: " + err) from None
                    time.sleep(0.2)
            out: mp.Queue = mp.Queue()
            procs = [mp.Process(target=_sender, args=(port, spans, i, warmup, seconds, connections, out))
                     for i in range(senders)]
            cpu0, threads0 = _cpu_seconds(proc.pid), _thread_cpu(proc.pid)
            # resident memory over the run and the drain
            sampler = _RssSampler(proc.pid, engine_port=port if engine_memory else None).__enter__()
            for p in procs:
                p.start()
            # spans indexed (queryable) during the measuring window: with the journaled
            # acknowledgement, the sustained rate (the bounded queue holds acks to it)
            time.sleep(warmup)
            indexed0, t0 = _scrape(port, "mltrace_collector_spans_indexed_total"), time.monotonic()
            time.sleep(seconds)
            indexed1, t1 = _scrape(port, "mltrace_collector_spans_indexed_total"), time.monotonic()
            results = [out.get(timeout=warmup + seconds + 300) for _ in procs]
            for p in procs:
                p.join()
            drain0 = time.monotonic()  # how long until everything acknowledged is queryable
            backlog = "mltrace_collector_index_backlog_spans"
            while _scrape(port, backlog) > 0 and time.monotonic() - drain0 < 120:
                time.sleep(0.05)
            drain_s = time.monotonic() - drain0
            cpu = _cpu_seconds(proc.pid) - cpu0
            threads = _thread_cpu(proc.pid)
            threads = {k: v - threads0.get(k, 0.0) for k, v in threads.items()}
            metrics = _metrics_text(port)
            rss = _peak_rss_mb(proc.pid)
            sampler.__exit__()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = -9
    acked = sum(r["acked"] for r in results)

    def metric(name: str) -> float:
        return next((float(line.split()[-1]) for line in metrics.splitlines()
                     if line.startswith(name + " ")), 0.0)

    committed = metric("mltrace_collector_spans_committed_total")
    batches = metric("mltrace_collector_batches_total") or 1.0
    insert_s = metric("mltrace_collector_insert_duration_seconds_sum")
    journaled = ack == "journaled"
    indexed_per_s = (indexed1 - indexed0) / (t1 - t0)
    return {"spans_per_s": min(acked / seconds, indexed_per_s), "acked_spans_per_s": acked / seconds,
            "indexed_spans_per_s": indexed_per_s, "journaled_ack": journaled,
            "backlog_indexed_after_s": drain_s,
            "mean_index_group_spans": metric("mltrace_collector_spans_indexed_total")
            / (metric("mltrace_collector_index_duration_seconds_count") or 1.0),
            "mean_index_s": metric("mltrace_collector_index_duration_seconds_sum")
            / (metric("mltrace_collector_index_duration_seconds_count") or 1.0),
            "acked_spans": acked, "committed_total": committed,
            "mean_batch_rows": committed / batches, "mean_insert_ms": 1000 * insert_s / batches,
            "refused_429_503": sum(r["refused"] for r in results), "peak_rss_mb": rss,
            "rss": sampler.summary(),
            "collector_cpu_s_per_s": cpu / (warmup + seconds), "exit_code": code,
            "cpu_us_per_span": 1e6 * cpu / max(committed, 1.0),
            "cpu_s_by_thread": dict(sorted(threads.items(), key=lambda kv: -kv[1]))}


def _metrics_text(port: int) -> str:
    """The collector's /metrics, as text."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def _scrape(port: int, name: str) -> float:
    """One series of the collector's /metrics (0 when absent)."""
    text = _metrics_text(port)
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")), 0.0)


def _engine_memory_mb(port: int) -> dict[str, float]:
    """The collector's ``engine_memory_bytes`` gauges, in MiB, by kind."""
    text = _metrics_text(port)
    prefix = 'mltrace_collector_engine_memory_bytes{kind="'
    return {line[len(prefix):line.index('"', len(prefix))]: float(line.split()[-1]) / 2**20
            for line in text.splitlines() if line.startswith(prefix)}


def _thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's threads, summed by thread name (chDB names its threads by
    role: query pipeline, merges, ...; Python's threads are all "python")."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            raw = (task / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _report(run: dict, args: argparse.Namespace, ratio: float | None) -> None:
    """Print one collector run."""
    vs = "" if ratio is None else f" ({ratio:.2f}x the bulk insert)"
    print(f"collector, {args.senders} senders x {args.connections} in flight x {args.spans} spans/request: "
          f"{run['spans_per_s']:>9,.0f} spans/s sustained{vs}")
    if run["journaled_ack"]:
        print(f"  journaled acknowledgement: {run['acked_spans_per_s']:,.0f} spans/s acknowledged, "
              f"{run['indexed_spans_per_s']:,.0f} spans/s indexed; everything acknowledged was "
              f"queryable {run['backlog_indexed_after_s']:.1f} s after the senders stopped; "
              f"index inserts of {run['mean_index_group_spans']:,.0f} spans on average, "
              f"{run['mean_index_s']:.2f} s each")
    else:
        print("  indexed acknowledgement: every acknowledged span was queryable when acknowledged")
    print(f"collector batches: {run['mean_batch_rows']:,.0f} rows on average, "
          f"{run['mean_insert_ms']:.0f} ms per insert")
    print(f"collector peak RSS {run['peak_rss_mb']:.0f} MiB, CPU {run['collector_cpu_s_per_s']:.2f} cores, "
          f"429/503 answers {run['refused_429_503']}, SIGTERM exit code {run['exit_code']}")
    m = run["rss"]
    print(f"collector resident memory over the run (every 0.25 s): median {m['rss_p50_mb']:.0f} MiB, "
          f"p90 {m['rss_p90_mb']:.0f}, highest sampled {m['rss_max_sampled_mb']:.0f} (anonymous "
          f"{m['anon_at_max_mb']:.0f} + file-backed {m['file_at_max_mb']:.0f}, mostly chDB's code)")
    if "engine_at_max_mb" in m:
        e = m["engine_at_max_mb"]
        print(f"the engine at the highest sample with its gauges (RSS {e['VmRSS']:.0f} MiB): tracked "
              f"{e['tracked']:.0f} MiB, allocated {e['allocated']:.0f}, resident {e['resident']:.0f} "
              f"(freed pages not yet returned: {e['resident'] - e['allocated']:.0f}); live allocations "
              f"at most {m['engine_allocated_max_mb']:.0f} MiB over the run")
    print(f"collector CPU per span: {run['cpu_us_per_span']:.0f} us; by thread (s): " + ", ".join(
        f"{k} {v:.1f}" for k, v in list(run["cpu_s_by_thread"].items())[:6]))


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0,
                    help="the measuring window; spans become queryable one index group at a time, "
                         "so a short window moves the indexed rate by a group's worth")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--spans", type=int, default=512)
    ap.add_argument("--connections", type=int, default=1,
                    help="requests each sender keeps in flight (1 = a synchronous OTel exporter)")
    ap.add_argument("--runs", type=int, default=1,
                    help="collector runs, each on a fresh store; prints the median rate and the "
                         "highest peak RSS")
    ap.add_argument("--env", type=_env_pair, action="append", default=[], metavar="NAME=VALUE",
                    help="an environment variable for the collector process only (repeatable)")
    ap.add_argument("--baseline-rows", type=int, default=51_200)
    ap.add_argument("--no-baseline", action="store_true", help="skip the bulk-insert baseline")
    ap.add_argument("--ack", choices=("journaled", "indexed"), default="journaled",
                    help="when the collector answers (MLTRACE_ACK; journaled is the embedded default)")
    ap.add_argument("--engine-memory", action="store_true",
                    help="also read the collector's engine memory gauges every second (a /metrics "
                         "scrape each, which adds the store metrics' queries to the load)")
    ap.add_argument("--python-render", action="store_true",
                    help="the collector renders rows in Python (MLTRACE_NATIVE_INGEST=false)")
    args = ap.parse_args()
    base = None if args.no_baseline else baseline(args.spans, args.baseline_rows)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    if base is not None:
        print(f"bulk insert of pre-built rows:      {base['bulk_insert_spans_per_s']:>9,.0f} spans/s")
        print(f"rendering rows (rows_from_otlp):    {base['render_spans_per_s']:>9,.0f} spans/s")
        print(f"Store.insert_otlp, one thread:      {base['insert_otlp_spans_per_s']:>9,.0f} spans/s")
        print(f"peak RSS of the baseline process (chDB + {base['rows']:,} rendered rows): "
              f"{base['bench_process_peak_rss_mb']:.0f} MiB")
    print(f"ingest: {'Python renderer' if args.python_render else 'native (ClickHouse parses and renders)'}"
          + "".join(f", {k}={v}" for k, v in args.env))
    runs = []
    for k in range(max(1, args.runs)):
        run = collector_run(args.senders, args.spans, args.warmup, args.seconds, args.connections,
                            native=not args.python_render, ack=args.ack, extra_env=dict(args.env),
                            engine_memory=args.engine_memory)
        run["load_average"] = os.getloadavg()[0]
        runs.append(run)
        if args.runs > 1:
            print(f"--- run {k + 1} of {args.runs} (load average {run['load_average']:.1f})")
        _report(run, args, base and run["spans_per_s"] / base["bulk_insert_spans_per_s"])
    median = statistics.median(r["spans_per_s"] for r in runs)
    peak = max(r["peak_rss_mb"] for r in runs)
    if len(runs) > 1:
        print(f"over {len(runs)} runs: median {median:,.0f} spans/s sustained (each: "
              + ", ".join(f"{r['spans_per_s']:,.0f}" for r in runs)
              + f"); peak RSS at most {peak:,.0f} MiB (each: "
              + ", ".join(f"{r['peak_rss_mb']:,.0f}" for r in runs) + ")")
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    ratio = base and median / base["bulk_insert_spans_per_s"]
    (results / "collector.json").write_text(json.dumps({
        "args": vars(args), "baseline": base, "collector": runs[-1] if len(runs) == 1 else runs,
        "median_spans_per_s": median, "peak_rss_mb": peak, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
