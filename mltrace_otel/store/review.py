"""Review: the runs the flagged outputs have in common, ranked by coverage (mltrace's review),
ties broken by evidence.

For each run in the union of the flagged output versions' traces, ``count`` = how many flagged
outputs it contributed to; coverage = count / len(flagged), mltrace's figure. Runs with equal
counts are ordered by evidence, in this order: failed runs, runs with a failed test, runs with
a direct staleness cause, runs whose code or inputs changed since their component's previous
run; then newest first. Each entry's ``why`` says which evidence it has.

A flag binds to the version a run wrote (:mod:`.state`): its trace starts at that run. A flag on
a name no run had written starts at the name's latest writer now, or is listed in
``Review.unproduced``, never fatal. ``since`` / ``component`` / ``tag`` limit the ranked runs
(the flagged outputs and coverage stay the same).

Set-based: all flagged outputs' traces are walked together, one lineage level per query,
tracking which flagged outputs reach each run (a run's producers are resolved once, however
many flagged outputs reach it); then one staleness query for every reached run, and three
queries for the changes of the ranked ones.

Imports: lineage, staleness, causes, state, runs, models, protocols.
"""

from __future__ import annotations

from datetime import datetime

from mltrace_otel.store import causes, lineage, staleness, state
from mltrace_otel.store.models import FlaggedOutput, Review, ReviewEntry, Run
from mltrace_otel.store.protocols import Connection
from mltrace_otel.store.runs import Info, Writers, bound_ns, fetch_runs, lineage_info


def coverage_sentence(count: int, coverage: float) -> str:
    """mltrace's review wording for one run."""
    pct = round(coverage * 100, 1)
    return (f"This component has {pct:g}% coverage: it was used {count} time(s) in producing the "
            "flagged outputs")


def _evidence(run: Run) -> tuple[bool, bool, bool, bool]:
    """(failed, a test failed, stale for a direct cause, code or inputs changed)."""
    changed = any(c.what in ("code", "input") for c in run.changes)
    return (run.failed, any(not t.passed for t in run.tests), bool(run.stale_direct), changed)


def why(run: Run) -> tuple[str, ...]:
    """The evidence a run has, as short sentences (the review's "why" column)."""
    out: list[str] = []
    if run.failed:
        out.append(f"failed: {run.failure}")
    for t in run.tests:
        if not t.passed:
            out.append(f"test {t.name}.{t.method} failed" + (f": {t.message}" if t.message else ""))
    out += [f"stale: {r.message}" for r in run.stale_direct]
    since = run.previous_run[:8]
    for c in run.changes:
        if c.what == "code":
            out.append(f"code changed since {since}")
        elif c.what == "input":
            out.append(f"input {c.name} changed since {since}" if c.previous
                       else f"new input {c.name} since {since}")
    return tuple(out)


def _roots(store: Connection, flags: list[FlaggedOutput], writers: Writers
           ) -> tuple[dict[int, Info], list[FlaggedOutput]]:
    """The run each flagged version's trace starts at (by index in ``flags``), and the flags
    whose version is bound to a name and the versions filled in."""
    bound = lineage_info(store, {f.run for f in flags if f.run})
    names = [f.pointer for f in flags if not f.run]
    found, _ = lineage.resolve(store, [lineage.Need("", lineage.NO_BOUND, pointer=p) for p in names],
                               writers=writers) if names else ([], {})
    latest = {n.pointer: prod for n, prod in found}
    roots: dict[int, Info] = {}
    resolved = []
    for i, f in enumerate(flags):
        info = bound.get(f.run) if f.run else latest.get(f.pointer)
        if info is not None:
            roots[i] = info
            resolved.append(FlaggedOutput(f.pointer, info.id, info.outputs.get(f.pointer, f.version)))
        else:
            resolved.append(f)
    return roots, resolved


