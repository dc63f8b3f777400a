"""Per-call overhead of each documented way to log a run vs a bare OpenTelemetry span, both
exporting over real OTLP/HTTP to a local receiver.

Every form logs 2 inputs and 2 outputs, the way mltrace's docs write it:

* ``@register(name, inputs=[...], outputs=[...])`` (literal names);
* ``@c.run(input_vars=[...], output_vars=[...])`` (names from the function's locals);
* ``@c.run(input_kwargs={...}, output_kwargs={...})`` (names and values from locals: the values
  are fingerprinted, the outputs summarized as ``mltrace.output.stats`` events);
* ``ComponentRun`` + ``log_component_run`` (a hand-built run).

Each form runs with the SDK's real destination: ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, so each run
is appended to the durable queue before the call returns and sent from there by the SDK's courier
(a process of its own; ``MLTRACE_DELIVERY=thread`` measures the delivery thread instead). Its
reference is a bare OTel SDK span carrying the same attributes and events (copied from a real run
of that form), made current, on a private TracerProvider with a stock ``BatchSpanProcessor`` and
``OTLPSpanExporter`` (http/protobuf) to the same receiver, a separate process that parses every
request and counts its spans. One more line: a minimal span with 3 attributes. All variants are
measured interleaved in one process, their order rotated every round; each round times ``n`` calls
(delivery threads running as they do), then flushes both pipelines. Overhead = per call, minus the
undecorated function's, median over the rounds, in three measures:

* caller CPU: CPU time of the calling thread during the calls (what the call costs the caller;
  immune to other processes on a shared machine, and to time spent waiting for the GIL);
* +delivery: CPU time of the whole process over the calls and the flush that follows, plus
  the courier process's, so the encoding and sending done in the background are counted where
  they belong (the bare span's stock exporter encodes in its thread; ours encodes before the call
  returns and sends from the courier);
* wall: the caller's wall-clock time during the calls (what the issue's first figures used;
  on a loaded machine it swings by more than the differences measured).

    python bench/bench_sdk.py               # full run (about 5 min)
    python bench/bench_sdk.py --quick       # fewer rounds and calls
    python bench/bench_sdk.py --breakdown   # also: each form's caller CPU split into the OTel
                                            # span, the form's own work and the durable append,
                                            # each measured in place (the SDK's destination vs
                                            # MLTRACE_EXPORT=none; the bare span with and
                                            # without its BatchSpanProcessor), and what the
                                            # delivery thread working meanwhile costs the caller
                                            # (vs the same destination with it idle)

Two regimes, each printed as its own table:

* **back to back**: the calls follow each other with nothing in between (the most a pipeline
  can make);
* **paced**: each call is followed by ~60 us of the pipeline's own Python work (a loop), as in a
  pipeline that computes something between runs; the overhead then includes what each pipeline's
  background thread costs the caller's own work (both threads wait for the GIL the work holds).

A round is long enough (``--calls``, default 12,000) for both pipelines to deliver several times
inside it: the stock exporter encodes and sends 512 spans in ~45 ms, so in a round of 2,000
back-to-back calls it finishes at most one export before the round ends and its work lands in the
flush after it, out of the caller's measure, while ours delivers inside the round. The share of
the stock exporter's spans exported inside the rounds is printed.

The last lines time the durable append on its own (encode one run's request, append one record):
inside a run the same work costs more (the caller's caches hold the rest of the run), which is
what ``--breakdown`` shows.

Target (issue 16): every form's median overhead <= 1.5x its bare span's; the worst and best form
are printed for each measure.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import mltrace_otel as mltrace
from mltrace_otel.sdk import export
from mltrace_otel.settings import Settings

RECEIVER = r'''
import gzip, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)
counts, lock, OK = {}, threading.Lock(), ExportTraceServiceResponse().SerializeToString()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        req = ExportTraceServiceRequest.FromString(body)
        n = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        with lock:
            counts[self.path] = counts.get(self.path, 0) + n
        self.reply(OK, "application/x-protobuf")
    def do_GET(self):
        with lock:
            self.reply(repr(counts).encode(), "text/plain")
    def reply(self, out, ctype):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
'''
BARE_PATH, SDK_PATH = "/bare/v1/traces", "/mltrace/v1/traces"
DELIVERY = os.environ.get("MLTRACE_DELIVERY", "process")
"""Who delivers our runs: the courier process (default) or, with MLTRACE_DELIVERY=thread, a thread."""
INPUTS, OUTPUTS = ["raw.csv", "lookup.csv"], ["features.pq", "stats.csv"]


def timed(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """(wall-clock ns, CPU ns of this thread) per call of ``fn`` over ``n`` calls."""
    t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t0) / n, (time.thread_time_ns() - c0) / n


def work() -> None:
    return None


# --- the four documented forms (2 inputs, 2 outputs each) -----------------------------------------

def make_forms() -> dict[str, Callable[[], object]]:
    """The decorated / hand-built forms; each call logs one run."""
    comp = mltrace.Component("featuregen", owner="data-team", description="builds features")

    literal = mltrace.register("featuregen", inputs=INPUTS, outputs=OUTPUTS)(work)

    @comp.run(input_vars=["raw", "lookup"], output_vars=["features", "stats"])
    def with_vars() -> None:
        raw, lookup = "raw.csv", "lookup.csv"  # noqa: F841
        features, stats = "features.pq", "stats.csv"  # noqa: F841

    @comp.run(input_kwargs={"in_names": "in_values"}, output_kwargs={"out_names": "out_values"})
    def with_kwargs() -> None:
        in_names, in_values = INPUTS, ["a,b\n1,2\n", "k,v\nx,1\n"]  # noqa: F841
        out_names, out_values = OUTPUTS, [[0.5, 1.5, 2.5], 3.0]  # noqa: F841

    def manual() -> None:
        cr = mltrace.ComponentRun("featuregen")
        cr.set_start_timestamp()
        cr.add_inputs(INPUTS)
        cr.add_outputs(OUTPUTS)
        cr.set_end_timestamp()
        mltrace.log_component_run(cr)

    return {"@register(inputs=, outputs=)": literal,
            "@c.run(input_vars=, output_vars=) (locals)": with_vars,
            "@c.run(input_kwargs=, output_kwargs=)": with_kwargs,
            "ComponentRun + log_component_run": manual}


def recorded(fn: Callable[[], object]) -> ReadableSpan:
    """One run of ``fn``, as the SDK emits it."""
    mem = InMemorySpanExporter()
    export.configure(exporter=mem)
    fn()
    (span,) = mem.get_finished_spans()
    export.reset()
    return span


def bare_like(tracer: Any, span: ReadableSpan, manual: bool) -> Callable[[], None]:
    """A bare OTel span with the run's attributes and events (a hand-built run: explicit times)."""
    attrs = dict(span.attributes)
    events = [(e.name, dict(e.attributes)) for e in span.events]
    name = span.name

    if manual:
        def bare() -> None:
            start = datetime.now(timezone.utc)
            end = datetime.now(timezone.utc)
            s = tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attrs,
                                  start_time=int(start.timestamp() * 1e9))
            for ev, ea in events:
                s.add_event(ev, ea)
            s.end(end_time=int(end.timestamp() * 1e9))
        return bare

    def bare() -> None:
        with tracer.start_as_current_span(name, kind=SpanKind.INTERNAL, attributes=attrs) as s:
            work()
            for ev, ea in events:
                s.add_event(ev, ea)
    return bare


