"""Lineage: who produced what a run read (dependencies), trace (upstream) and impact (downstream).

Semantics (DESIGN.md "Semantics"):

- The producer of an input is the latest run that wrote that pointer and started no later than
  the consumer started; where both sides carry a version fingerprint, the latest such run that
  wrote that version. A run that reads and rewrites a pointer is not its own producer.
- ``set_upstream`` names (the run's ``Upstream``) resolve to that component's latest run that
  started no later than the run.
- A walk visits each run once; depth = hops from where it started (first visit wins). Each
  edge carries the version read (the consumer's fingerprint, else what the producer wrote).
- A walk's runs carry inherited staleness (:mod:`.causes`): a trace holds every run upstream
  of its runs; an impact only the runs it reached (so only causes among those).

Set-based: one query resolves the producers of a whole frontier (every input of every run in
it), so a trace costs one query per lineage level, never one per run. Candidates come from
``mltrace_lineage`` (ordered by pointer; each row carries the writer's whole run as one JSON
column, so the next level and the trace's own run list need no other read): every writer of
the frontier's pointers, unsorted and capped; past the cap, the newest WINDOW writers per
pointer started before its latest consumer (and per pointer+version, per set_upstream
component). When a window cannot decide a consumer (many newer writers), those consumers alone
are asked again with their own bound, until decided.

Imports: runs, staleness and causes (a walk's runs come back annotated), models, protocols,
errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mltrace_otel.errors import NotFound
from mltrace_otel.store import causes, staleness
from mltrace_otel.store.models import Lineage, LineageEdge, LineageNode, Run
from mltrace_otel.store.protocols import Connection
from mltrace_otel.store.runs import (
    RUN_ROW_JSON,
    Info,
    Writers,
    fetch_runs,
    json_id,
    lineage_info,
    resolve_run_id,
    run_id_prefix,
    run_query,
)

__all__ = ["Info", "Need", "Writers", "dependencies", "impact", "lineage_info", "needs_of",
           "resolve", "trace", "trace_run", "walked_runs"]

WINDOW = 8
"""Writers fetched per pointer (and per (pointer, version), per component) in one step."""

_ROW = RUN_ROW_JSON

# candidates, each row (Kind, Pointer, Version, Row JSON): writers of the needed pointers from
# mltrace_lineage (ordered by pointer: one index read gives each writer's whole row, so the next
# level needs no other read), and runs of set_upstream components from mltrace_runs.
# 'a': every writer of the pointers, unsorted, capped at EVERY_CAP rows: no sort and no start
# bound in SQL (the engine's cost grows with each column and expression; _decide applies the
# bound), complete when under the cap, the usual case (a pointer has few writers). A batch that
# hits the cap is asked again with the windowed form 'p': the newest WINDOW writers per pointer
# started before the bound.
_CAND_POINTERS_EVERY = """
    SELECT 'a' AS Kind, Pointer, Version, Row FROM {{db}}.mltrace_lineage
    WHERE Pointer IN {ptrs:Array(String)}
    LIMIT {cap:UInt32}"""

_CAND_POINTERS = """
    SELECT 'p' AS Kind, Pointer, Version, Row FROM {{db}}.mltrace_lineage
    WHERE Pointer IN {ptrs:Array(String)}
      AND toUnixTimestamp64Nano(Start) <= {pns:Array(Int64)}[indexOf({ptrs:Array(String)}, Pointer)]
    ORDER BY Pointer DESC, Start DESC, RunId DESC
    LIMIT {k:UInt32} BY Pointer"""

EVERY_CAP = 512
"""Rows the unwindowed candidate read may return before the windowed read is used instead."""

# version-matched writers: the newest WINDOW per (pointer, version) started before the bound.
_CAND_VERSIONS = """
    SELECT 'v' AS Kind, Pointer, Version, Row FROM {{db}}.mltrace_lineage
    WHERE Pointer IN {vptrs:Array(String)}
      AND (Pointer, Version) IN {pv:Array(Tuple(String, String))}
      AND toUnixTimestamp64Nano(Start) <= {vns:Array(Int64)}[indexOf({vptrs:Array(String)}, Pointer)]
    ORDER BY Pointer DESC, Version DESC, Start DESC, RunId DESC
    LIMIT {k:UInt32} BY Pointer, Version"""

# set_upstream components: the newest WINDOW runs per component started before the bound.
_CAND_COMPONENTS = f"""
    SELECT 'c' AS Kind, '' AS Pointer, '' AS Version, Row FROM (
        SELECT RunId, {_ROW} AS Row FROM {{{{db}}}}.mltrace_runs
        WHERE RunId IN (
            SELECT RunId FROM (
                SELECT Component, RunId, Start FROM {{{{db}}}}.mltrace_runs
                WHERE Component IN {{comps:Array(String)}}
                  AND toUnixTimestamp64Nano(Start)
                      <= {{cns:Array(Int64)}}[indexOf({{comps:Array(String)}}, Component)]
                LIMIT 1 BY Component, RunId)
            ORDER BY Component, Start DESC, RunId DESC
            LIMIT {{k:UInt32}} BY Component)
        LIMIT 1 BY RunId)"""

# consumers of pointers (impact): readers started no earlier than the earliest writer given
# (their rows are then read by id, lineage_info).
READER_IDS = """
SELECT DISTINCT RunId FROM {{db}}.mltrace_io
WHERE Role = 'in' AND Pointer IN {ptrs:Array(String)}
  AND toUnixTimestamp64Nano(Start) >= {min_ns:Int64}