def review(store: Connection, limit: int | None = None, since: datetime | str | None = None,
           component: str | None = None, tag: str | None = None) -> Review:
    """Rank the runs common to the flagged outputs' traces (see module docstring).

    Args:
        limit: at most this many entries (None: all).
        since: only runs started at or after (a datetime, naive = UTC, or an ISO string).
        component: only runs of this component.
        tag: only runs of components with this tag.
    """
    scope = {k: str(v) if not isinstance(v, datetime) else v.isoformat()
             for k, v in (("since", since), ("component", component), ("tag", tag)) if v}
    flags = state.flagged_outputs(store)
    if not flags:
        return Review(scope=scope)
    writers: Writers = {}
    root_of, flags = _roots(store, flags, writers)
    unproduced = tuple(f.pointer for i, f in enumerate(flags) if i not in root_of)

    reach: dict[str, set[int]] = {}  # run id -> flagged outputs (index) whose trace holds it
    deps: dict[str, list[tuple[str, str]]] = {}  # expanded runs -> producers
    infos: dict[str, Info] = {}
    changed: dict[str, set[int]] = {}  # run id -> flagged outputs newly reaching it
    for i, prod in root_of.items():
        infos[prod.id] = prod
        changed.setdefault(prod.id, set()).add(i)
    while changed:
        for rid, new in changed.items():
            reach.setdefault(rid, set()).update(new)
        todo = [infos[r] for r in changed if r not in deps]
        if todo:
            found, _ = lineage.resolve(store, [n for i in todo for n in lineage.needs_of(i)],
                                       writers=writers)
            for i in todo:
                deps[i.id] = []
            for n, prod in found:
                if (prod.id, n.pointer) not in deps[n.consumer]:
                    deps[n.consumer].append((prod.id, n.pointer))
                infos.setdefault(prod.id, prod)
        nxt: dict[str, set[int]] = {}
        for rid, new in changed.items():
            for pid, _ptr in deps[rid]:
                add = new - reach.get(pid, set()) - nxt.get(pid, set())
                if add:
                    nxt.setdefault(pid, set()).update(add)
        changed = nxt

    found_runs = {r: (infos[r].run, infos[r].ns) for r in reach
                  if r in infos and infos[r].run is not None}
    if len(found_runs) < len(reach):  # runs the walk did not read whole (none: lineage reads rows)
        missing = [r for r in reach if r not in found_runs]
        found_runs.update(fetch_runs(store, missing))
    # every reached run: direct causes, then inherited ones (the reach set holds every run
    # upstream of each of its runs)
    annotated = staleness.annotate(store, list(found_runs.values()), deps, infos, writers)
    full = causes.inherit(annotated, deps)
    picked = _scoped(store, [r for r in found_runs if r in full], full, found_runs, since,
                     component, tag)
    changes = causes.with_changes(store, [(full[r], found_runs[r][1]) for r in picked])
    ns = {r: found_runs[r][1] for r in picked}

    def key(r: str) -> tuple:
        ev = _evidence(changes[r])
        return (-len(reach[r]), *(not e for e in ev), -ns[r], r)

    order = sorted(picked, key=key)
    if limit is not None:
        order = order[: max(int(limit), 0)]
    n = len(flags)
    entries = tuple(
        ReviewEntry(run=changes[r], count=len(reach[r]), coverage=len(reach[r]) / n,
                    why=why(changes[r]), coverage_text=coverage_sentence(len(reach[r]), len(reach[r]) / n))
        for r in order)
    return Review(flagged=tuple(f.pointer for f in flags), unproduced=unproduced, entries=entries,
                  flagged_versions=tuple(flags), scope=scope)


def _scoped(store: Connection, ids: list[str], runs: dict[str, Run], found: dict[str, tuple[Run, int]],
            since: datetime | str | None, component: str | None, tag: str | None) -> list[str]:
    """The run ids inside the review's scope (started since, of the component, tagged)."""
    out = ids
    if since is not None and since != "":
        bound = bound_ns(since, 0)
        out = [r for r in out if found[r][1] >= bound]
    if component:
        out = [r for r in out if runs[r].component == component]
    if tag:
        names = {c.name for c in state.components(store, tag=tag)}
        out = [r for r in out if runs[r].component in names]
    return out