class LoggingExporter(OTLPSpanExporter):
    """The stock OTLP/HTTP exporter, noting when it exported how many spans."""

    def __init__(self, log: list[tuple[float, int]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log = log

    def export(self, spans: Any) -> Any:
        result = super().export(spans)
        self.log.append((time.perf_counter(), len(spans)))
        return result


def courier_cpu_ns() -> int:
    """CPU time so far of the SDK's courier process (0 when there is none), from /proc: the
    delivery's cost, counted with the process that caused it."""
    c = getattr(getattr(export._pipeline, "processor", None), "_courier", None)
    if c is None:
        return 0
    try:
        fields = Path(f"/proc/{c.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 10**9 // os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0


def pipeline_work() -> int:
    """~60 us of pure Python (holding the GIL): what a pipeline computes between two runs."""
    x = 0
    for i in range(3000):
        x += i
    return x


def paced(fn: Callable[[], object], pace: Callable[[], object]) -> Callable[[], None]:
    def call() -> None:
        fn()
        pace()
    return call


def measure(regime: str, variants: dict[str, Callable[[], object]], refs: dict[str, str],
            forms: dict[str, Callable[[], object]], rounds: int, n: int,
            pace: Callable[[], object] | None, provider: TracerProvider,
            exported: list[tuple[float, int]]) -> None:
    """Time every variant in ``rounds`` interleaved rounds of ``n`` calls (``pace`` after each
    call, the function alone included) and print the overheads and ratios of this regime."""
    calls = {k: paced(fn, pace) if pace is not None else fn for k, fn in variants.items()}
    wall: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [] for k in calls}
    total: dict[str, list[float]] = {k: [] for k in calls}
    inside = bare_spans = ours_inside = ours = 0
    names = list(calls)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotated: no slot bias
            gc.collect()
            exported.clear()
            sent = mltrace.delivery_stats().exported
            p0 = time.process_time_ns() + courier_cpu_ns()
            w, c = timed(calls[name], n)
            ended = time.perf_counter()
            if name in forms:
                ours_inside += mltrace.delivery_stats().exported - sent
                ours += n
            export.flush()
            provider.force_flush()
            wall[name].append(w)
            cpu[name].append(c)
            total[name].append((time.process_time_ns() + courier_cpu_ns() - p0) / n)
            if name in refs.values():
                inside += sum(k for t, k in exported if t <= ended)
                bare_spans += sum(k for _, k in exported)

    def overheads(samples: dict[str, list[float]]) -> dict[str, float]:
        med = {k: statistics.median(v) for k, v in samples.items()}
        return {k: v - med["function alone"] for k, v in med.items()}

    o_cpu, o_total, o_wall = overheads(cpu), overheads(total), overheads(wall)
    print(f"\n{regime}: python {sys.version.split()[0]}, {rounds} rounds x {n} calls, medians of the "
          f"overhead per call (us) over the undecorated function; OTLP/HTTP to a local receiver "
          f"(mltrace: durable append + {DELIVERY} delivery; bare: BatchSpanProcessor + OTLPSpanExporter)")
    print(f"{'variant':48} {'caller CPU':>10} {'vs bare':>8} {'+delivery':>10} {'vs bare':>8} "
          f"{'wall':>8} {'vs bare':>8}")
    worst: dict[str, tuple[float, str]] = {}
    best: dict[str, tuple[float, str]] = {}
    for k in calls:
        if k == "function alone":
            continue
        cells = []
        for label, o in (("caller CPU", o_cpu), ("+delivery", o_total), ("wall", o_wall)):
            ratio = ""
            if k in refs:
                r_ = o[k] / o[refs[k]]
                ratio = f"{r_:.2f}x"
                worst[label] = max(worst.get(label, (0.0, "")), (r_, k))
                best[label] = min(best.get(label, (1e9, "")), (r_, k))
            cells.append(f"{o[k] / 1000:{10 if label != 'wall' else 8}.2f} {ratio:>8}")
        print(f"{k:48} " + " ".join(cells))
    for label, what in (("caller CPU", "the caller's thread, CPU time"),
                        ("+delivery", "CPU time of the whole process, delivery included"),
                        ("wall", "the caller's wall-clock time")):
        print(f"{what}: worst form {worst[label][0]:.2f}x ({worst[label][1]}), best "
              f"{best[label][0]:.2f}x ({best[label][1]}) of the same-attribute bare span")
    mini = o_cpu["minimal span (3 attributes)"]
    print("caller CPU vs the minimal span: "
          + ", ".join(f"{k.split(' ')[0]} {o_cpu[k] / mini:.2f}x" for k in forms))
    print(f"sent inside the rounds (the rest in the flush after each): the stock exporter "
          f"{inside / max(bare_spans, 1):.0%} of the bare spans, mltrace "
          f"{ours_inside / max(ours, 1):.0%} of the runs")


def start_receiver() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, f"http://127.0.0.1:{proc.stdout.readline().strip()}"


def received(url: str) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(url + "/count", timeout=10) as r:
        return eval(r.read().decode())  # noqa: S307 - our own receiver's repr of a dict


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 rounds x 6000 calls")
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--calls", type=int, default=0)
    ap.add_argument("--breakdown", action="store_true",
                    help="also split each form's caller CPU into the OTel span, the form's own work "
                         "and the durable append (measured in place)")
    args = ap.parse_args(argv)
    rounds, n = (5, 6000) if args.quick else (7, 12_000)
    rounds, n = args.rounds or rounds, args.calls or n

    forms = make_forms()
    spans = {k: recorded(fn) for k, fn in forms.items()}

    proc, url = start_receiver()
    tmp = tempfile.TemporaryDirectory(prefix="mltrace-bench-")
    try:
        # ours: the real destination (durable append, then OTLP/HTTP from the courier)
        ours = Settings.from_env({"MLTRACE_DELIVERY": DELIVERY}, mltrace_dir=Path(tmp.name))
        export.configure(settings=ours.replace(otlp_traces_endpoint=url + SDK_PATH))
        # theirs: the stock SDK pipeline (the OTel SDK's 512-span exports), our delay, a queue that
        # never drops
        provider = TracerProvider(resource=export.resource_for(export.configured_settings()))
        exported: list[tuple[float, int]] = []  # (when, how many spans) of each stock export
        provider.add_span_processor(BatchSpanProcessor(
            LoggingExporter(exported, endpoint=url + BARE_PATH), max_queue_size=export.MAX_QUEUE_SPANS,
            schedule_delay_millis=export.SCHEDULE_DELAY_MS, max_export_batch_size=512))
        tracer = provider.get_tracer("bare")

        def minimal() -> None:
            with tracer.start_as_current_span("featuregen", kind=SpanKind.INTERNAL,
                                              attributes={"a": "x", "b": 1, "c": True}):
                work()

        variants: dict[str, Callable[[], object]] = {"function alone": work,
                                                     "minimal span (3 attributes)": minimal}
        for k, fn in forms.items():
            variants[k] = fn
            variants[f"  bare span, same attributes as {k.split(' ')[0]}"] = bare_like(
                tracer, spans[k], manual=k.startswith("ComponentRun"))
        refs = {k: f"  bare span, same attributes as {k.split(' ')[0]}" for k in forms}

        for fn in variants.values():  # warm up (git lookup, connections, code paths)
            timed(fn, 200)
        export.flush()
        provider.force_flush()
        for regime, pace in (("back to back", None),
                             ("paced (~60 us of Python work after each call)", pipeline_work)):
            measure(regime, variants, refs, forms, rounds, n, pace, provider, exported)
        export.flush()
        provider.force_flush()
        stats = mltrace.delivery_stats()
        got = received(url)
        print(f"received: mltrace {got.get(SDK_PATH, 0)} spans (exported {stats.exported}, spooled "
              f"{stats.spooled}, dropped {stats.dropped}, calls that waited {stats.waits}); "
              f"bare {got.get(BARE_PATH, 0)} spans")
        export.reset()
        provider.shutdown()
        if args.breakdown:
            breakdown(forms, spans, url, Path(tmp.name), rounds, n)
    finally:
        proc.terminate()
        proc.wait(10)
        tmp.cleanup()
    durable_append(spans[next(iter(forms))], rounds, n)
    return 0


def breakdown(forms: dict[str, Callable[[], object]], spans: dict[str, ReadableSpan], url: str,
              tmp: Path, rounds: int, n: int) -> None:
    """Where each form's caller CPU goes, measured in place (interleaved rounds): the same calls
    with the SDK's real destination and with ``MLTRACE_EXPORT=none`` (no span processor: the
    difference is what the durable append costs inside a run), and the bare span with its
    BatchSpanProcessor and with none (the difference is what the stock processor costs)."""
    real = Settings.from_env({"MLTRACE_DELIVERY": DELIVERY}, mltrace_dir=tmp).replace(
        otlp_traces_endpoint=url + SDK_PATH)
    none = Settings.from_env({}, mltrace_dir=tmp).replace(export="none")
    # the same destination with the delivery thread idle while the calls are timed (it delivers
    # at the flush after them): what delivering meanwhile costs the caller
    idle = real.replace(bsp_max_export_batch_size=10 ** 6, bsp_max_queue_size=10 ** 6,
                        bsp_schedule_delay_ms=3_600_000)
    resource = export.resource_for(real)
    bsp = TracerProvider(resource=resource)
    bsp.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=url + BARE_PATH), max_queue_size=export.MAX_QUEUE_SPANS,
        schedule_delay_millis=export.SCHEDULE_DELAY_MS, max_export_batch_size=512))
    bare_t, noproc_t = bsp.get_tracer("bare"), TracerProvider(resource=resource).get_tracer("bare")
    samples: dict[tuple[str, str], list[float]] = {}
    bares = {k: (bare_like(bare_t, spans[k], k.startswith("ComponentRun")),
                 bare_like(noproc_t, spans[k], k.startswith("ComponentRun"))) for k in forms}
    for r in range(rounds):
        for label, settings in (("real", real), ("none", none), ("idle", idle))[:: 1 if r % 2 else -1]:
            export.configure(settings=settings)
            for k, fn in forms.items():
                timed(fn, 100)
                gc.collect()
                samples.setdefault((k, label), []).append(timed(fn, n)[1])
                export.flush()
        for k, (with_bsp, without) in bares.items():
            for label, fn in (("bare", with_bsp), ("bare, no processor", without)):
                gc.collect()
                samples.setdefault((k, label), []).append(timed(fn, n)[1])
            bsp.force_flush()
        samples.setdefault(("", "alone"), []).append(timed(work, n)[1])
    export.reset()
    bsp.shutdown()
    med = {key: statistics.median(v) / 1000 for key, v in samples.items()}
    alone = med[("", "alone")]
    print("\nwhere the caller CPU goes (us per call, medians; interleaved; same process):")
    print(f"{'form':40} {'OTel span':>9} {'+form':>7} {'+durable':>9} {'(delivery':>9}) {'= total':>8} | "
          f"{'bare':>6} {'(BSP':>6}) | {'ratio':>6} {'delivery idle':>13} {'without durable':>15}")
    for k in forms:
        span_ = med[(k, "bare, no processor")] - alone
        own = med[(k, "none")] - med[(k, "bare, no processor")]
        durable = med[(k, "real")] - med[(k, "none")]
        delivering = med[(k, "real")] - med[(k, "idle")]
        bare = med[(k, "bare")] - alone
        total = med[(k, "real")] - alone
        print(f"{k[:40]:40} {span_:9.2f} {own:7.2f} {durable:9.2f} {delivering:9.2f}) {total:8.2f} | "
              f"{bare:6.2f} {bare - span_:6.2f}) | {total / bare:5.2f}x {(total - delivering) / bare:12.2f}x "
              f"{(total - durable) / bare:14.2f}x")