"""


@dataclass(frozen=True)
class Need:
    """One thing to resolve: ``consumer``'s input ``pointer`` (``version``), or (``upstream``
    set) the component named by a set_upstream call. ``consumer`` "" = no consumer (the latest
    writer of an output)."""

    consumer: str
    ns: int
    pointer: str = ""
    version: str = ""
    upstream: str = ""


NO_BOUND = 2**63 - 1
"""The bound of a need with no consumer: every writer, however late it started."""


def needs_of(info: Info) -> list[Need]:
    """Everything a run depends on: each input (once per pointer) and each upstream name."""
    seen: set[str] = set()
    out = []
    for p, v in info.inputs:
        if p not in seen:
            seen.add(p)
            out.append(Need(info.id, info.ns, pointer=p, version=v))
    out += [Need(info.id, info.ns, upstream=u) for u in dict.fromkeys(info.upstream) if u]
    return out


# mltrace_lineage holds a row with Pointer '' for each run that wrote nothing (migration 0020);
# a pointer named '' (only then) skips them: their Row's outputs (element 15) are empty.
_SKIP_NO_OUTPUT = " AND (Pointer != '' OR JSONLength(Row, 15) > 0)"


def _candidates(store: Connection, needs: Sequence[Need], windowed: bool = False,
                writers: Writers | None = None,
                extra: staleness.Prefetch | None = None) -> tuple[dict[str, Info], dict[str, int]]:
    """One query: candidate producers (with lineage columns) for a batch of needs, and how many
    rows each window (pointer, pointer+version, component) returned (a full window may hide
    older writers). First every writer of the pointers (complete unless capped); when capped,
    again with a window per pointer.

    ``extra``: a :class:`.staleness.Prefetch` whose parts (notes, flags, guessed windows) ride
    along in the same query (its rows go to ``extra.take``)."""
    pbound: dict[str, int] = {}
    vbound: dict[str, int] = {}
    pairs: set[tuple[str, str]] = set()
    cbound: dict[str, int] = {}
    for n in needs:
        if n.upstream:
            cbound[n.upstream] = max(cbound.get(n.upstream, 0), n.ns)
            continue
        pbound[n.pointer] = max(pbound.get(n.pointer, 0), n.ns)
        if n.version:
            vbound[n.pointer] = max(vbound.get(n.pointer, 0), n.ns)
            pairs.add((n.pointer, n.version))
    parts: list[str] = []
    params: dict[str, Any] = {"k": WINDOW}
    if pbound:
        parts.append(_CAND_POINTERS if windowed else _CAND_POINTERS_EVERY)
        params["ptrs"] = list(pbound)
        if windowed:
            params["pns"] = list(pbound.values())
        else:
            params["cap"] = EVERY_CAP
    if pairs:
        parts.append(_CAND_VERSIONS)
        params.update(vptrs=list(vbound), vns=list(vbound.values()), pv=sorted(pairs))
    if cbound:
        parts.append(_CAND_COMPONENTS)
        params.update(comps=list(cbound), cns=list(cbound.values()))
    if "" in pbound:
        parts = [p.replace("Array(String)}\n", "Array(String)}" + _SKIP_NO_OUTPUT + "\n", 1)
                 if "WHERE Pointer IN" in p else p for p in parts]
    if extra is not None:
        more, more_params = extra.parts()
        parts += more
        params.update(more_params)
    if not parts:
        return {}, {}
    text = "\nUNION ALL\n".join(parts)  # no SELECT * FROM (...) around each: ~0.5 ms each
    rows = run_query(store, "producer_candidates", text, params)
    if not windowed and sum(1 for r in rows if r[0] == "a") >= EVERY_CAP:
        return _candidates(store, needs, windowed=True, writers=writers, extra=extra)
    if extra is not None:
        extra.take([r for r in rows if r[0] in ("n", "f", "w")])
        rows = [r for r in rows if r[0] not in ("n", "f", "w")]
    out: dict[str, Info] = {}
    counts: dict[str, int] = {}
    if writers is not None and pbound and not windowed:
        for p in pbound:
            writers.setdefault(p, {})
    for kind, ptr, version, row in rows:
        rid = json_id(row)
        if rid not in out:  # one row per pointer a run wrote (and duplicates): parse it once
            out[rid] = Info.of_row(row)
        if kind == "a":  # complete: every writer of the pointer, never a full window
            if writers is not None:
                writers.setdefault(ptr, {})[rid] = out[rid]
            continue
        if kind == "c":
            key = f"c{chr(0)}{out[rid].component}"
        else:  # the row's one output pointer (and version) is its window
            key = chr(0).join((kind, ptr) if kind == "p" else (kind, ptr, version))
        counts[key] = counts.get(key, 0) + 1
    return out, counts



def _full(counts: dict[str, int], *key: str) -> bool:
    return counts.get(chr(0).join(key), 0) >= WINDOW


def _order(i: Info) -> tuple[int, str]:
    return (i.ns, i.id)


def _decide(n: Need, cands: Sequence[Info], counts: dict[str, int]) -> tuple[bool, Info | None]:
    """(decided, producer) for one need from its candidates (see module docstring).

    A window holds the latest writers started no later than the batch's bound, newest first;
    the latest valid one in it is the answer. With none valid, the answer is "no producer"
    unless the window was full (older writers may exist: undecided, asked again)."""
    if n.upstream:
        pool = sorted((c for c in cands if c.component == n.upstream), key=_order, reverse=True)
        valid = [c for c in pool if c.ns <= n.ns and c.id != n.consumer]
        if valid:
            return True, valid[0]
        return not _full(counts, "c", n.upstream), None
    pool = sorted((c for c in cands if n.pointer in c.outputs), key=_order, reverse=True)
    valid = [c for c in pool if c.ns <= n.ns and c.id != n.consumer]
    if n.version:
        vvalid = [c for c in valid if c.outputs[n.pointer] == n.version]
        if vvalid:
            return True, vvalid[0]
        if _full(counts, "v", n.pointer, n.version):
            return False, None
    if valid:
        return True, valid[0]
    return not _full(counts, "p", n.pointer), None


def resolve(store: Connection, needs: Sequence[Need], known: dict[str, Info] | None = None,
            writers: Writers | None = None,
            extra: staleness.Prefetch | None = None) -> tuple[list[tuple[Need, Info]], dict[str, Info]]:
    """Producers of a batch of needs: ([(need, producer)], every candidate seen by id).

    One query per round; a second round only for needs the first window could not decide.
    ``writers`` collects every writer of the pointers whose candidate read was complete.
    ``extra`` (a :class:`.staleness.Prefetch`) is read in the first round's query, even when
    there is nothing to resolve.
    """
    seen: dict[str, Info] = dict(known or {})
    out: list[tuple[Need, Info]] = []
    todo = list(needs)
    if not todo and extra is not None:
        _candidates(store, [], writers=writers, extra=extra)
    while todo:
        cands, counts = _candidates(store, todo, writers=writers, extra=extra)
        extra = None
        seen.update(cands)
        pool = list(cands.values())
        undecided = []
        for n in todo:
            decided, producer = _decide(n, pool, counts)
            if not decided:
                undecided.append(n)
            elif producer is not None:
                out.append((n, producer))
        if len(undecided) == len(todo):  # no progress is impossible; never loop forever
            break
        todo = undecided
    return out, seen


def dependencies(store: Connection, runs: dict[str, tuple[Run, int]],
                 infos: dict[str, Info] | None = None, writers: Writers | None = None,
                 extra: staleness.Prefetch | None = None) -> dict[str, list[tuple[str, str]]]:
    """Dependencies of runs (``{id: (Run, start_ns)}``): ``{id: [(producer_id, pointer)]}``,
    pointer "" for set_upstream dependencies. One query (plus rare extra rounds). ``infos``
    collects what was learnt of each producer, ``writers`` every writer of the pointers read;
    ``extra`` (notes and flags, :class:`.staleness.Prefetch`) is read in the same query."""
    needs = []
    for rid, (run, ns) in runs.items():
        info = Info(rid, run.component, ns, tuple((p.name, p.version) for p in run.inputs),
                    tuple(run.upstream), {})
        needs += needs_of(info)
    found, _ = resolve(store, needs, writers=writers, extra=extra)
    deps: dict[str, list[tuple[str, str]]] = {rid: [] for rid in runs}
    for n, prod in found:
        if infos is not None:
            infos.setdefault(prod.id, prod)
        pair = (prod.id, n.pointer)
        if pair not in deps[n.consumer]:
            deps[n.consumer].append(pair)
    return deps


# --- walks ------------------------------------------------------------------------------------
def _latest_writer(store: Connection, output: str, writers: Writers | None = None) -> Info:
    found, _ = resolve(store, [Need("", NO_BOUND, pointer=str(output))], writers=writers)
    if not found:
        raise NotFound(f"no run wrote {output!r}", hint="check the output id (`mltrace recent`)")
    return found[0][1]


def _edge(n: Need, prod: Info) -> LineageEdge:
    """The edge of a resolved need, with the version read (the consumer's fingerprint, else
    what the producer wrote)."""
    return LineageEdge(producer=prod.id, consumer=n.consumer, pointer=n.pointer,
                       version=n.version or prod.outputs.get(n.pointer, ""))


def _walk_up(store: Connection, root: Info | Sequence[Info], infos: dict[str, Info],
             writers: Writers) -> tuple[dict[str, int], list[LineageEdge],
                                        dict[str, list[tuple[str, str]]]]:
    """Breadth-first upstream walk from one run or several (each at depth 0): depth per run,
    edges, and each run's dependencies (``infos`` collects what the walk learnt of each run)."""
    roots = [root] if isinstance(root, Info) else list(root)
    depth = {r.id: 0 for r in roots}
    infos.update((r.id, r) for r in roots)
    edges: list[LineageEdge] = []
    deps: dict[str, list[tuple[str, str]]] = {}
    frontier = roots
    level = 0
    while frontier:
        needs = [n for info in frontier for n in needs_of(info)]
        for info in frontier:
            deps[info.id] = []
        found, _ = resolve(store, needs, writers=writers)
        level += 1
        nxt: list[Info] = []
        for n, prod in found:
            pair = (prod.id, n.pointer)
            if pair not in deps[n.consumer]:
                deps[n.consumer].append(pair)
                edges.append(_edge(n, prod))
            if prod.id not in depth:
                depth[prod.id] = level
                infos[prod.id] = prod
                nxt.append(prod)
        frontier = nxt
    return depth, edges, deps


