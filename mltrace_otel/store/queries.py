"""The questions asked of the store: runs, history, recent, pointers, and the entry points of
lineage (trace, impact), staleness, review and components that :class:`.core.Store` delegates to.

Lineage, staleness, causes, review and user state (flags, notes, components) live in
:mod:`.lineage`, :mod:`.staleness`, :mod:`.causes`, :mod:`.review` and :mod:`.state`; the run
row and run ids in :mod:`.runs`. This module sits above all of them and imports each one at
the top; none of them imports it.

Every query is set-based (one query for a batch of runs, never one per run) and every user value
reaches SQL as a typed server-side parameter; the database name is the only spliced identifier.
mltrace_* tables are ReplacingMergeTree: a span delivered twice is two rows until a merge, so
every read de-duplicates (``LIMIT 1 BY RunId``, or argMax over the version column).

Imports: the store's query modules, models, protocols, errors, conventions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from mltrace_otel.conventions import CODE_SNAPSHOT
from mltrace_otel.errors import ConfigError, NotFound
from mltrace_otel.store import causes, lineage, staleness
from mltrace_otel.store import review as review_mod
from mltrace_otel.store.models import RUN_STATUSES, Lineage, PointerInfo, Review, Run, RunPage
from mltrace_otel.store.protocols import Connection
from mltrace_otel.store.runs import (
    RUN_ROW_JSON,
    bound_ns,
    fetch_runs,
    json_id,
    resolve_run_id,
    run_from_json,
    run_query,
    sql,
)
from mltrace_otel.store.state import component, components, tags

__all__ = [
    "resolve_run_id", "get_run", "get_runs", "recent", "recent_ids", "recent_page", "history",
    "count_runs",
    "components", "component", "tags", "pointer", "near_pointers", "trace", "trace_run", "impact",
    "stale_runs", "review", "RUN_ROW_JSON", "sql",
]


def complete_runs(store: Connection, ids: Sequence[str],
                  found: dict[str, tuple[Run, int]] | None = None,
                  cover: staleness.Cover | None = None) -> list[Run]:
    """Runs by full id, in the given order, with dependencies and staleness: the dependencies'
    read also reads the runs' later notes, their pointers' flags and the fresher-run windows
    guessed from this store's last answer for the same components; then one query for
    staleness only when some window was neither guessed nor in ``cover``.

    Args:
        found: the runs already read (``{id: (Run, start ns)}``).
        cover: a :class:`.staleness.Cover` (every run started since some time, already read).
    """
    if found is None:
        found = fetch_runs(store, ids)
    runs = [found[i] for i in ids if i in found]
    if not runs:
        return []
    infos: dict[str, lineage.Info] = {}
    writers: lineage.Writers = {}
    pre = staleness.Prefetch.of(runs, store if cover is None else None)
    deps = lineage.dependencies(store, found, infos, writers, extra=pre)
    return staleness.annotate(store, runs, deps, infos, writers, pre=pre, cover=cover)


CODE_SNAPSHOT_SQL = """
SELECT SpanAttributes[{key:String}] FROM {{db}}.otel_traces
WHERE ServiceName = {service:String}
  AND toDate(Timestamp) = toDate(fromUnixTimestamp64Nano({start:Int64}))
  AND Timestamp = fromUnixTimestamp64Nano({start:Int64})
  AND SpanId = {id:String}
LIMIT 1
"""


def get_run(store: Connection, run_id: str) -> Run:
    """One run (prefix allowed) with its code snapshot, notes, tests, dependencies, staleness
    (inherited causes included: its trace is walked) and what changed since its component's
    previous run."""
    rid = resolve_run_id(store, run_id)
    runs, starts = lineage.walked_runs(store, [rid])
    if rid not in runs:
        raise NotFound(f"no run with id {run_id!r}")
    run = causes.with_changes(store, [(runs[rid], starts[rid])])[rid]
    rows = run_query(store, "code_snapshot", CODE_SNAPSHOT_SQL,
                     {"key": CODE_SNAPSHOT, "service": run.service_name, "start": starts[rid],
                      "id": rid})
    return replace(run, code_snapshot=rows[0][0] if rows else "")


def fetch_start_ns(store: Connection, rid: str) -> int:
    """A run's exact start (nanoseconds; Python datetimes keep only microseconds)."""
    rows = run_query(store, "run_start_ns",
                     "SELECT toUnixTimestamp64Nano(Start) FROM {{db}}.mltrace_runs "
                     "WHERE RunId = {id:String} LIMIT 1", {"id": rid})
    return int(rows[0][0]) if rows else 0


