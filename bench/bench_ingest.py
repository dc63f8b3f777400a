"""Benchmark: the ingest writer (OTLP → otel_traces rows) and inserts into the embedded store.

    python bench/bench_ingest.py [--batches 10] [--spans 5000] [--fixed | --per-table]

Measured in one process, on run-like spans (9 attributes, 4 of them string arrays):

1. **floor**: parse the protobuf and touch every attribute (what any Python renderer pays).
2. **render**: ``rows_from_otlp`` (the exact contrib value mapping), spans/s; ratio to the floor.
3. **insert**: ``ingest.insert_columns`` of pre-rendered rows into a fresh embedded store (the
   writer's own path: one JSONCompactColumns body; the ClickHouse work: otel_traces + the
   materialized views), rows/s.
4. **insert_otlp**: render + insert, spans/s; ratio to 3 (batches interleaved with 3's, so
   both pay the same background merges).
4b. **insert_requests**: the native path (ClickHouse parses the protobuf and renders the rows
   itself), spans/s wall and CPU (the process's, so the engine's threads too); ratio to 4.
5. **open**: ``open_store`` on a fresh directory (engine start + migrations) and again on the
   migrated store (one query).

``--fixed`` measures instead what bounds the collector's index group size (issue 15: a small
group pays a fixed cost per insert, a large one holds engine memory per span): the CPU of a
64-span insert by each renderer (medians), the analysis of each materialized view's query
(``EXPLAIN PLAN`` of it, which the engine repeats on every insert), and the process's peak
resident memory during one insert of ``--spans`` spans (default 20,480) by each renderer, with the
whole schema and with ``otel_traces`` alone (the mltrace views dropped), median of 3 (Linux: the
peak is reset through ``/proc/self/clear_refs`` before each).

``--per-table`` measures where a native insert's CPU goes: the marginal CPU per span of each
materialized view, projection set and skip-index set, as the median difference between the
whole schema and the schema without it (one database each in one engine, every variant's
inserts of ``--spans`` spans interleaved round by round, background merges stopped so that only
the inserts are counted).

Wall-clock and CPU seconds are both printed (the machine is shared, so CPU time is the steadier
number). Prints a JSON line with every number.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


from otlp_requests import make_request  # noqa: E402  (one trace per span)


def timed(fn, *args):  # noqa: ANN001, ANN202
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w, time.process_time() - c


def floor(payload: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    n = 0
    for rs in ExportTraceServiceRequest.FromString(payload).resource_spans:
        for ss in rs.scope_spans:
            for sp in ss.spans:
                for kv in sp.attributes:
                    v = kv.value
                    if v.WhichOneof("value") == "array_value":
                        n += sum(len(x.string_value) for x in v.array_value.values)
                    else:
                        n += len(v.string_value)
                n += len(sp.span_id) + len(sp.trace_id) + sp.start_time_unix_nano % 2
    return n


def _status_mib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) >> 10
    return 0


def fixed_costs(spans: int) -> None:
    """Per-insert fixed cost by renderer, per-view analysis time, peak memory of one insert."""
    import statistics

    from mltrace_otel.settings import Settings
    from mltrace_otel.store import open_store
    from mltrace_otel.store.connect import tune_engine_allocator
    from mltrace_otel.store.ingest import insert_columns, rows_from_otlp

    tune_engine_allocator()  # the collector's allocator setting, as in production
    with tempfile.TemporaryDirectory() as d:
        store = open_store(Settings.from_env({}, mltrace_dir=Path(d)))
        small = [make_request(64, 3000 + s) for s in range(24)]
        native, python = [], []
        for k in range(0, len(small), 2):
            _, _, dc = timed(store.insert_requests, [small[k]], 64)
            native.append(dc * 1000)
            cols = rows_from_otlp(small[k + 1])
            _, _, dc = timed(insert_columns, store, cols)
            python.append(dc * 1000)
        print(f"a 64-span insert, CPU (median of {len(native)}): engine renderer "
              f"{statistics.median(native):.0f} ms, Python renderer (insert only) "
              f"{statistics.median(python):.0f} ms")
        views = store.query("views", "SELECT name, as_select FROM system.tables WHERE database = {d:String} "
                            "AND engine = 'MaterializedView' ORDER BY name", {"d": store.database})
        print("analysis of each view's query (EXPLAIN PLAN, CPU, median of 7):")
        for name, sql in views:
            times = []
            for _ in range(7):
                _, _, dc = timed(store.query, "explain_view", "EXPLAIN PLAN " + sql)
                times.append(dc * 1000)
            print(f"  {name:34} {statistics.median(times):6.1f} ms")
        # one insert's peak memory, by renderer, with the whole schema and with otel_traces
        # alone (the mltrace views dropped: what the renderer and otel_traces hold themselves)
        alone = open_store(Settings.from_env({}, mltrace_dir=Path(d), store_url=f"chdb://{d}/store?database=alone"))
        for view in ("mltrace_runs_mv", "otel_traces_trace_id_ts_mv"):
            alone.command("bench_drop", f"DROP VIEW alone.{view}")
        n, seq = spans // 512, 4000
        for schema, st in (("the whole schema", store), ("otel_traces alone", alone)):
            for label in ("engine renderer", "Python renderer (insert only)"):
                peaks = []
                for _ in range(3):
                    seq += n
                    big = [make_request(512, seq + s) for s in range(n)]
                    cols = rows_from_otlp(b"".join(big)) if label.startswith("Python") else None
                    time.sleep(1.5)  # the allocator returns freed pages after 1 s
                    before = _status_mib("VmRSS")
                    with open("/proc/self/clear_refs", "w") as f:
                        f.write("5")  # reset the peak (VmHWM) to the current size
                    if cols is None:
                        st.insert_requests(big, 512 * n)
                    else:
                        insert_columns(st, cols)
                    peaks.append(_status_mib("VmHWM") - before)
                print(f"peak memory of one {512 * n}-span insert, {schema}, {label}: "
                      f"+{statistics.median(peaks)} MiB (median of {peaks})")
        alone.close()
        store.close()


PER_TABLE = {
    "the whole schema": [],
    "mltrace_runs_mv (and the views fed from mltrace_runs)": ["DROP VIEW {db}.mltrace_runs_mv"],
    "mltrace_lineage_mv": ["DROP VIEW {db}.mltrace_lineage_mv"],
    "mltrace_lineage's 3 projections": [f"ALTER TABLE {{db}}.mltrace_lineage DROP PROJECTION {p}" for p in
                                        ("lineage_by_run", "lineage_by_component", "lineage_by_start")],
    "mltrace_runs' 2 projections": [f"ALTER TABLE {{db}}.mltrace_runs DROP PROJECTION {p}" for p in
                                    ("runs_by_component", "runs_by_start_with_filters")],
    "mltrace_io_mv": ["DROP VIEW {db}.mltrace_io_mv"],
    "mltrace_components_mv": ["DROP VIEW {db}.mltrace_components_mv"],
    "otel_traces_trace_id_ts_mv": ["DROP VIEW {db}.otel_traces_trace_id_ts_mv"],
    "otel_traces' 6 skip indexes": [f"ALTER TABLE {{db}}.otel_traces DROP INDEX {i}" for i in (
        "idx_trace_id", "idx_res_attr_key", "idx_res_attr_value", "idx_span_attr_key", "idx_span_attr_value",
        "idx_duration")],
    "otel_traces_otlp_deferred_mv": ["DROP VIEW {db}.otel_traces_otlp_deferred_mv"],
    "both filters for the spans left to Python": ["DROP VIEW {db}.otel_traces_otlp_deferred_mv", "UNFILTER"],
}
"""Variants of ``--per-table``: what each drops from the schema (``{db}``: its database;
``UNFILTER``: the engine renderer's view made again without its WHERE)."""
_CREATE_QUERY = ("SELECT create_table_query FROM system.tables WHERE database = {d:String} "
                 "AND name = 'otel_traces_otlp_mv'")


def per_table(spans: int, rounds: int = 5) -> None:
    """The marginal CPU per span of each part of the schema in a native insert (see the module
    docstring): medians over ``rounds`` interleaved rounds."""
    import statistics

    from mltrace_otel.settings import Settings
    from mltrace_otel.store import open_store

    n = max(1, spans // 512)
    with tempfile.TemporaryDirectory() as d:
        stores = {}
        for k, (label, drops) in enumerate(PER_TABLE.items()):
            st = open_store(Settings.from_env({}, mltrace_dir=Path(d), store_url=f"chdb://{d}/store?database=v{k}"))
            for sql in drops:
                if sql == "UNFILTER":  # the engine renderer's view without its WHERE
                    view = st.query("bench_view", _CREATE_QUERY, {"d": f"v{k}"})[0][0]
                    st.command("bench_drop", f"DROP VIEW v{k}.otel_traces_otlp_mv")
                    st.command("bench_unfiltered", view[:view.rindex(" WHERE NOT")])
                    continue
                st.command("bench_drop", sql.replace("{db}", f"v{k}"))
            stores[label] = st
        next(iter(stores.values())).command("bench_stop_merges", "SYSTEM STOP MERGES")
        cpu: dict[str, list[float]] = {label: [] for label in stores}
        for r in range(rounds + 1):  # round 0 warms up
            for label, st in stores.items():
                batch = [make_request(512, 100_000 * r + 1000 * len(cpu[label]) + i) for i in range(n)]
                _, _, dc = timed(st.insert_requests, batch, 512 * n)
                if r:
                    cpu[label].append(dc / (512 * n) * 1e6)
        base = statistics.median(cpu["the whole schema"])
        print(f"CPU per span of a native insert of {512 * n} spans (median of {rounds} interleaved rounds, "
              "merges stopped):")
        for label, xs in cpu.items():
            m = statistics.median(xs)
            if label == "the whole schema":
                print(f"  {label:55} {m:5.1f} us")
            else:
                print(f"  {label:55} {base - m:+5.1f} us (without it: {m:.1f})")
        for st in stores.values():
            st.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--spans", type=int, default=None,
                    help="spans per batch (default 5000; with --fixed, of the big insert: 20480)")
    ap.add_argument("--fixed", action="store_true", help="per-insert fixed cost, view analysis, peak memory")
    ap.add_argument("--per-table", action="store_true",
                    help="marginal CPU per span of each view, projection set and skip-index set")
    a = ap.parse_args()
    if a.per_table:
        per_table(a.spans or 20_480)
        return
    if a.fixed:
        fixed_costs(a.spans or 20_480)
        return
    a.spans = a.spans or 5000

    from mltrace_otel.settings import Settings
    from mltrace_otel.store import open_store
    from mltrace_otel.store.ingest import insert_columns, rows_from_otlp

    payloads = [make_request(a.spans, s) for s in range(a.batches)]
    total = a.spans * a.batches
    res: dict[str, object] = {"spans_per_batch": a.spans, "batches": a.batches}

    w = c = 0.0
    for p in payloads:
        _, dw, dc = timed(floor, p)
        w, c = w + dw, c + dc
    res["floor_spans_per_s"] = {"wall": total / w, "cpu": total / c}

    cols, w, c = [], 0.0, 0.0
    for p in payloads:
        out, dw, dc = timed(rows_from_otlp, p)
        cols.append(out)
        w, c = w + dw, c + dc
    res["render_spans_per_s"] = {"wall": total / w, "cpu": total / c}

    with tempfile.TemporaryDirectory() as d:
        settings = Settings.from_env({}, mltrace_dir=Path(d), store_url=f"chdb://{d}/store?database=bench")
        store, ow, oc = timed(open_store, settings)
        res["open_fresh_s"] = {"wall": ow, "cpu": oc}
        store.close()
        store, ow, oc = timed(open_store, settings)
        res["open_migrated_s"] = {"wall": ow, "cpu": oc}
        store.command("warm", "SELECT 1")
        fresh = [make_request(a.spans, 1000 + s) for s in range(a.batches)]
        w = c = w2 = 0.0
        for col, p in zip(cols, fresh, strict=True):  # interleaved: both see the same merges
            _, dw, dc = timed(insert_columns, store, col)
            w, c = w + dw, c + dc
            _, dw, _ = timed(store.insert_otlp, p)
            w2 += dw
        res["insert_rows_per_s"] = {"wall": total / w, "cpu_client": total / c}
        res["insert_otlp_spans_per_s"] = {"wall": total / w2}
        native = [make_request(a.spans, 2000 + s) for s in range(a.batches)]
        w = c = 0.0
        for p in native:
            _, dw, dc = timed(store.insert_requests, [p], a.spans)
            w, c = w + dw, c + dc
        res["insert_requests_spans_per_s"] = {"wall": total / w, "cpu": total / c}
        runs = store.query("n", "SELECT count() FROM mltrace_runs FINAL")[0][0]
        assert runs == 3 * total, runs
        store.close()

    fl, rd = res["floor_spans_per_s"], res["render_spans_per_s"]
    ins, e2e = res["insert_rows_per_s"], res["insert_otlp_spans_per_s"]
    print(f"floor (parse + touch attributes): {fl['cpu']:,.0f} spans/s CPU")
    print(f"render rows_from_otlp:           {rd['cpu']:,.0f} spans/s CPU ({rd['wall']:,.0f} wall), "
          f"{rd['cpu'] / fl['cpu']:.2f} x floor")
    print(f"insert pre-rendered rows:        {ins['wall']:,.0f} rows/s wall")
    print(f"insert_otlp (render + insert):   {e2e['wall']:,.0f} spans/s wall, "
          f"{e2e['wall'] / ins['wall']:.2f} x bulk insert")
    nat = res["insert_requests_spans_per_s"]
    print(f"insert_requests (native: ClickHouse parses and renders): {nat['wall']:,.0f} spans/s wall, "
          f"{nat['cpu']:,.0f} spans/s CPU, {nat['wall'] / e2e['wall']:.2f} x insert_otlp")
    print(f"open_store fresh: {res['open_fresh_s']['wall']:.2f} s, migrated: "
          f"{res['open_migrated_s']['wall'] * 1000:.0f} ms")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