def _lineage(store: Connection, root: str, direction: str, depth: dict[str, int], edges: list[LineageEdge],
             deps: dict[str, list[tuple[str, str]]] | None, infos: dict[str, Info],
             outputs: tuple[str, ...] = (), writers: Writers | None = None) -> Lineage:
    """Full runs (with dependencies and staleness) for a walk's nodes, ordered by depth then
    newest first."""
    found = {r: (infos[r].run, infos[r].ns) for r in depth if r in infos and infos[r].run is not None}
    if len(found) < len(depth):  # runs the walk did not read whole (none, as lineage reads rows)
        missing = [r for r in depth if r not in found]
        found.update(fetch_runs(store, missing))
    writers = {} if writers is None else writers
    if deps is None or any(rid not in deps for rid in found):
        deps = {**dependencies(store, {r: found[r] for r in found if not deps or r not in deps},
                               infos, writers), **(deps or {})}
    ordered = sorted(found, key=lambda r: (depth[r], -found[r][1], r))
    runs = staleness.annotate(store, [found[r] for r in ordered], deps, infos, writers)
    full = causes.inherit(runs, deps)
    nodes = tuple(LineageNode(depth=depth[r.id], run=full[r.id]) for r in runs)
    # edges in the nodes' order (consumer, then producer), not in the order the store returned
    # the rows it read them from: the same question gives the same answer, call after call
    at = {r: i for i, r in enumerate(ordered)}
    edges = sorted(edges, key=lambda e: (at.get(e.consumer, len(at)), at.get(e.producer, len(at)),
                                         e.pointer, e.version))
    return Lineage(root=root, direction=direction, nodes=nodes, edges=tuple(edges), outputs=outputs)