def get_runs(store: Connection, run_ids: Sequence[str]) -> list[Run]:
    """Several runs by full id (missing ids skipped), with dependencies and staleness."""
    return complete_runs(store, list(dict.fromkeys(run_ids)))


# --- recent, history, count -------------------------------------------------------------------
# Pages of (id, start), newest first, answered by the runs_by_start projection; over-fetched so
# duplicate rows of a run cannot shorten a page. Full rows are then read for the page only.
RECENT_IDS = """
SELECT RunId, toUnixTimestamp64Nano(Start) AS ns FROM {{db}}.mltrace_runs
WHERE Start <= fromUnixTimestamp64Nano({before_ns:Int64})
ORDER BY Start DESC
LIMIT {n:UInt32}
"""

# The first page (no ``before``): no WHERE at all, which chDB reads in reverse order ~2x
# cheaper than with an always-true bound.
RECENT_IDS_FIRST = """
SELECT RunId, toUnixTimestamp64Nano(Start) AS ns FROM {{db}}.mltrace_runs
ORDER BY Start DESC
LIMIT {n:UInt32}
"""

_MAX_NS = 2**63 - 1


def _page(store: Connection, name: str, text: str, params: dict[str, Any], limit: int,
          keep: Callable[[str, int], bool] | None = None) -> list[tuple[str, int]]:
    """(id, start ns) of an ordered page query, newest first, at most ``limit`` that ``keep``
    accepts; over-fetches past duplicates (and rows ``keep`` drops) until full or done.

    The query orders by start alone (a tie-break would stop the engine reading in order), so
    runs sharing the start of the last row fetched may be cut arbitrarily: the page is final
    only once its last run starts after that row (else it fetches more)."""
    n = max(limit, 1) * 2 + 8
    while True:
        rows = run_query(store, name, text, {**params, "n": n})
        page = sorted({(r[0], int(r[1])) for r in rows if keep is None or keep(r[0], int(r[1]))},
                      key=lambda x: (x[1], x[0]), reverse=True)
        if len(rows) < n or n > 10**7 or (
                len(page) >= limit and page[limit - 1][1] > min(int(r[1]) for r in rows)):
            return page[:limit]
        n *= 4


def recent_ids(store: Connection, limit: int = 5, before: str | None = None) -> list[str]:
    """Ids of the newest runs, newest first; ``before`` (a run id or prefix) pages past that
    run (mltrace's get_recent_run_ids). One query (two with ``before``)."""
    return [rid for rid, _ns in _recent_page(store, limit, before)]


def _recent_page(store: Connection, limit: int, before: str | None) -> list[tuple[str, int]]:
    if limit is None or limit <= 0:
        return []
    if not before:
        return _page(store, "recent_ids", RECENT_IDS_FIRST, {}, int(limit))
    rid = resolve_run_id(store, before)
    bns = fetch_start_ns(store, rid)
    return _page(store, "recent_ids", RECENT_IDS, {"before_ns": bns}, int(limit),
                 lambda i, ns: ns < bns or (ns == bns and i < rid))


# recent's first page as rows, newest first, in one read of mltrace_lineage's lineage_by_start
# projection (Start, RunId, Row): over-fetched (a run has one row per output, and duplicates
# until a merge); no LIMIT BY (it stops the engine from reading in order: 80 ms, not 3).
RECENT_ROWS = """
SELECT Row FROM {{db}}.mltrace_lineage
ORDER BY Start DESC
LIMIT {n:UInt32}
"""


