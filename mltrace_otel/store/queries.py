"""Read queries of the store: runs, history, recent, components, tags, pointers.

Lineage (trace, impact), staleness and review live in :mod:`.lineage`, :mod:`.staleness` and
:mod:`.review`; this module re-exports their entry points because :class:`.core.Store`
delegates to ``queries.*``.

Every query is set-based (one query for a batch of runs, never one per run) and every user value
reaches SQL as a typed server-side parameter; the database name is the only spliced identifier.
mltrace_* tables are ReplacingMergeTree: a span delivered twice is two rows until a merge, so
every read de-duplicates (``LIMIT 1 BY RunId``, or argMax over the version column).

Imports: store internals, models, errors, conventions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from mltrace_otel.conventions import CODE_SNAPSHOT
from mltrace_otel.errors import AmbiguousRunId, MltraceError, NotFound
from mltrace_otel.store.models import ComponentInfo, Pointer, PointerInfo, Run, TestResult
from mltrace_otel.store.schema import quote_ident

__all__ = [
    "resolve_run_id", "get_run", "get_runs", "recent", "history", "count_runs", "components",
    "component", "tags", "pointer", "trace", "trace_run", "impact", "stale_runs", "review",
]

_HEX = re.compile(r"[0-9a-f]+")
MIN_PREFIX = 4
"""Shortest run-id prefix accepted wherever a run id is typed."""


# --- SQL helpers --------------------------------------------------------------------------------
def sql(store: Any, text: str) -> str:
    """``text`` with ``{{db}}`` replaced by the store's quoted database (the only splice)."""
    return text.replace("{{db}}", quote_ident(store.database))


def run_query(store: Any, name: str, text: str, params: dict[str, Any] | None = None) -> list[tuple]:
    """Run a named read query with bound parameters (see :meth:`Store.query`)."""
    return store.query(name, sql(store, text), params or {})


def utc(dt: datetime) -> datetime:
    """A naive datetime from the store, as timezone-aware UTC."""
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def to_ns(dt: datetime) -> int:
    """Nanoseconds since the epoch (naive datetimes are UTC)."""
    dt = utc(dt)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


# --- run rows -----------------------------------------------------------------------------------
# A run as one JSON array (starts and ends in ns): what mltrace_lineage's ``Row`` holds, for a run
# not there yet. mltrace_lineage_mv computes it with the same expression, written out in
# migrations/0100_baseline.sql (tests/store/test_schema_baseline.py checks the two agree). Notes
# written later and pointer flags are applied by staleness.annotate.
RUN_ROW_JSON = """toJSONString(tuple(RunId, TraceId, Component, toUnixTimestamp64Nano(Start),
        toUnixTimestamp64Nano(End), StatusCode, StatusMessage, Owner, Description, Tags, ServiceName,
        Inputs, InputVersions, InputTypes, Outputs, OutputVersions, OutputTypes, Upstream,
        StalenessThresholdS, Endpoint, GitHash, GitTags, CodeFunction, CodeFile, Notes, TestNames,
        TestMethods, TestPhases, TestPassed, TestMessages, Exception))"""

_EPOCH = datetime(1970, 1, 1)


def _naive(ns: int) -> datetime:
    """A naive UTC datetime from ns, truncated to microseconds as clickhouse-connect reads a
    DateTime64(9)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def run_from_json(text: str) -> tuple[Run, int]:
    """A ``RUN_ROW_JSON`` value as a Run (like :func:`row_to_run`) and its start in ns."""
    return run_from_list(json.loads(text))


def run_from_list(r: list) -> tuple[Run, int]:
    """A parsed ``RUN_ROW_JSON`` value as a Run and its start in ns."""
    start_ns, end_ns = int(r[3]), int(r[4])
    return row_to_run((*r[:3], _naive(start_ns), _naive(end_ns), *r[5:18], int(r[18]), int(r[19]),
                       *r[20:], start_ns))


# Whole runs by id as RUN_ROW_JSON values, from mltrace_lineage's lineage_by_run projection
# (ordered by run id): two columns, where mltrace_runs would read thirty-odd (the engine's cost
# grows with each column read). Every run is in mltrace_lineage (one row per output pointer, one
# row with Pointer '' for a run that wrote nothing: migration 0020).
ROWS_BY_ID = """
SELECT Row FROM {{db}}.mltrace_lineage
WHERE RunId IN {ids:Array(String)}
LIMIT 1 BY RunId
"""

# The fallback for a run not (yet) in mltrace_lineage: its row computed from mltrace_runs.
ROWS_FROM_RUNS = f"""
SELECT Row FROM (
    SELECT RunId, {RUN_ROW_JSON} AS Row FROM {{{{db}}}}.mltrace_runs
    WHERE RunId IN {{ids:Array(String)}}
    LIMIT 1 BY RunId)