def trace(store: Connection, output: str) -> Lineage:
    """The runs that produced ``output``: its latest writer (depth 0), then upstream, each once.

    Raises:
        NotFound: no run wrote ``output``.
    """
    writers: Writers = {}
    root = _latest_writer(store, output, writers)
    infos: dict[str, Info] = {}
    depth, edges, deps = _walk_up(store, root, infos, writers)
    return _lineage(store, str(output), "trace", depth, edges, deps, infos, writers=writers)


def trace_run(store: Connection, run_id: str) -> Lineage:
    """The runs upstream of a run (prefix allowed), the run itself at depth 0."""
    rid = resolve_run_id(store, run_id)
    info = lineage_info(store, [rid])
    if rid not in info:
        raise NotFound(f"no run with id {run_id!r}")
    infos: dict[str, Info] = {}
    writers: Writers = {}
    depth, edges, deps = _walk_up(store, info[rid], infos, writers)
    return _lineage(store, rid, "trace", depth, edges, deps, infos, writers=writers)


def _looks_like_run_id(store: Connection, target: str) -> str | None:
    t = run_id_prefix(target)
    if t is None:
        return None
    try:
        return resolve_run_id(store, t)
    except NotFound:
        return None


def impact(store: Connection, target: str) -> Lineage:
    """Runs downstream of an output pointer or a run id (prefix allowed).

    From a run: the run (depth 0), then every run whose producer of some input is a reached
    run, level by level. From a pointer: the runs that read its latest version (depth 0; every
    reader when no run wrote it), then downstream likewise. ``outputs``: every pointer the
    reached runs wrote.

    Raises:
        NotFound: neither a run id nor a pointer any run read or wrote.
        AmbiguousRunId: a run-id prefix matching several runs.
    """
    rid = _looks_like_run_id(store, target)
    if rid is not None:
        frontier = list(lineage_info(store, [rid]).values())
        depth = {rid: 0}
    else:
        pointer = str(target)
        try:
            writer: Info | None = _latest_writer(store, pointer)
        except NotFound:
            writer = None
        frontier = _readers_fed_by(store, {pointer: writer.id if writer else None},
                                   writer.ns if writer else 0)
        if not frontier and writer is None:
            raise NotFound(f"no run read or wrote {target!r}",
                           hint="give an output id or a run id (`mltrace recent`)")
        depth = {i.id: 0 for i in frontier}
    reached = {i.id: i for i in frontier}  # every reached run's Info (read whole)
    edges: list[LineageEdge] = []
    level = 0
    while frontier:
        level += 1
        fed = {}
        for info in frontier:
            for p in info.outputs:
                fed.setdefault(p, set()).add(info.id)
        readers = _readers(store, fed, min(i.ns for i in frontier))
        if not readers:
            break
        found, _ = resolve(store, [n for r in readers for n in needs_of(r) if not n.upstream])
        found += _upstream_hits(store, readers, {i.component for i in frontier})
        by_id = {r.id: r for r in readers}
        nxt = []
        frontier_ids = {i.id for i in frontier}
        for n, prod in found:
            if prod.id in frontier_ids:
                edges.append(_edge(n, prod))
                if n.consumer not in depth:
                    depth[n.consumer] = level
                    nxt.append(by_id[n.consumer])
        reached.update((i.id, i) for i in nxt)
        frontier = nxt
    infos = {r: reached[r] for r in depth if r in reached}
    if len(infos) < len(depth):
        infos.update(lineage_info(store, [r for r in depth if r not in infos]))
    outs = tuple(sorted({p for i in infos.values() for p in i.outputs}))
    return _lineage(store, str(target) if rid is None else rid, "impact", depth, edges, None, infos,
                    outs)