def _newest_rows(store: Connection, name: str, text: str, params: dict[str, Any],
                 limit: int) -> tuple[list[str], dict[str, tuple[Run, int]], bool]:
    """Runs of a query for ``Row`` ordered by start alone, newest first, (ids by (start, id),
    the runs by id, whether every row was fetched): at least ``limit`` + 1 runs when that many
    exist. Rows are over-fetched (a run has one row per output, and duplicates until a merge)
    until the ``limit``-th run starts after the last row fetched (as :func:`_page`: runs tied
    with that row may have been cut)."""
    n = max(limit, 1) * 2 + 8
    while True:
        rows = run_query(store, name, text, {**params, "n": n})
        found: dict[str, tuple[Run, int]] = {}
        low = None  # the oldest start parsed
        for (row,) in rows:  # newest first: parse until past the first limit + 1 runs' start
            if json_id(row) not in found:
                run, ns = run_from_json(row)
                if len(found) > limit and ns < low:
                    break
                found[run.id] = (run, ns)
                low = ns if low is None else min(low, ns)
        every = sorted(found, key=lambda i: (found[i][1], i), reverse=True)
        if len(rows) < n or n > 10**7 or (len(every) > limit and found[every[limit - 1]][1]
                                          > run_from_json(rows[-1][0])[1]):
            return every, found, len(rows) < n
        n *= 4


def _recent_rows(store: Connection, limit: int) -> tuple[list[str], dict[str, tuple[Run, int]], int | None]:
    """The newest ``limit`` runs (ids newest first, the runs by id) and ``since`` (see _page)."""
    every, found, whole = _newest_rows(store, "recent", RECENT_ROWS, {}, limit)
    ids = every[:limit]
    if len(every) > limit:  # the page's oldest start is whole unless the next run shares it
        boundary = found[ids[-1]][1]
        since: int | None = boundary + (found[every[limit]][1] >= boundary)
    else:
        since = 0 if whole else None
    return ids, {i: found[i] for i in ids}, since


def recent(store: Connection, limit: int = 5, before: str | None = None) -> list[Run]:
    """Newest runs first, with dependencies and staleness; ``before`` (a run id or prefix)
    pages past that run (mltrace's last_run_id).

    The first page: its rows in one read, and since it holds every run started after its
    oldest one (whatever the component), the fresher-run windows inside that time need no
    read (:class:`.staleness.Cover`): two queries (rows; dependencies with notes and flags)."""
    if limit is None or limit <= 0:
        return []
    if not before:
        ids, found, since = _recent_rows(store, int(limit))
        cover = staleness.Cover.of(since, found.values()) if since is not None else None
        return complete_runs(store, ids, found, cover)
    return complete_runs(store, [rid for rid, _ns in _recent_page(store, limit, before)])


# recent_page: the ids of the newest runs that match the filters, newest first, past a keyset
# ``before`` (start, id). Each filter is in the SQL only when given, as a fixed fragment whose
# value is a bound parameter; ``{tagged}``: the components that carry the tag now (a tag added
# with tag_component counts for the component's earlier runs too). Ordered by Start alone, with
# no LIMIT BY, so the engine reads the runs_by_start_with_filters projection (or
# runs_by_component) in reverse and stops at the page; _page drops duplicate rows and ties.
RECENT_PAGE = """
SELECT RunId, toUnixTimestamp64Nano(Start) AS ns FROM {{db}}.mltrace_runs
WHERE 1{component}{status}{owner}{tag}{since}{until}{before}
ORDER BY Start DESC
LIMIT {n:UInt32}
"""
_FILTERS = {
    "component": "\n  AND Component = {component:String}",
    "owner": "\n  AND Owner = {owner:String}",
    "tag": "\n  AND (has(Tags, {tag:String}) OR Component IN {tagged:Array(String)})",
    "since": "\n  AND Start >= fromUnixTimestamp64Nano({since_ns:Int64})",
    "until": "\n  AND Start <= fromUnixTimestamp64Nano({until_ns:Int64})",
    "before": "\n  AND Start <= fromUnixTimestamp64Nano({before_ns:Int64})",
}
# what row_to_run reads as "ERROR" (a failed run), in any of the exporters' spellings
_FAILED = "lower(StatusCode) IN ('error', 'status_code_error')"
_STATUS_SQL = {"": "", "ok": f"\n  AND NOT {_FAILED}", "failed": f"\n  AND {_FAILED}", "stale": ""}
_STALE_BATCH = 200
STALE_SCAN = 1_000
"""Runs one ``status=stale`` page looks at before it answers with what it found so far:
staleness is computed, not stored, so without a bound a store with few stale runs would be
read whole for one page."""