"""

_STATUS = {"ok": "OK", "error": "ERROR", "unset": "UNSET", "status_code_ok": "OK",
           "status_code_error": "ERROR", "status_code_unset": "UNSET"}


def _pointers(names: Sequence[str], versions: Sequence[str], types: Sequence[str],
              flags: Sequence[int]) -> tuple[Pointer, ...]:
    return tuple(
        Pointer(name=n, type=(types[i] if i < len(types) else "") or "UNKNOWN",
                version=versions[i] if i < len(versions) else "",
                flagged=bool(flags[i]) if i < len(flags) else False)
        for i, n in enumerate(names)
    )


def row_to_run(r: tuple) -> tuple[Run, int]:
    """A run's columns (RUN_ROW_JSON's order, then its start in ns) as a Run (without
    dependencies, staleness, later notes, flags) and its start in nanoseconds."""
    (rid, trace_id, comp, start, end, status, status_msg, owner, desc, tags, service, inputs,
     in_versions, in_types, outputs, out_versions, out_types, upstream, threshold, endpoint,
     git_hash, git_tags, code_fn, code_file, notes, t_names, t_methods, t_phases, t_passed,
     t_messages, exception, start_ns) = r
    tests = tuple(
        TestResult(name=t_names[i], method=t_methods[i] if i < len(t_methods) else "",
                   phase=t_phases[i] if i < len(t_phases) else "",
                   passed=bool(t_passed[i]) if i < len(t_passed) else False,
                   message=t_messages[i] if i < len(t_messages) else "")
        for i in range(len(t_names))
    )
    run = Run(
        id=rid, trace_id=trace_id, component=comp, start=utc(start), end=utc(end),
        status=_STATUS.get(str(status).lower(), "UNSET"), status_message=status_msg, owner=owner,
        description=desc, tags=tuple(tags), service_name=service,
        inputs=_pointers(inputs, in_versions, in_types, ()),
        outputs=_pointers(outputs, out_versions, out_types, ()),
        upstream=tuple(upstream), staleness_threshold_s=int(threshold), endpoint=bool(endpoint),
        git_hash=git_hash, git_tags=tuple(git_tags), code_function=code_fn, code_file=code_file,
        notes=notes, tests=tests, exception=exception,
    )
    return run, int(start_ns)


def rows_by_id(store: Any, ids: Iterable[str]) -> list[str]:
    """RUN_ROW_JSON values of runs by full id (missing ids absent, duplicates possible): one
    read of lineage_by_run; mltrace_runs only for ids not found there."""
    ids = sorted(set(ids))
    if not ids:
        return []
    rows = [r[0] for r in run_query(store, "rows_by_id", ROWS_BY_ID, {"ids": ids})]
    if len({json_id(r) for r in rows}) < len(ids):
        seen = {json_id(r) for r in rows}
        rows += [r[0] for r in run_query(store, "rows_from_runs", ROWS_FROM_RUNS,
                                         {"ids": [i for i in ids if i not in seen]})]
    return rows


def json_id(row: str) -> str:
    """The run id of a ``RUN_ROW_JSON`` value (its first element), without parsing it all."""
    return row[2:row.index('"', 2)]


def fetch_runs(store: Any, ids: Iterable[str]) -> dict[str, tuple[Run, int]]:
    """Runs by full id (missing ids absent), without dependencies or staleness: one query."""
    out = {}
    for row in rows_by_id(store, ids):
        run, ns = run_from_json(row)
        out[run.id] = (run, ns)
    return out


def complete_runs(store: Any, ids: Sequence[str],
                  found: dict[str, tuple[Run, int]] | None = None,
                  cover: Any = None) -> list[Run]:
    """Runs by full id, in the given order, with dependencies and staleness: the dependencies'
    read also reads the runs' later notes, their pointers' flags and the fresher-run windows
    guessed from this store's last answer for the same components; then one query for
    staleness only when some window was neither guessed nor in ``cover``.

    Args:
        found: the runs already read (``{id: (Run, start ns)}``).
        cover: a :class:`.staleness.Cover` (every run started since some time, already read).
    """
    from mltrace_otel.store import lineage, staleness

    if found is None:
        found = fetch_runs(store, ids)
    runs = [found[i] for i in ids if i in found]
    if not runs:
        return []
    infos: dict[str, Any] = {}
    writers: dict[str, Any] = {}
    pre = staleness.Prefetch.of(runs, store if cover is None else None)
    deps = lineage.dependencies(store, found, infos, writers, extra=pre)
    return staleness.annotate(store, runs, deps, infos, writers, pre=pre, cover=cover)


# --- run ids ------------------------------------------------------------------------------------
RESOLVE_PREFIX = """
SELECT DISTINCT RunId FROM {{db}}.mltrace_runs
WHERE startsWith(RunId, {prefix:String})
ORDER BY RunId
LIMIT 51
"""


def resolve_run_id(store: Any, prefix: str) -> str:
    """Full run id for a unique prefix of at least 4 hex characters.

    Raises:
        NotFound: no run id starts with it (or it is not hex / too short).
        AmbiguousRunId: several runs start with it (candidates listed).
    """
    p = str(prefix).strip().lower()
    if len(p) < MIN_PREFIX or not _HEX.fullmatch(p):
        raise NotFound(f"no run with id {prefix!r}",
                       hint=f"a run id is hex; type at least {MIN_PREFIX} characters of it")
    rows = run_query(store, "resolve_run_id", RESOLVE_PREFIX, {"prefix": p})
    ids = [r[0] for r in rows]
    if not ids:
        raise NotFound(f"no run with id {prefix!r}", hint="list run ids with `mltrace recent`")
    if p in ids:
        return p
    if len(ids) > 1:
        raise AmbiguousRunId(prefix, ids)
    return ids[0]


CODE_SNAPSHOT_SQL = """
SELECT SpanAttributes[{key:String}] FROM {{db}}.otel_traces
WHERE ServiceName = {service:String}
  AND toDate(Timestamp) = toDate(fromUnixTimestamp64Nano({start:Int64}))
  AND Timestamp = fromUnixTimestamp64Nano({start:Int64})
  AND SpanId = {id:String}
