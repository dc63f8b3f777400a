"""Subprocess roles for the store sharing / drain tests (run as ``python store_worker.py ROLE ...``).

Each role is one OS process, as in real use: pipelines that log runs to the spool, a long-running
holder of the embedded store announcing its query API, a CLI-like querier, drainers. Every
role prints one JSON line on stdout with what it did.

Arguments: ROLE, BASE (a directory: the store lives in BASE/store, MLTRACE_DIR is BASE/mltrace),
then role-specific ones.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path


def settings_for(base: Path, wait_s: float = 60.0):
    from mltrace_otel.settings import Settings

    return Settings.from_env({}, mltrace_dir=base / "mltrace",
                             store_url=f"chdb://{(base / 'store').as_posix()}?database=shared",
                             store_wait_s=wait_s)


def log_runs(base: Path, n: int, tag: str) -> dict:
    """A pipeline: n runs through the mltrace SDK, exported to the spool (never opens the store)."""
    import mltrace_otel as mltrace
    from mltrace_otel.sdk import export

    export.configure(settings=settings_for(base).replace(export="spool"))
    for i in range(n):
        cr = mltrace.ComponentRun(f"step_{tag}")
        cr.set_start_timestamp()
        cr.add_input(f"{tag}/in/{i}")
        cr.add_output(f"{tag}/out/{i}")
        cr.set_end_timestamp()
        mltrace.log_component_run(cr)
    ok = mltrace.flush()
    return {"logged": n, "flushed": ok, "stats": str(mltrace.delivery_stats())}


def spool_runs(base: Path, n: int, per_batch: int, tag: str) -> dict:
    """Write n runs straight into the spool as OTLP batches (encode_spans + spool.write_batch)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mltrace_otel import conventions as c
    from mltrace_otel import spool
    from mltrace_otel.store.ingest import encode_spans

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("worker")
    spool_dir = settings_for(base).spool_dir
    batches = 0
    for start in range(0, n, per_batch):
        for i in range(start, min(n, start + per_batch)):
            with tracer.start_as_current_span(f"step_{tag}", attributes={
                    c.COMPONENT_NAME: f"step_{tag}", c.RUN_INPUTS: [f"{tag}/in/{i}"],
                    c.RUN_OUTPUTS: [f"{tag}/out/{i}"]}):
                pass
        spool.write_batch(spool_dir, encode_spans(exporter.get_finished_spans()).SerializeToString())
        exporter.clear()
        batches += 1
    return {"spooled": n, "batches": batches}


def hold(base: Path, stop_file: Path) -> dict:
    """A long-running holder (like `mltrace collector`): open, serve the query API on a loopback
    port and announce it, drain every 0.2 s, until told."""
    from mltrace_otel.store import open_store
    from mltrace_otel.web_api import StoreHost

    store = open_store(settings_for(base))
    host = StoreHost(store, drain_interval_s=0.2).start()
    print(json.dumps({"serving": host.url, "pid": os.getpid()}), flush=True)
    while not stop_file.exists():
        time.sleep(0.05)
    store.drain_spool()
    store.close()
    return {"held": True}


def hold_plain(base: Path, stop_file: Path) -> dict:
    """A holder that does not serve (like a long CLI command): others must wait for it."""
    from mltrace_otel.store import open_store

    store = open_store(settings_for(base))
    print(json.dumps({"holding": os.getpid()}), flush=True)
    while not stop_file.exists():
        time.sleep(0.05)
    store.close()
    return {"held": True}


def open_wait(base: Path, wait_s: float) -> dict:
    """Open the store, waiting up to wait_s for its holder; report how it went."""
    from mltrace_otel.errors import StoreUnavailable
    from mltrace_otel.store import open_store

    t = time.monotonic()
    print(json.dumps({"opening": True}), flush=True)
    try:
        with open_store(settings_for(base, wait_s)) as store:
            n = store.query("n", "SELECT count() FROM otel_traces")[0][0]
            return {"opened": True, "spans": n, "waited_s": time.monotonic() - t}
    except StoreUnavailable as e:
        return {"opened": False, "error": str(e), "waited_s": time.monotonic() - t}