def recent_page(store: Connection, limit: int = 10, before: str | None = None, *,
                component: str | None = None, status: str | None = None, owner: str | None = None,
                tag: str | None = None, since: datetime | str | None = None,
                until: datetime | str | None = None) -> RunPage:
    """The newest runs that match every filter given, newest first, with dependencies and
    staleness, and whether older matching runs remain (``more``).

    The whole store is searched (the filters are SQL, not a look through the newest runs):
    one query for the page's ids (``limit`` + 1 of them, to learn ``more``), then the runs are
    read and completed as :func:`get_runs` does. ``status`` ``stale`` is not a stored fact (it
    depends on newer runs): runs matching the other filters are read in batches, newest first,
    until the page is full, none remain, or :data:`STALE_SCAN` runs were looked at (then
    ``more`` is set and ``next_before`` pages on from there). With no filter at all this is
    :func:`recent`.

    Args:
        limit: at most this many runs (0 or less: none).
        before: a run id or unique prefix; only runs older than it (the last run of the
            previous page), whether or not it matches the filters.
        component, owner: exact names.
        status: ``ok``, ``failed`` (the CLI's words) or ``stale`` (stale now).
        tag: runs tagged so when they ran, or whose component carries the tag now.
        since, until: start bounds, inclusive (datetimes, naive = UTC, or ISO 8601 strings).

    Raises:
        ConfigError: an unknown ``status``.
        NotFound, AmbiguousRunId: ``before`` names no run, or several.
        MltraceError: a date that is not ISO 8601.
    """
    status = (status or "").strip().lower()
    if status not in _STATUS_SQL:
        raise ConfigError(f"status {status!r} is not one of " + ", ".join(RUN_STATUSES),
                          hint="ok and failed are what `mltrace recent` shows; stale: stale now")
    if limit is None or limit <= 0:
        return RunPage()
    limit = int(limit)
    params: dict[str, Any] = {"component": component or "", "owner": owner or "", "tag": tag or "",
                              "since_ns": bound_ns(since, 0), "until_ns": bound_ns(until, _MAX_NS)}
    given = {"component": bool(component), "owner": bool(owner), "tag": bool(tag),
             "since": params["since_ns"] != 0, "until": params["until_ns"] != _MAX_NS}
    if not any(given.values()) and not status:
        return _first(recent(store, limit + 1, before), limit)
    if tag:
        params["tagged"] = [c.name for c in components(store, tag=tag)]
    text = RECENT_PAGE.replace("{status}", _STATUS_SQL[status])
    for name, fragment in _FILTERS.items():
        if name != "before":
            text = text.replace("{" + name + "}", fragment if given[name] else "")
    cursor = None
    if before:
        rid = resolve_run_id(store, before)
        cursor = (fetch_start_ns(store, rid), rid)
    if status != "stale":
        ids = [i for i, _ns in _matching(store, text, params, cursor, limit + 1)]
        runs = complete_runs(store, ids[:limit])
        more = len(ids) > limit and bool(runs)
        return RunPage(tuple(runs), more, runs[-1].id if more else "")
    found: list[Run] = []
    batch, scanned = max(limit + 1, _STALE_BATCH), 0
    while len(found) <= limit:
        if scanned >= STALE_SCAN:  # page on from the last run looked at, not the whole store
            return RunPage(tuple(found), True, cursor[1] if cursor else "")
        batch = min(batch, STALE_SCAN - scanned)
        rows = _matching(store, text, params, cursor, batch)
        found += [r for r in complete_runs(store, [i for i, _ns in rows]) if r.stale]
        if len(rows) < batch:
            break
        scanned += len(rows)
        cursor = (rows[-1][1], rows[-1][0])
        batch = min(batch * 2, 5000)
    return _first(found, limit)


def _first(found: list[Run], limit: int) -> RunPage:
    """The first ``limit`` of ``found`` (a longer list means more remain)."""
    runs = tuple(found[:limit])
    more = len(found) > limit and bool(runs)
    return RunPage(runs, more, runs[-1].id if more else "")


