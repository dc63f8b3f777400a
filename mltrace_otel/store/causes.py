"""Causes: inherited staleness (a run is stale when a run upstream of it is) and what changed
since a component's previous run (inputs, outputs, code), for inspect and review.

Inherited staleness (DESIGN.md "Versions and causes"): a run whose dependency is stale, for a
direct cause or an inherited one, gets one ``upstream_stale`` reason per root cause, naming the
path down to the stale run and that run's own message:
``report (ID …) read clean.csv from clean (ID …), which is stale: extract (ID …) has a newer run
now (ID …).`` It is computed from runs already read (a walk holds every run upstream of its
runs), never with a query of its own; inherited reasons are kept apart from direct ones
(``StaleReason.inherited``) so views can show them apart and filter them out.

Changes: the previous run of a run's component is resolved like a set_upstream dependency (one
set-based lineage read for a batch), and code is compared by a hash of its snapshot (one read of
otel_traces for the batch).

Imports: runs, models, protocols, conventions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from mltrace_otel.conventions import CODE_SNAPSHOT
from mltrace_otel.store.models import Change, Hop, Pointer, Run, StaleReason
from mltrace_otel.store.protocols import Connection
from mltrace_otel.store.runs import run_from_json, run_query

MAX_INHERITED = 10
"""Inherited reasons kept per run (distinct root causes, shortest paths first)."""

_Cause = tuple[str, StaleReason, tuple[Hop, ...]]  # (stale run id, its direct reason, hops to it)


def _hop_text(hop: Hop, first: bool) -> str:
    lead = "" if first else ", which "
    if hop.pointer:
        return f"{lead}read {hop.pointer} from {hop.component} (ID {hop.run})"
    return f"{lead}depends on {hop.component} (ID {hop.run})"


def inherited_message(run: Run, hops: Sequence[Hop], root: StaleReason) -> str:
    """``"{run} (ID …) read {p} from {dep} (ID …)[, which read …], which is stale: {root}"``."""
    path = "".join(_hop_text(h, i == 0) for i, h in enumerate(hops))
    return f"{run.component} (ID {run.id}) {path}, which is stale: {root.message}"


def inherit(runs: Sequence[Run], deps: dict[str, list[tuple[str, str]]]) -> dict[str, Run]:
    """Runs (by id) with inherited reasons added after their direct ones.

    ``runs`` must hold every run upstream of the runs whose inherited staleness is wanted (a
    walk's runs, annotated with direct causes); ``deps`` their dependencies. Runs are visited
    by start (a producer starts no later than its readers), so each run's causes are built from
    its dependencies' once; a dependency not yet visited (equal starts) passes on its direct
    causes only.
    """
    by_id = {r.id: r for r in runs}
    causes: dict[str, list[_Cause]] = {}
    out: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: (r.start, r.id)):
        mine: list[_Cause] = []
        seen: set[tuple[str, str]] = set()
        for dep_id, ptr in deps.get(run.id, ()):
            dep = by_id.get(dep_id)
            if dep is None or dep_id == run.id:
                continue
            version = next((p.version for p in run.inputs if p.name == ptr and p.version), "") or \
                next((p.version for p in dep.outputs if p.name == ptr), "")
            hop = Hop(dep_id, dep.component, ptr, version)
            upstream = causes.get(dep_id)
            if upstream is None:
                upstream = [(dep_id, r, ()) for r in dep.stale_direct]
            for stale_id, reason, hops in upstream:
                key = (stale_id, reason.message)
                if key not in seen:
                    seen.add(key)
                    mine.append((stale_id, reason, (hop, *hops)))
        mine.sort(key=lambda c: len(c[2]))
        inherited = tuple(
            StaleReason("upstream_stale", inherited_message(run, hops, reason), stale_id,
                        by_id[stale_id].component, hops[0].pointer, inherited=True, path=hops,
                        root=reason)
            for stale_id, reason, hops in mine[:MAX_INHERITED])
        causes[run.id] = [(run.id, r, ()) for r in run.stale_direct] + mine[:MAX_INHERITED]
        reasons = run.stale_direct + inherited
        out[run.id] = replace(run, stale_reasons=reasons, stale=tuple(r.message for r in reasons))
    return out


def direct_only(run: Run) -> Run:
    """The run with its inherited staleness reasons dropped (``stale --direct``)."""
    reasons = run.stale_direct
    return replace(run, stale_reasons=reasons, stale=tuple(r.message for r in reasons))


# --- changes since the component's previous run -------------------------------------------------
# The code snapshot's hash of runs by (service, start, id): one read of otel_traces, pruned by
# partition (day) and its key's service; the attribute map is read only for the runs' rows
# (PREWHERE). "" when a run has no snapshot.
CODE_HASHES = """
SELECT SpanId, if(SpanAttributes[{key:String}] = '', '',
                  lower(hex(sipHash128(SpanAttributes[{key:String}]))))
FROM {{db}}.otel_traces
PREWHERE SpanId IN {ids:Array(String)} AND toUnixTimestamp64Nano(Timestamp) IN {starts:Array(Int64)}
WHERE ServiceName IN {services:Array(String)}
  AND toDate(Timestamp) IN arrayMap(x -> toDate(fromUnixTimestamp64Nano(x)), {starts:Array(Int64)})
"""


def code_hashes(store: Connection, runs: Sequence[tuple[Run, int]]) -> dict[str, str]:
    """Hash of each run's code snapshot (absent: no span found), one query."""
    if not runs:
        return {}
    params = {
        "key": CODE_SNAPSHOT,
        "services": sorted({r.service_name for r, _ in runs}),
        "starts": sorted({ns for _r, ns in runs}),
        "ids": sorted({r.id for r, _ in runs}),
    }
    return {rid: h for rid, h in run_query(store, "code_hashes", CODE_HASHES, params)}


# A run's previous run, for a batch, in one query read from mltrace_lineage's
# lineage_by_component projection (Component, Start, RunId, Row): part 'b', the runs of the
# batch's components between its earliest and latest run of each (capped: a run's previous run
# is the one before it there); one part 'e' per component, the newest runs started no later than
# its earliest run in the batch (read in order, newest first). Each part's text is the same
# with numbered parameters; every value is bound.
_BETWEEN = """
    SELECT 'b' AS Kind, RunId, Row FROM {{db}}.mltrace_lineage
    WHERE Component IN {comps:Array(String)}
      AND Start >= fromUnixTimestamp64Nano({lo:Int64}) AND Start <= fromUnixTimestamp64Nano({hi:Int64})
      AND toUnixTimestamp64Nano(Start) >= {los:Array(Int64)}[indexOf({comps:Array(String)}, Component)]
      AND toUnixTimestamp64Nano(Start) <= {his:Array(Int64)}[indexOf({comps:Array(String)}, Component)]
    LIMIT {cap:UInt32}"""

_BEFORE = """
    SELECT * FROM (SELECT 'e' AS Kind, RunId, Row FROM {{db}}.mltrace_lineage
    WHERE Component = {c%d:String} AND Start <= fromUnixTimestamp64Nano({t%d:Int64})
    ORDER BY Start DESC, RunId DESC
    LIMIT {k:UInt32})"""

RUNS_BETWEEN_CAP = 20000
"""Rows the read of runs between a batch's runs may return; past it, runs whose previous run
that read cannot tell are left without one (``previous_run`` "")."""


def previous_runs(store: Connection, runs: Sequence[tuple[Run, int]]) -> dict[str, tuple[Run, int]]:
    """Each run's component's previous run (the latest other run of that component started
    before it, or at the same time with a smaller id), by run id: one query for the batch."""
    if not runs:
        return {}
    by_comp: dict[str, list[tuple[int, str]]] = {}
    for r, ns in runs:
        by_comp.setdefault(r.component, []).append((ns, r.id))
    comps = sorted(by_comp)
    los = [min(by_comp[c])[0] for c in comps]
    his = [max(by_comp[c])[0] for c in comps]
    parts = [_BETWEEN]
    params: dict[str, Any] = {"comps": comps, "los": los, "his": his, "lo": min(los),
                              "hi": max(his), "cap": RUNS_BETWEEN_CAP, "k": 4}
    for i, c in enumerate(comps):
        parts.append(_BEFORE.replace("%d", str(i)))
        params[f"c{i}"], params[f"t{i}"] = c, los[i]
    rows = run_query(store, "previous_runs", "\nUNION ALL\n".join(parts), params)
    seen: dict[str, tuple[Run, int]] = {}
    for _kind, rid, row in rows:
        if rid not in seen:
            seen[rid] = run_from_json(row)
    capped = sum(1 for r in rows if r[0] == "b") >= RUNS_BETWEEN_CAP
    seq: dict[str, list[tuple[int, str]]] = {}
    for rid, (run, ns) in seen.items():
        seq.setdefault(run.component, []).append((ns, rid))
    out: dict[str, tuple[Run, int]] = {}
    for c in comps:
        ordered = sorted(seq.get(c, []))
        for ns, rid in by_comp[c]:
            before = [x for x in ordered if x < (ns, rid)]
            if before and not (capped and (ns, rid) != min(by_comp[c])):
                out[rid] = seen[before[-1][1]]
    return out


def _pointer_changes(what: str, now: Sequence[Pointer], before: Sequence[Pointer]) -> list[Change]:
    prev = {p.name: p.version for p in before}
    out = []
    for p in now:
        if p.name not in prev:
            out.append(Change(what, p.name, "", p.version))
        elif p.version and prev[p.name] and p.version != prev[p.name]:
            out.append(Change(what, p.name, prev[p.name], p.version))
    return out


def with_changes(store: Connection, runs: Sequence[tuple[Run, int]]) -> dict[str, Run]:
    """Runs (by id) with ``previous_run``, ``code_hash`` and ``changes`` filled: two queries
    for the batch (previous runs; code hashes of the runs and their previous runs)."""
    prev = previous_runs(store, runs)
    hashes = code_hashes(store, [*runs, *{p[0].id: p for p in prev.values()}.values()])
    out = {}
    for run, _ns in runs:
        before = prev.get(run.id)
        code = hashes.get(run.id, "")
        changes: list[Change] = []
        if before is not None:
            b = before[0]
            changes += _pointer_changes("input", run.inputs, b.inputs)
            changes += _pointer_changes("output", run.outputs, b.outputs)
            old = hashes.get(b.id, "")
            if code and old and code != old:
                changes.append(Change("code", "", old, code))
        out[run.id] = replace(run, previous_run=before[0].id if before else "", code_hash=code,
                              changes=tuple(changes))
    return out