def _readers(store: Connection, fed: dict[str, set[str]], min_ns: int) -> list[Info]:
    if not fed:
        return []
    rows = run_query(store, "reader_ids", READER_IDS, {"ptrs": sorted(fed), "min_ns": min_ns})
    return list(lineage_info(store, [r[0] for r in rows]).values())


def _readers_fed_by(store: Connection, fed: dict[str, str | None], min_ns: int) -> list[Info]:
    """Readers of each pointer whose producer of it is the given writer (any reader if None)."""
    readers = _readers(store, {p: set() for p in fed}, min_ns)
    found, _ = resolve(store, [n for r in readers for n in needs_of(r) if n.pointer in fed])
    producer = {(n.consumer, n.pointer): prod.id for n, prod in found}
    out = []
    for r in readers:
        for p, _v in r.inputs:
            if p in fed and producer.get((r.id, p)) == fed[p]:
                out.append(r)
                break
    return out


def _upstream_hits(store: Connection, readers: list[Info], components: set[str]) -> list[tuple[Need, Info]]:
    """set_upstream dependencies of readers on the frontier's components (impact)."""
    needs = [n for r in readers for n in needs_of(r) if n.upstream in components]
    if not needs:
        return []
    found, _ = resolve(store, needs)
    return found


def walked_runs(store: Connection, ids: Sequence[str]) -> tuple[dict[str, Run], dict[str, int]]:
    """Runs by full id with dependencies and staleness, inherited causes included (missing ids
    absent), and the start (ns) of each: one upstream walk from all of them together (a query
    per lineage level), then one staleness query for every run it reached."""
    start = lineage_info(store, ids)
    if not start:
        return {}, {}
    infos: dict[str, Info] = {}
    writers: Writers = {}
    depth, _edges, deps = _walk_up(store, list(start.values()), infos, writers)
    found = {r: (infos[r].run, infos[r].ns) for r in depth if r in infos and infos[r].run is not None}
    runs = staleness.annotate(store, list(found.values()), deps, infos, writers)
    full = causes.inherit(runs, deps)
    return ({i: full[i] for i in ids if i in full},
            {i: found[i][1] for i in ids if i in found})