def _matching(store: Connection, text: str, params: dict[str, Any],
              cursor: tuple[int, str] | None, n: int) -> list[tuple[str, int]]:
    """(id, start ns) of the ``n`` newest runs of RECENT_PAGE (filters already in ``text``)
    older than ``cursor`` (start ns, id); fewer when no more match."""
    if cursor is None:
        return _page(store, "recent_page", text.replace("{before}", ""), params, n)
    bns, rid = cursor
    return _page(store, "recent_page", text.replace("{before}", _FILTERS["before"]),
                 {**params, "before_ns": bns}, n, lambda i, ns: ns < bns or (ns == bns and i < rid))


# history: a component's runs newest first, as rows, in one read of mltrace_lineage's
# lineage_by_component projection (Component, Start, RunId, Row). A run has one row per output
# (and duplicates until a merge), so rows are over-fetched and de-duplicated here: LIMIT 1 BY
# RunId, or a RunId tie-break in ORDER BY, stops the engine from reading in order (at 10M runs:
# 75-150 ms instead of 3). Each date bound is in the SQL only when given (an always-true bound
# still costs a filter).
HISTORY_ROWS = """
SELECT Row FROM {{db}}.mltrace_lineage
WHERE Component = {component:String}{since}{until}
ORDER BY Start DESC
LIMIT {n:UInt32}
"""
_SINCE = "\n  AND Start >= fromUnixTimestamp64Nano({since_ns:Int64})"
_UNTIL = "\n  AND Start <= fromUnixTimestamp64Nano({until_ns:Int64})"


def history(store: Connection, component: str, limit: int = 10, since: datetime | str | None = None,
            until: datetime | str | None = None) -> list[Run]:
    """A component's runs, newest first, started within [since, until] (naive = UTC).

    Three queries: the runs (one read, repeated with a larger window in the rare case that
    duplicate or tied rows leave it short: :func:`_newest_rows`), their dependencies with notes
    and flags, staleness."""
    if limit is None:
        limit = 1_000_000
    if limit <= 0:
        return []
    params = {"component": str(component), "since_ns": bound_ns(since, 0),
              "until_ns": bound_ns(until, _MAX_NS)}
    text = (HISTORY_ROWS.replace("{since}", _SINCE if params["since_ns"] != 0 else "")
            .replace("{until}", _UNTIL if params["until_ns"] != _MAX_NS else ""))
    every, found, _whole = _newest_rows(store, "history", text, params, int(limit))
    return complete_runs(store, every[:limit], found)


def count_runs(store: Connection) -> int:
    """Number of distinct runs in the store."""
    return int(run_query(store, "count_runs", "SELECT count() FROM {{db}}.mltrace_runs FINAL")[0][0])


# --- pointers -----------------------------------------------------------------------------------
POINTER_SQL = """
SELECT Role, RunId, any(PointerType), max(Start) AS s
FROM {{db}}.mltrace_io
WHERE Pointer = {name:String}
GROUP BY Role, RunId
ORDER BY s DESC, RunId DESC
"""

FLAG_OF = """
SELECT argMax(Flagged, Version) FROM {{db}}.mltrace_flags WHERE Pointer = {name:String}
"""


# Names that end with the one asked for (``report.txt`` → ``/data/out/report.txt``) or whose
# basename is its basename (``old/report.txt`` → ``/data/out/report.txt``), newest first.
NEAR_POINTERS_SQL = """
SELECT Pointer, max(Start) AS s
FROM {{db}}.mltrace_io
WHERE Pointer != {name:String}
  AND (endsWith(Pointer, {name:String})
       OR ({base:String} != '' AND (Pointer = {base:String}
           OR endsWith(Pointer, concat('/', {base:String}))
           OR endsWith(Pointer, concat('\\\\', {base:String})))))
GROUP BY Pointer
ORDER BY s DESC, Pointer
LIMIT {limit:UInt32}
"""