LIMIT 1
"""


def walked_runs(store: Any, ids: Sequence[str]) -> tuple[dict[str, Run], dict[str, int]]:
    """Runs by full id with dependencies and staleness, inherited causes included (missing ids
    absent), and the start (ns) of each: one upstream walk from all of them together (a query
    per lineage level), then one staleness query for every run it reached."""
    from mltrace_otel.store import causes, lineage, staleness

    start = lineage.lineage_info(store, ids)
    if not start:
        return {}, {}
    infos: dict[str, Any] = {}
    writers: dict[str, Any] = {}
    depth, _edges, deps = lineage._walk_up(store, list(start.values()), infos, writers)
    found = {r: (infos[r].run, infos[r].ns) for r in depth if r in infos and infos[r].run is not None}
    runs = staleness.annotate(store, list(found.values()), deps, infos, writers)
    full = causes.inherit(runs, deps)
    return ({i: full[i] for i in ids if i in full},
            {i: found[i][1] for i in ids if i in found})


def get_run(store: Any, run_id: str) -> Run:
    """One run (prefix allowed) with its code snapshot, notes, tests, dependencies, staleness
    (inherited causes included: its trace is walked) and what changed since its component's
    previous run."""
    from mltrace_otel.store import causes

    rid = resolve_run_id(store, run_id)
    runs, starts = walked_runs(store, [rid])
    if rid not in runs:
        raise NotFound(f"no run with id {run_id!r}")
    run = causes.with_changes(store, [(runs[rid], starts[rid])])[rid]
    rows = run_query(store, "code_snapshot", CODE_SNAPSHOT_SQL,
                     {"key": CODE_SNAPSHOT, "service": run.service_name, "start": starts[rid],
                      "id": rid})
    return replace(run, code_snapshot=rows[0][0] if rows else "")


def fetch_start_ns(store: Any, rid: str) -> int:
    """A run's exact start (nanoseconds; Python datetimes keep only microseconds)."""
    rows = run_query(store, "run_start_ns",
                     "SELECT toUnixTimestamp64Nano(Start) FROM {{db}}.mltrace_runs "
                     "WHERE RunId = {id:String} LIMIT 1", {"id": rid})
    return int(rows[0][0]) if rows else 0


