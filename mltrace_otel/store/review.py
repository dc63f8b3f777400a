"""Review: the runs the flagged outputs have in common, ranked by coverage (mltrace's review).

For each run in the union of the flagged outputs' traces, ``count`` = how many flagged outputs
it contributed to; coverage = count / len(flagged); sorted by count (desc), then newest first.
A flagged id that no run wrote is listed in ``Review.unproduced``, never fatal.

Set-based: all flagged outputs' traces are walked together, one lineage level per query,
tracking which flagged outputs reach each run (a run's producers are resolved once, however
many flagged outputs reach it).
"""

from __future__ import annotations

from typing import Any

from mltrace_otel.store import lineage, queries, state
from mltrace_otel.store.models import Review, ReviewEntry


def review(store: Any, limit: int | None = None) -> Review:
    """Rank the runs common to the flagged outputs' traces (see module docstring)."""
    flagged = state.flagged(store)
    if not flagged:
        return Review()
    writers: lineage.Writers = {}
    roots, _ = lineage.resolve(store, [lineage.Need("", lineage._NO_BOUND, pointer=f) for f in flagged],
                               writers=writers)
    root_of = {n.pointer: prod for n, prod in roots}
    unproduced = tuple(f for f in flagged if f not in root_of)

    reach: dict[str, set[str]] = {}  # run id -> flagged outputs whose trace holds it
    deps: dict[str, list[tuple[str, str]]] = {}  # expanded runs -> producers
    infos: dict[str, lineage.Info] = {}
    changed: dict[str, set[str]] = {}  # run id -> flagged ids newly reaching it
    for f, prod in root_of.items():
        infos[prod.id] = prod
        changed.setdefault(prod.id, set()).add(f)
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
        nxt: dict[str, set[str]] = {}
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
        found_runs.update(queries.fetch_runs(store, missing))
    order = sorted(found_runs, key=lambda r: (-len(reach[r]), -found_runs[r][1], r))
    if limit is not None:
        order = order[: max(int(limit), 0)]
    from mltrace_otel.store import staleness

    runs = staleness.annotate(store, [found_runs[r] for r in order], deps, infos, writers)
    n = len(flagged)
    entries = tuple(ReviewEntry(run=r, count=len(reach[r.id]), coverage=len(reach[r.id]) / n)
                    for r in runs)
    return Review(flagged=tuple(flagged), unproduced=unproduced, entries=entries)