def near_pointers(store: Connection, name: str, limit: int = 5) -> list[str]:
    """Pointer names close to ``name``, for the hint of a NotFound: names that end with it
    (``report.txt`` → ``/data/out/report.txt``) or whose basename is its basename, the most
    recently used first, at most ``limit``."""
    name = str(name)
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    if not name.strip():
        return []
    rows = run_query(store, "near_pointers", NEAR_POINTERS_SQL,
                     {"name": name, "base": base if base != name else "", "limit": int(limit)})
    return [r[0] for r in rows]


def _near_hint(store: Connection, name: str, default: str | None) -> str | None:
    near = near_pointers(store, name)
    if not near:
        return default
    if len(near) == 1:
        return f"did you mean {near[0]!r}?"
    return "did you mean one of " + ", ".join(repr(n) for n in near) + "?"


def pointer(store: Connection, name: str) -> PointerInfo:
    """An IO pointer: its type, whether flagged, its producers and consumers; NotFound (its
    hint names near matches, :func:`near_pointers`)."""
    rows = run_query(store, "pointer", POINTER_SQL, {"name": str(name)})
    flag = run_query(store, "flag_of", FLAG_OF, {"name": str(name)})
    flagged = bool(flag and flag[0][0])
    if not rows and not flagged:
        raise NotFound(f"no run read or wrote {name!r}",
                       hint=_near_hint(store, name, "check the output id (`mltrace recent`)"))
    types = [r[2] for r in rows if r[2] and r[2] != "UNKNOWN"]
    return PointerInfo(
        name=str(name), type=types[0] if types else "UNKNOWN", flagged=flagged,
        producers=tuple(r[1] for r in rows if r[0] == "out"),
        consumers=tuple(r[1] for r in rows if r[0] == "in"),
    )


# --- lineage, staleness, review (implemented in their own modules) ------------------------------
def trace(store: Connection, output: str) -> Lineage:
    """Runs that produced ``output`` (see :func:`.lineage.trace`)."""
    return lineage.trace(store, output)


def trace_run(store: Connection, run_id: str) -> Lineage:
    """Runs upstream of a run (see :func:`.lineage.trace_run`)."""
    return lineage.trace_run(store, run_id)


def impact(store: Connection, target: str) -> Lineage:
    """Runs downstream of an output or a run (see :func:`.lineage.impact`); the NotFound of
    an unknown output names near matches in its hint."""
    try:
        return lineage.impact(store, target)
    except NotFound as e:
        if e.message.startswith("no run read or wrote"):
            e.hint = _near_hint(store, target, e.hint)
        raise


# Each component's latest run: max(Start) per component, then the runs at that (Component,
# Start) — both answered by the runs_by_component projection.
LATEST_PER_COMPONENT = """
SELECT Component, RunId FROM {{db}}.mltrace_runs
WHERE (Component, Start) IN (
    SELECT Component, max(Start) FROM {{db}}.mltrace_runs
    WHERE {component:String} = '' OR Component = {component:String}
    GROUP BY Component)
"""


def stale_runs(store: Connection, component: str | None = None, limit: int = 100,
               direct: bool = False) -> list[Run]:
    """The latest run of each component (or of one) that is stale now, newest first.

    Inherited causes count (a run upstream is stale, or failed): the latest runs' traces are
    walked together (:func:`.lineage.walked_runs`). ``direct``: only runs with a direct cause,
    showing their direct causes only (``mltrace stale --direct``).
    """
    rows = run_query(store, "latest_per_component", LATEST_PER_COMPONENT,
                     {"component": component or ""})
    latest: dict[str, str] = {}
    for comp, rid in rows:  # ties on start: the largest id, as everywhere else
        latest[comp] = max(rid, latest.get(comp, ""))
    runs, _starts = lineage.walked_runs(store, list(latest.values()))
    picked = [causes.direct_only(r) if direct else r for r in runs.values()]
    stale = sorted((r for r in picked if r.stale), key=lambda r: (r.start, r.id), reverse=True)
    return stale[: max(int(limit), 0)]


def review(store: Connection, limit: int | None = None, since: datetime | str | None = None,
           component: str | None = None, tag: str | None = None) -> Review:
    """Flagged outputs' common runs (see :func:`.review.review`)."""
    return review_mod.review(store, limit, since=since, component=component, tag=tag)
