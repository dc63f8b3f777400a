"""Staleness, computed at query time so it is always current.

For each dependency ``dep`` of a run (the producer of an input, or a set_upstream run):

1. mltrace's first rule: the run started more than its threshold (``StalenessThresholdS``, from
   the span; 30 days by default) after ``dep`` started:
   ``"{component} (ID {id}) was run {N} days ago."``
2. mltrace's second rule: when the run started, ``dep``'s component had ``k`` fresher runs that
   began between ``dep`` and the run:
   ``"{component} (ID {id}) has {k} fresher run(s) that began before this component run started."``
   (``run`` when k == 1, ``runs`` otherwise).
3. Ours: since this run started, ``dep``'s component has written the pointer again (for a
   set_upstream dependency: has run again), so what the run read is superseded now:
   ``"{component} (ID {id}) has a newer run now (ID {newer_id})."``

One query for a whole batch of runs (the runs_by_component projection answers it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from mltrace_otel.store import queries
from mltrace_otel.store.models import Pointer, Run

_NS_PER_S = 1_000_000_000
_DAY_S = 86400

# Every part's rows are (kind, a, b, c, ns). 'w': runs of the dependencies' components that
# began inside [earliest dep start, latest run start] (rule 2; annotate keeps those inside some
# [dep start, run start] window of their component), at most WINDOW_CAP rows: plain column
# reads cost the engine least (each expression and sort adds to every query). A capped read is
# asked again as 'W', filtered per window in SQL. Part 'p': the latest writer of each read
# pointer, per writing component, that began after the earliest of the runs (rule 3). Part
# 'c': the same per component, for set_upstream dependencies. Notes and flags: raw versioned
# rows (annotate keeps the latest per key).
_WINDOWS = """
SELECT 'w' AS kind, Component, '' AS Pointer, RunId, toUnixTimestamp64Nano(Start) AS ns
FROM {{db}}.mltrace_runs
WHERE Component IN {comps:Array(String)}
  AND Start >= fromUnixTimestamp64Nano({lo:Int64}) AND Start <= fromUnixTimestamp64Nano({hi:Int64})
LIMIT {wcap:UInt32}"""

_WINDOWS_FILTERED = """
SELECT 'W' AS kind, Component, '' AS Pointer, RunId, toUnixTimestamp64Nano(Start) AS ns
FROM {{db}}.mltrace_runs
WHERE Component IN {comps:Array(String)}
  AND Start >= fromUnixTimestamp64Nano({lo:Int64}) AND Start <= fromUnixTimestamp64Nano({hi:Int64})
  AND arrayExists(w -> w.1 = Component AND ns >= w.2 AND ns <= w.3,
                  {windows:Array(Tuple(String, Int64, Int64))})
LIMIT 1 BY RunId"""

WINDOW_CAP = 2048
"""Rows the unfiltered window read may return before the filtered read is used instead."""

_NEWER_WRITERS = """
SELECT 'p' AS kind, Component, Pointer, argMax(RunId, (Start, RunId)), max(toUnixTimestamp64Nano(Start))
FROM {{db}}.mltrace_lineage
WHERE Pointer IN {ptrs:Array(String)} AND Start > fromUnixTimestamp64Nano({after:Int64})
GROUP BY Component, Pointer"""

_NOTES = """
SELECT 'n' AS kind, Notes, '' AS Pointer, RunId, toUnixTimestamp64Nano(Version) AS ns
FROM {{db}}.mltrace_notes
WHERE RunId IN {ids:Array(String)}"""

_FLAGS = """
SELECT 'f' AS kind, toString(Flagged), Pointer, '' AS RunId, toUnixTimestamp64Nano(Version) AS ns
FROM {{db}}.mltrace_flags
WHERE Pointer IN {allptrs:Array(String)}"""

_NEWER_RUNS = """
SELECT 'c' AS kind, Component, '' AS Pointer, argMax(RunId, (Start, RunId)),
       max(toUnixTimestamp64Nano(Start))