def get_runs(store: Any, run_ids: Sequence[str]) -> list[Run]:
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


def _page(store: Any, name: str, text: str, params: dict[str, Any], limit: int,
          keep: Any = None) -> list[tuple[str, int]]:
    """(id, start ns) of an ordered page query, newest first, at most ``limit`` that ``keep``
    accepts; over-fetches past duplicates (and rows ``keep`` drops) until full or done."""
    n = max(limit, 1) * 2 + 8
    while True:
        rows = run_query(store, name, text, {**params, "n": n})
        page = sorted({(r[0], int(r[1])) for r in rows if keep is None or keep(r[0], int(r[1]))},
                      key=lambda x: (x[1], x[0]), reverse=True)
        if len(page) >= limit or len(rows) < n or n > 10**7:
            return page[:limit]
        n *= 4


def recent_ids(store: Any, limit: int = 5, before: str | None = None) -> list[str]:
    """Ids of the newest runs, newest first; ``before`` (a run id or prefix) pages past that
    run (mltrace's get_recent_run_ids). One query (two with ``before``)."""
    return [rid for rid, _ns in _recent_page(store, limit, before)]


def _recent_page(store: Any, limit: int, before: str | None) -> list[tuple[str, int]]:
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


def _recent_rows(store: Any, limit: int) -> tuple[list[str], dict[str, tuple[Run, int]], int | None]:
    """The newest ``limit`` runs (ids newest first, the runs by id) and ``since`` (see _page)."""
    n = max(limit, 1) * 2 + 8
    while True:
        rows = run_query(store, "recent", RECENT_ROWS, {"n": n})
        found: dict[str, tuple[Run, int]] = {}
        for (row,) in rows:  # newest first: parse until past the first limit + 1 runs' start
            if json_id(row) not in found:
                run, ns = run_from_json(row)
                if len(found) > limit and ns < min(v[1] for v in found.values()):
                    break
                found[run.id] = (run, ns)
        every = sorted(found, key=lambda i: (found[i][1], i), reverse=True)
        if len(every) > limit or len(rows) < n or n > 10**7:
            break
        n *= 4
    ids = every[:limit]
    if len(every) > limit:  # the page's oldest start is whole unless the next run shares it
        boundary = found[ids[-1]][1]
        since: int | None = boundary + (found[every[limit]][1] >= boundary)
    else:
        since = 0 if len(rows) < n else None
    return ids, {i: found[i] for i in ids}, since


def recent(store: Any, limit: int = 5, before: str | None = None) -> list[Run]:
    """Newest runs first, with dependencies and staleness; ``before`` (a run id or prefix)
    pages past that run (mltrace's last_run_id).

    The first page: its rows in one read, and since it holds every run started after its
    oldest one (whatever the component), the fresher-run windows inside that time need no
    read (:class:`.staleness.Cover`): two queries (rows; dependencies with notes and flags)."""
    from mltrace_otel.store import staleness

    if limit is None or limit <= 0:
        return []
    if not before:
        ids, found, since = _recent_rows(store, int(limit))
        cover = staleness.Cover.of(since, found.values()) if since is not None else None
        return complete_runs(store, ids, found, cover)
    return complete_runs(store, [rid for rid, _ns in _recent_page(store, limit, before)])