def durable_append(span: ReadableSpan, rounds: int, n: int) -> None:
    """The durable append on its own (issue 20): what each run costs the caller to be on disk
    before the call returns (encode the span, append one record to this process's segment), and
    the calls per second a tight loop of the @register form sustains with no collector (the spool
    the destination) before back-pressure makes calls wait."""
    from mltrace_otel import spool
    from mltrace_otel.sdk import wire

    with tempfile.TemporaryDirectory(prefix="mltrace-bench-") as d:
        writer = spool.SegmentWriter(Path(d), seal_on_rotate=False)
        envelope = wire.Envelope.of(span)  # what the SDK's processor keeps per resource and scope
        spans = (span,)
        enc, app = [], []
        seq = 0
        for _ in range(rounds):
            t0 = time.thread_time_ns()
            for _ in range(n):
                payload = envelope.request(spans)
            t1 = time.thread_time_ns()
            for _ in range(n):
                seq = spool.next_seq(seq)
                writer.append_one(seq, 1, payload)
            t2 = time.thread_time_ns()
            enc.append((t1 - t0) / n)
            app.append((t2 - t1) / n)
        writer.detach()
        print(f"durable append, caller CPU per run: encode {statistics.median(enc) / 1000:.2f} us + append "
              f"{statistics.median(app) / 1000:.2f} us ({len(payload)}-byte request)")
    with tempfile.TemporaryDirectory(prefix="mltrace-bench-") as d:
        export.configure(settings=Settings.from_env({}, mltrace_dir=Path(d)))
        decorated = mltrace.register("featuregen", inputs=["raw.csv", "lookup.csv"],
                                     outputs=["features.pq", "stats.csv"])(work)
        timed(decorated, 200)
        calls = 50_000
        t0 = time.perf_counter()
        for _ in range(calls):
            decorated()
        rate = calls / (time.perf_counter() - t0)
        export.flush()
        stats = mltrace.delivery_stats()
        print(f"tight loop, no collector (spool): {rate:,.0f} calls/s sustained; spooled {stats.spooled}, "
              f"dropped {stats.dropped}, calls that waited {stats.waits}")
        export.reset()


if __name__ == "__main__":
    raise SystemExit(main())