def query_loop(base: Path, stop_file: Path) -> dict:
    """A CLI-like reader (the CLI's open_queries): ask questions of the holder's announced API
    (or the store, opened here), then let go; again and again until told."""
    from mltrace_otel.cli.common import open_queries

    rounds, errors, remote = 0, [], 0
    while not stop_file.exists():
        try:
            with open_queries(settings_for(base)) as q:
                q.recent(5)
                q.components()
                remote += bool(q.remote)
            rounds += 1
        except Exception as e:  # the test asserts there are none
            errors.append(f"{type(e).__name__}: {e}")
    return {"rounds": rounds, "errors": errors, "remote_rounds": remote}


def query_held(base: Path, stop_file: Path) -> dict:
    """A long-lived reader (a notebook): mltrace_otel.api's functions, called until told; they
    ask the holder's API, and the store itself once that holder has gone away."""
    os.environ.update(MLTRACE_DIR=str(base / "mltrace"), MLTRACE_STORE_WAIT_S="60",
                      MLTRACE_CLICKHOUSE_URL=f"chdb://{(base / 'store').as_posix()}?database=shared")
    from mltrace_otel import api

    def remote() -> bool:
        return isinstance(api._store, api._RemoteStore)

    rounds, errors = 0, []
    api.get_recent_run_ids(limit=5)
    first = remote()
    print(json.dumps({"opened": True, "remote": first}), flush=True)
    while not stop_file.exists():
        try:
            api.get_recent_run_ids(limit=5)
            api.get_all_tags()
            rounds += 1
        except Exception as e:  # the test asserts there are none
            errors.append(f"{type(e).__name__}: {e}")
        time.sleep(0.01)
    out = {"rounds": rounds, "errors": errors, "first_remote": first, "last_remote": remote()}
    api.close()
    return out


def drain(base: Path) -> dict:
    """Open the store and drain the spool; a store held by a process that announces its API
    (and drains the spool itself) is reported, not waited for."""
    from mltrace_otel.errors import StoreUnavailable
    from mltrace_otel.store import open_store

    try:
        with open_store(settings_for(base), drain=False) as store:
            moved = store.drain_spool()
    except StoreUnavailable as e:
        return {"drained": 0, "held": str(e)}
    return {"drained": moved}


def drain_then_die(base: Path, after: int) -> dict:
    """Drain, and kill -9 this process right after the n-th batch is committed (before its
    spool file is deleted): the worst moment for exactly-once."""
    from mltrace_otel import spool
    from mltrace_otel.store import open_store

    done = 0
    real_done = spool.Claimed.done

    def done_then_maybe_die(self: spool.Claimed) -> None:
        nonlocal done
        done += 1
        if done == after:
            os.kill(os.getpid(), signal.SIGKILL)
        real_done(self)

    spool.Claimed.done = done_then_maybe_die  # failure injection
    store = open_store(settings_for(base), drain=False)
    store.drain_spool()
    return {"survived": True}


def count(base: Path) -> dict:
    """What the store holds: distinct runs, raw span rows, distinct span ids, leftover files."""
    from mltrace_otel.store import open_store

    with open_store(settings_for(base)) as store:
        runs = store.query("n", "SELECT uniqExact(RunId) FROM mltrace_runs")[0][0]
        raw, distinct = store.query("n", "SELECT count(), uniqExact(SpanId) FROM otel_traces")[0]
        spool_left = sorted(p.name for p in store.settings.spool_dir.glob("*") if p.is_file())
    return {"runs": runs, "span_rows": raw, "span_ids": distinct, "spool_left": spool_left}


def main() -> None:
    role, base, *rest = sys.argv[1:]
    base_dir = Path(base)
    try:
        if role == "log":
            out = log_runs(base_dir, int(rest[0]), rest[1])
        elif role == "spool":
            out = spool_runs(base_dir, int(rest[0]), int(rest[1]), rest[2])
        elif role == "hold":
            out = hold(base_dir, Path(rest[0]))
        elif role == "hold-plain":
            out = hold_plain(base_dir, Path(rest[0]))
        elif role == "open-wait":
            out = open_wait(base_dir, float(rest[0]))
        elif role == "query":
            out = query_loop(base_dir, Path(rest[0]))
        elif role == "query-held":
            out = query_held(base_dir, Path(rest[0]))
        elif role == "drain":
            out = drain(base_dir)
        elif role == "drain-die":
            out = drain_then_die(base_dir, int(rest[0]))
        elif role == "count":
            out = count(base_dir)
        else:
            raise SystemExit(f"unknown role {role}")
    except Exception:
        print(json.dumps({"error": traceback.format_exc()}), flush=True)
        raise SystemExit(1) from None
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