def _bound_ns(dt: datetime | str | None, default: int) -> int:
    if dt is None or dt == "":
        return default
    if isinstance(dt, str):
        try:
            dt = datetime.fromisoformat(dt)
        except ValueError:
            raise MltraceError(f"date {dt!r} is not an ISO 8601 date",
                               hint="use e.g. 2026-01-31 or 2026-01-31T12:00:00") from None
    if dt.year <= 1 or dt.year >= 9999:  # datetime.min / datetime.max (mltrace's defaults)
        return default
    return to_ns(dt)


# history: a component's runs newest first, as rows, in one read of mltrace_lineage's
# lineage_by_component projection (Component, Start, RunId, Row; every run is in mltrace_lineage,
# one row per output: LIMIT 1 BY RunId). Each date bound is in the SQL only when given (an
# always-true bound still costs a filter).
HISTORY_ROWS = """
SELECT Row FROM {{db}}.mltrace_lineage
WHERE Component = {component:String}{since}{until}
ORDER BY Start DESC, RunId DESC
LIMIT 1 BY RunId
LIMIT {n:UInt32}
"""
_SINCE = "\n  AND Start >= fromUnixTimestamp64Nano({since_ns:Int64})"
_UNTIL = "\n  AND Start <= fromUnixTimestamp64Nano({until_ns:Int64})"


def history(store: Any, component: str, limit: int = 10, since: datetime | str | None = None,
            until: datetime | str | None = None) -> list[Run]:
    """A component's runs, newest first, started within [since, until] (naive = UTC).

    Three queries: the runs (one read), their dependencies with notes and flags, staleness."""
    if limit is None:
        limit = 1_000_000
    if limit <= 0:
        return []
    params = {"component": str(component), "since_ns": _bound_ns(since, 0),
              "until_ns": _bound_ns(until, _MAX_NS), "n": int(limit)}
    text = (HISTORY_ROWS.replace("{since}", _SINCE if params["since_ns"] != 0 else "")
            .replace("{until}", _UNTIL if params["until_ns"] != _MAX_NS else ""))
    found = {}
    for (row,) in run_query(store, "history", text, params):
        run, ns = run_from_json(row)
        found[run.id] = (run, ns)
    ids = sorted(found, key=lambda i: (found[i][1], i), reverse=True)
    return complete_runs(store, ids, found)


def count_runs(store: Any) -> int:
    """Number of distinct runs in the store."""
    return int(run_query(store, "count_runs", "SELECT count() FROM {{db}}.mltrace_runs FINAL")[0][0])


# --- components, tags ---------------------------------------------------------------------------
# A component's metadata: the latest of its span rows and create_component rows (by Version);
# tags = span tags ∪ tag_component tags not deleted (latest row per (Name, Tag) wins). The run
# count is count() over the runs_by_component projection (a span delivered twice counts twice
# until the next merge; exact de-duplication here would read every run id).
COMPONENTS_SQL = """
WITH
    meta AS (
        SELECT Name, argMaxIf(Owner, Version, Owner != '') AS Owner,
               argMaxIf(Description, Version, Description != '') AS Description,
               argMaxIf(Tags, Version, notEmpty(Tags)) AS SpanTags
        FROM {{db}}.mltrace_components GROUP BY Name),
    extra AS (
        SELECT Name, groupArray(Tag) AS ExtraTags FROM (
            SELECT Name, Tag, argMax(Deleted, Version) AS d FROM {{db}}.mltrace_component_tags
            GROUP BY Name, Tag) WHERE d = 0 GROUP BY Name),
    runs AS (
        SELECT Component AS Name, count() AS n, max(Start) AS last
        FROM {{db}}.mltrace_runs GROUP BY Component)
SELECT m.Name, m.Owner, m.Description,
       arraySort(arrayDistinct(arrayConcat(m.SpanTags, e.ExtraTags))) AS AllTags,
       r.n, r.last
FROM meta AS m
LEFT JOIN extra AS e ON e.Name = m.Name
LEFT JOIN runs AS r ON r.Name = m.Name
WHERE ({name:String} = '' OR m.Name = {name:String})
  AND ({owner:String} = '' OR m.Owner = {owner:String})
  AND ({tag:String} = '' OR has(AllTags, {tag:String}))
ORDER BY m.Name
SETTINGS join_use_nulls = 0
"""