FROM {{db}}.mltrace_runs
WHERE Component IN {ucomps:Array(String)} AND Start > fromUnixTimestamp64Nano({after:Int64})
GROUP BY Component"""


def fresher_message(component: str, dep_id: str, k: int) -> str:
    """mltrace's second staleness message."""
    word = "run" if k == 1 else "runs"
    return (f"{component} (ID {dep_id}) has {k} fresher {word} that began before this "
            "component run started.")


def old_message(component: str, dep_id: str, days: int) -> str:
    """mltrace's first staleness message."""
    return f"{component} (ID {dep_id}) was run {days} days ago."


def newer_message(component: str, dep_id: str, newer_id: str) -> str:
    """Our third rule's message, in mltrace's style."""
    return f"{component} (ID {dep_id}) has a newer run now (ID {newer_id})."


def annotate(store: Any, runs: Sequence[tuple[Run, int]], deps: dict[str, list[tuple[str, str]]],
             infos: dict[str, Any] | None = None,
             writers: dict[str, dict[str, Any]] | None = None) -> list[Run]:
    """Runs with ``dependencies``, ``stale``, notes written later and pointer flags filled, in
    the given order: one query (notes, flags and staleness together).

    Args:
        runs: (run, start in ns) pairs.
        deps: ``{run id: [(producer id, pointer)]}`` from :func:`.lineage.dependencies`.
        infos: lineage Info of runs already known (producers), to skip looking them up.
        writers: ``{pointer: {run id: Info}}``, every writer of those pointers (from the
            lineage reads that resolved ``deps``): rule 3 needs no query for them.
    """
    from mltrace_otel.store import lineage

    if not runs:
        return []
    known = {run.id: (run.component, ns) for run, ns in runs}
    for rid, info in (infos or {}).items():
        known.setdefault(rid, (info.component, info.ns))
    missing = {p for run, _ in runs for p, _ptr in deps.get(run.id, ()) if p not in known}
    for rid, info in lineage.lineage_info(store, missing).items():
        known[rid] = (info.component, info.ns)
    pairs = []  # (run, run_ns, dep_id, dep_component, dep_ns, pointers read from dep)
    for run, ns in runs:
        by_dep: dict[str, list[str]] = {}
        for dep_id, ptr in deps.get(run.id, ()):
            by_dep.setdefault(dep_id, []).append(ptr)
        for dep_id, ptrs in by_dep.items():
            if dep_id in known:
                comp, dns = known[dep_id]
                pairs.append((run, ns, dep_id, comp, dns, ptrs))
    windows = sorted({(c, dns, ns) for _r, ns, _d, c, dns, _p in pairs if dns <= ns})
    after = min((p[1] for p in pairs), default=0)
    latest: dict[tuple[str, str], tuple[str, int]] = {}
    read = {x for p in pairs for x in p[5] if x}
    writers = writers or {}
    for ptr in read & writers.keys():  # rule 3 from the writers already read
        for w in writers[ptr].values():
            if w.ns > after:
                key = (w.component, ptr)
                if key not in latest or (w.ns, w.id) > (latest[key][1], latest[key][0]):
                    latest[key] = (w.id, w.ns)
    params = {
        "ids": sorted({run.id for run, _ in runs}),
        "allptrs": sorted({p.name for run, _ in runs for p in (*run.inputs, *run.outputs)}),
        "comps": sorted({p[3] for p in pairs}),
        "windows": windows,
        "lo": min((w[1] for w in windows), default=0),
        "hi": max((w[2] for w in windows), default=0),
        "ptrs": sorted(read - writers.keys()),
        "ucomps": sorted({p[3] for p in pairs if "" in p[5]}),
        "after": after,
        "wcap": WINDOW_CAP,
    }
    parts = [text for text, key in ((_NOTES, "ids"), (_FLAGS, "allptrs"), (_WINDOWS, "windows"),
                                    (_NEWER_WRITERS, "ptrs"), (_NEWER_RUNS, "ucomps")) if params[key]]
    rows = queries.run_query(store, "staleness", "\nUNION ALL\n".join(parts), params)
    if sum(1 for r in rows if r[0] == "w") >= WINDOW_CAP:  # wide windows: filter them in SQL
        rows = [r for r in rows if r[0] != "w"] + queries.run_query(
            store, "staleness_windows", _WINDOWS_FILTERED, params)
    window_rows: dict[str, set[tuple[str, int]]] = {}
    notes: dict[str, tuple[int, str]] = {}
    flags: dict[str, tuple[int, str]] = {}
    for kind, comp, ptr, rid, rns in rows:
        if kind in ("w", "W"):
            window_rows.setdefault(comp, set()).add((rid, int(rns)))
        elif kind == "n":  # latest version wins (comp holds the notes)
            if rid not in notes or int(rns) >= notes[rid][0]:
                notes[rid] = (int(rns), comp)
        elif kind == "f":  # latest version wins (comp holds the flag)
            if ptr not in flags or int(rns) >= flags[ptr][0]:
                flags[ptr] = (int(rns), comp)
        else:
            latest[(comp, ptr)] = (rid, int(rns))
    flagged = {p for p, (_v, f) in flags.items() if f == "1"}
    stale: dict[str, list[str]] = {}
    for run, ns, dep_id, comp, dns, ptrs in pairs:
        msgs = stale.setdefault(run.id, [])
        diff_s = (ns - dns) / _NS_PER_S
        if diff_s > run.staleness_threshold_s:
            msgs.append(old_message(comp, dep_id, int(diff_s // _DAY_S)))
        k = sum(1 for rid, rns in window_rows.get(comp, ())
                if dns <= rns <= ns and rid not in (dep_id, run.id))
        if k >= 1:
            msgs.append(fresher_message(comp, dep_id, k))
        newer = [latest[(comp, p)] for p in ptrs if (comp, p) in latest]
        newer = [n for n in newer if n[1] > ns and n[0] not in (dep_id, run.id)]
        if newer:
            msgs.append(newer_message(comp, dep_id, max(newer, key=lambda n: (n[1], n[0]))[0]))

    def flag(ps: tuple[Pointer, ...]) -> tuple[Pointer, ...]:
        return tuple(replace(p, flagged=p.name in flagged) for p in ps)

    return [
        replace(run, dependencies=tuple(dict.fromkeys(p for p, _ptr in deps.get(run.id, ()))),
                stale=tuple(stale.get(run.id, ())),
                notes=notes[run.id][1] if run.id in notes else run.notes,
                inputs=flag(run.inputs), outputs=flag(run.outputs))
        for run, _ns in runs
    ]


# Each component's latest run: max(Start) per component, then the runs at that (Component,
# Start) — both answered by the runs_by_component projection.
LATEST_PER_COMPONENT = """
SELECT Component, RunId FROM {{db}}.mltrace_runs
WHERE (Component, Start) IN (
    SELECT Component, max(Start) FROM {{db}}.mltrace_runs
    WHERE {component:String} = '' OR Component = {component:String}
    GROUP BY Component)
"""


def stale_runs(store: Any, component: str | None = None, limit: int = 100) -> list[Run]:
    """The latest run of each component (or of one) that is stale now, newest first."""
    rows = queries.run_query(store, "latest_per_component", LATEST_PER_COMPONENT,
                             {"component": component or ""})
    latest: dict[str, str] = {}
    for comp, rid in rows:  # ties on start: the largest id, as everywhere else
        latest[comp] = max(rid, latest.get(comp, ""))
    runs = queries.complete_runs(store, list(latest.values()))
    stale = sorted((r for r in runs if r.stale), key=lambda r: (r.start, r.id), reverse=True)
    return stale[: max(int(limit), 0)]
