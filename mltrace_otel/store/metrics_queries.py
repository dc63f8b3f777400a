"""The SQL behind ``/metrics``: a few aggregate queries over the whole store, run at scrape time.

Each function runs ONE set-based query (never one per run or component) and returns frozen
dataclasses for :mod:`mltrace_otel.metrics`. Runs are de-duplicated by run id (a span delivered
twice is one run). Attribute and event names come from :mod:`mltrace_otel.conventions` as bound
parameters; the database is the only spliced identifier.

Imports only conventions, the store's protocols and the schema's identifier quoting.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mltrace_otel import conventions as C
from mltrace_otel.store.protocols import Connection
from mltrace_otel.store.schema import quote_ident

ERROR_STATUSES = ("Error", "STATUS_CODE_ERROR")
"""StatusCode values of a failed run (current and pre-2024 exporter spellings)."""


@dataclass(frozen=True)
class RunTotals:
    """Runs of one component with one status (``ok`` or ``error``; Unset counts as ok).

    ``bucket_counts[i]`` = runs whose duration is <= ``buckets[i]`` seconds (cumulative).
    ``last_end`` = end of the latest of these runs, seconds since the epoch.
    """

    component: str
    status: str
    runs: int
    duration_sum_s: float
    bucket_counts: tuple[int, ...]
    last_end: float


@dataclass(frozen=True)
class TestTotals:
    """How many times one test method of one component passed (or failed)."""

    __test__ = False

    component: str
    test: str
    method: str
    passed: bool
    count: int


@dataclass(frozen=True)
class OutputStatsRow:
    """One output-stats event of one run (the newest ``per_series`` runs per series)."""

    component: str
    output: str
    column: str
    run_id: str
    start: float  # run start, seconds since the epoch
    count: int
    nulls: int
    min: float | None
    max: float | None
    mean: float | None
    sum: float | None
    sketch: str


@dataclass(frozen=True)
class EngineMemory:
    """The embedded engine's memory, in bytes: what its memory tracker counts (``tracked``: the
    inserts, merges, queries and caches in flight), and what its allocator (jemalloc) holds in
    live allocations (``allocated``) and at most in RAM (``resident``: the live allocations plus
    freed pages not yet returned to the system; jemalloc's upper bound, as pages mapped but never
    touched count too)."""

    tracked: int
    allocated: int
    resident: int


_JEMALLOC_TOTALS = re.compile(r"Allocated: (\d+), active: \d+, metadata: \d+.*?, resident: (\d+)")


def engine_memory(store: Connection) -> EngineMemory:
    """The memory of the engine behind ``store`` (on the embedded store: this process's).

    Raises:
        ValueError: the engine does not report one of the figures in the form read here.
        QueryError: it has no such statistics (an engine without ``system.jemalloc_stats``).
    """
    tracked = store.query("engine_memory_tracked",
                          "SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'")
    stats = store.query("engine_memory_allocator",
                        "SELECT substring(stats, 1, 20000) FROM system.jemalloc_stats")
    m = _JEMALLOC_TOTALS.search(stats[0][0]) if stats else None
    if not tracked or m is None:
        raise ValueError("the engine's memory statistics are not in the expected form")
    return EngineMemory(tracked=int(tracked[0][0]), allocated=int(m[1]), resident=int(m[2]))


def _db(store: Connection) -> str:
    return quote_ident(store.database)


def run_totals(store: Connection, buckets: Sequence[float]) -> list[RunTotals]:
    """Per component and status: run count, duration sum, cumulative duration buckets, last end."""
    db = _db(store)
    sql = f"""
        SELECT Component, status, count(), sum(d),
               sumForEach(arrayMap(b -> toUInt64(d <= b), {{buckets:Array(Float64)}})),
               max(e)
        FROM (
            SELECT RunId, any(Component) AS Component,
                   if(any(StatusCode) IN {{errors:Array(String)}}, 'error', 'ok') AS status,
                   any(DurationNs) / 1e9 AS d,
                   toUnixTimestamp64Milli(any(End)) / 1000.0 AS e
            FROM {db}.mltrace_runs
            GROUP BY RunId
        )
        GROUP BY Component, status
        ORDER BY Component, status
    """
    rows = store.query("metrics_run_totals", sql,
                       {"buckets": [float(b) for b in buckets], "errors": list(ERROR_STATUSES)})
    return [RunTotals(str(c), str(s), int(n), float(ds), tuple(int(x) for x in bc), float(e))
            for c, s, n, ds, bc, e in rows]


def test_totals(store: Connection) -> list[TestTotals]:
    """Per component, test name, method and outcome: how many runs ran it."""
    db = _db(store)
    sql = f"""
        SELECT Component, name, method, passed, count()
        FROM (
            SELECT RunId, any(Component) AS Component, any(TestNames) AS names,
                   any(TestMethods) AS methods, any(TestPassed) AS oks
            FROM {db}.mltrace_runs
            GROUP BY RunId
        )
        ARRAY JOIN names AS name, methods AS method, oks AS passed
        GROUP BY Component, name, method, passed
        ORDER BY Component, name, method, passed
    """
    return [TestTotals(str(c), str(t), str(m), bool(p), int(n))
            for c, t, m, p, n in store.query("metrics_test_totals", sql)]


def flagged_outputs(store: Connection) -> tuple[int, dict[str, int]]:
    """(number of flagged outputs, per producing component: how many of them it wrote)."""
    db = _db(store)
    sql = f"""
        WITH flagged AS (
            SELECT Pointer FROM {db}.mltrace_flags GROUP BY Pointer HAVING argMax(Flagged, Version) = 1
        )
        SELECT '' AS Component, count() FROM flagged
        UNION ALL
        SELECT Component, uniqExact(Pointer) FROM {db}.mltrace_io
        WHERE Role = 'out' AND Pointer IN (SELECT Pointer FROM flagged)
        GROUP BY Component
    """
    total, per = 0, {}
    for comp, n in store.query("metrics_flagged_outputs", sql):
        if comp == "":
            total = int(n)
        else:
            per[str(comp)] = int(n)
    return total, per


# The output-stats events (mltrace.output.stats) of run spans, one row each: the same keys,
# fields and parameters for every query that reads them (fixed SQL; values are bound).
_STATS_KEYS = """SpanAttributes[{a_component:String}] AS component,
                   a[{a_output:String}] AS output,
                   a[{a_column:String}] AS col,
                   SpanId AS run_id,"""
_STATS_FIELDS = """toUInt64OrZero(a[{a_count:String}]) AS cnt,
                   toUInt64OrZero(a[{a_nulls:String}]) AS nulls,
                   toFloat64OrNull(a[{a_min:String}]) AS mn,
                   toFloat64OrNull(a[{a_max:String}]) AS mx,
                   toFloat64OrNull(a[{a_mean:String}]) AS mean,
                   toFloat64OrNull(a[{a_sum:String}]) AS total,
                   a[{a_sketch:String}] AS sketch"""
_STATS_PARAMS: dict[str, str] = {
    "a_component": C.COMPONENT_NAME, "a_output": C.STATS_OUTPUT, "a_column": C.STATS_COLUMN,
    "a_count": C.STATS_COUNT, "a_nulls": C.STATS_NULLS, "a_min": C.STATS_MIN,
    "a_max": C.STATS_MAX, "a_mean": C.STATS_MEAN, "a_sum": C.STATS_SUM,
    "a_sketch": C.STATS_SKETCH, "event": C.EVENT_OUTPUT_STATS,
}


def _stats_events(db: str) -> str:
    """FROM clause: each run span's output-stats events as rows ``a`` (attribute maps)."""
    return (f"FROM {db}.otel_traces\n            ARRAY JOIN arrayFilter((x, n) -> n = {{event:String}}, "
            "Events.Attributes, Events.Name) AS a")


def _stats_rows(rows: list[tuple]) -> list[OutputStatsRow]:
    return [OutputStatsRow(str(c), str(o), str(col), str(r), float(s), int(n), int(nu),
                           _f(mn), _f(mx), _f(me), _f(su), str(sk))
            for c, o, col, r, s, n, nu, mn, mx, me, su, sk in rows]


def output_stats(store: Connection, per_series: int, lookback_s: int) -> list[OutputStatsRow]:
    """The newest ``per_series`` runs' output-stats events of each (component, output, column),
    among spans that started in the last ``lookback_s`` seconds; newest first within a series."""
    db = _db(store)
    sql = f"""
        SELECT component, output, col, run_id, start, cnt, nulls, mn, mx, mean, total, sketch
        FROM (
            SELECT {_STATS_KEYS}
                   toUnixTimestamp64Milli(Timestamp) / 1000.0 AS start,
                   {_STATS_FIELDS}
            {_stats_events(db)}
            WHERE Timestamp >= now64(9) - toIntervalSecond({{lookback:UInt64}})
              AND SpanAttributes[{{a_component:String}}] != ''
              AND has(Events.Name, {{event:String}})
            ORDER BY component, output, col, start DESC, run_id
            LIMIT 1 BY component, output, col, run_id
        )
        ORDER BY component, output, col, start DESC, run_id
        LIMIT {{per_series:UInt32}} BY component, output, col
    """
    params = {**_STATS_PARAMS, "lookback": int(lookback_s), "per_series": int(per_series)}
    return _stats_rows(store.query("metrics_output_stats", sql, params))


def _f(v: object) -> float | None:
    return None if v is None else float(v)  # type: ignore[arg-type]


def run_output_stats(store: Connection, component: str, run_ids: Sequence[str], lo_ns: int, hi_ns: int
                     ) -> list[OutputStatsRow]:
    """The output-stats events of the given runs of one component (runs that started between
    ``lo_ns`` and ``hi_ns``, nanoseconds since the epoch), oldest run first within a series;
    one row per (output, column, run). For the history page's output charts."""
    if not run_ids:
        return []
    db = _db(store)
    sql = f"""
        SELECT component, output, col, run_id, start, cnt, nulls, mn, mx, mean, total, sketch
        FROM (
            SELECT {_STATS_KEYS}
                   Timestamp AS ts,
                   toUnixTimestamp64Nano(Timestamp) / 1e9 AS start,
                   {_STATS_FIELDS}
            {_stats_events(db)}
            WHERE Timestamp >= fromUnixTimestamp64Nano({{lo:Int64}})
              AND Timestamp <= fromUnixTimestamp64Nano({{hi:Int64}})
              AND SpanAttributes[{{a_component:String}}] = {{component:String}}
              AND SpanId IN {{runs:Array(String)}}
              AND has(Events.Name, {{event:String}})
            ORDER BY output, col, ts, run_id
            LIMIT 1 BY output, col, run_id
        )
        ORDER BY output, col, ts, run_id
    """
    params = {**_STATS_PARAMS, "component": str(component), "runs": [str(r) for r in run_ids],
              "lo": int(lo_ns), "hi": int(hi_ns)}
    return _stats_rows(store.query("history_output_stats", sql, params))