def _components(store: Any, name: str = "", owner: str = "", tag: str = "") -> list[ComponentInfo]:
    rows = run_query(store, "components", COMPONENTS_SQL,
                     {"name": name or "", "owner": owner or "", "tag": tag or ""})
    return [
        ComponentInfo(name=r[0], owner=r[1], description=r[2], tags=tuple(r[3]), runs=int(r[4] or 0),
                      last_run=utc(r[5]) if r[4] else None)
        for r in rows
    ]


def components(store: Any, owner: str | None = None, tag: str | None = None) -> list[ComponentInfo]:
    """Components (sorted by name), filtered by owner and/or tag."""
    return _components(store, "", owner or "", tag or "")


def component(store: Any, name: str) -> ComponentInfo:
    """One component; NotFound."""
    if not name:
        raise NotFound("no component with an empty name")
    found = _components(store, str(name))
    if not found:
        raise NotFound(f"no component named {name!r}", hint="list them with `mltrace components`")
    return found[0]


def tags(store: Any) -> list[str]:
    """Every tag of every component, sorted."""
    return sorted({t for c in _components(store) for t in c.tags})


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


def pointer(store: Any, name: str) -> PointerInfo:
    """An IO pointer: its type, whether flagged, its producers and consumers; NotFound."""
    rows = run_query(store, "pointer", POINTER_SQL, {"name": str(name)})
    flag = run_query(store, "flag_of", FLAG_OF, {"name": str(name)})
    flagged = bool(flag and flag[0][0])
    if not rows and not flagged:
        raise NotFound(f"no run read or wrote {name!r}", hint="check the output id (`mltrace recent`)")
    types = [r[2] for r in rows if r[2] and r[2] != "UNKNOWN"]
    return PointerInfo(
        name=str(name), type=types[0] if types else "UNKNOWN", flagged=flagged,
        producers=tuple(r[1] for r in rows if r[0] == "out"),
        consumers=tuple(r[1] for r in rows if r[0] == "in"),
    )


# --- lineage, staleness, review (implemented in their own modules) ------------------------------
def trace(store: Any, output: str):  # noqa: ANN201 - re-export
    """Runs that produced ``output`` (see :func:`.lineage.trace`)."""
    from mltrace_otel.store import lineage

    return lineage.trace(store, output)


def trace_run(store: Any, run_id: str):  # noqa: ANN201
    """Runs upstream of a run (see :func:`.lineage.trace_run`)."""
    from mltrace_otel.store import lineage

    return lineage.trace_run(store, run_id)


def impact(store: Any, target: str):  # noqa: ANN201
    """Runs downstream of an output or a run (see :func:`.lineage.impact`)."""
    from mltrace_otel.store import lineage

    return lineage.impact(store, target)


def stale_runs(store: Any, component: str | None = None, limit: int = 100,
               direct: bool = False) -> list[Run]:
    """Latest run of each component that is stale now (see :func:`.staleness.stale_runs`)."""
    from mltrace_otel.store import staleness

    return staleness.stale_runs(store, component, limit, direct)


def review(store: Any, limit: int | None = None, since: datetime | str | None = None,
           component: str | None = None, tag: str | None = None):  # noqa: ANN201
    """Flagged outputs' common runs (see :func:`.review.review`)."""
    from mltrace_otel.store import review as review_mod

    return review_mod.review(store, limit, since=since, component=component, tag=tag)
