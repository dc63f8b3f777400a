"""Whole runs read by id: the run row, run ids, and how the query modules run their SQL.

Every query module builds on this one: :func:`run_query` (a named read with bound parameters,
the database the only splice), ``RUN_ROW_JSON`` (a run as one JSON array, what
``mltrace_lineage`` stores per run) and its parsing into a :class:`~.models.Run` or a lineage
:class:`Info`, reading runs by full id (:func:`rows_by_id`, :func:`fetch_runs`,
:func:`lineage_info`) and resolving a typed run-id prefix (:func:`resolve_run_id`).

Imports: models, schema (identifier quoting), protocols, errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Any

from mltrace_otel.errors import AmbiguousRunId, MltraceError, NotFound
from mltrace_otel.store.models import Pointer, Run, TestResult
from mltrace_otel.store.protocols import Connection
from mltrace_otel.store.schema import quote_ident

__all__ = [
    "MIN_PREFIX", "RUN_ROW_JSON", "Info", "Writers", "bound_ns", "fetch_runs", "json_id",
    "lineage_info", "resolve_run_id", "row_to_run", "rows_by_id", "run_from_json", "run_from_list",
    "run_id_prefix", "run_query", "sql", "to_ns", "utc",
]

_HEX = re.compile(r"[0-9a-f]+")
MIN_PREFIX = 4
"""Shortest run-id prefix accepted wherever a run id is typed."""


# --- SQL helpers --------------------------------------------------------------------------------
def sql(store: Connection, text: str) -> str:
    """``text`` with ``{{db}}`` replaced by the store's quoted database (the only splice)."""
    return text.replace("{{db}}", quote_ident(store.database))


def run_query(store: Connection, name: str, text: str,
              params: dict[str, Any] | None = None) -> list[tuple]:
    """Run a named read query with bound parameters (see :meth:`.Connection.query`)."""
    return store.query(name, sql(store, text), params or {})


def utc(dt: datetime) -> datetime:
    """A naive datetime from the store, as timezone-aware UTC."""
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def to_ns(dt: datetime) -> int:
    """Nanoseconds since the epoch (naive datetimes are UTC)."""
    dt = utc(dt)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def bound_ns(dt: datetime | str | None, default: int) -> int:
    """A date bound (a datetime, naive = UTC, or an ISO 8601 string) in nanoseconds;
    ``default`` when none is given (None, "", or ``datetime.min`` / ``datetime.max``).

    Raises:
        MltraceError: a string that is not an ISO 8601 date.
    """
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
    # DateTime64(9) holds 1970 .. 2262-04-11 (Int64 ns): a bound outside it means "from the
    # beginning" or "up to the end", never a wrapped-around number
    return min(max(to_ns(dt), 0), 2**63 - 1)


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


def rows_by_id(store: Connection, ids: Iterable[str]) -> list[str]:
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


def fetch_runs(store: Connection, ids: Iterable[str]) -> dict[str, tuple[Run, int]]:
    """Runs by full id (missing ids absent), without dependencies or staleness: one query."""
    out = {}
    for row in rows_by_id(store, ids):
        run, ns = run_from_json(row)
        out[run.id] = (run, ns)
    return out


# --- a run as lineage sees it -------------------------------------------------------------------
@dataclass(frozen=True)
class Info:
    """What lineage (and staleness, of a dependency) needs of a run: its inputs (with
    versions), set_upstream names, outputs; ``run`` is the whole run (a Run without
    dependencies or staleness) when it was read."""

    id: str
    component: str
    ns: int
    inputs: tuple[tuple[str, str], ...]
    upstream: tuple[str, ...]
    outputs: dict[str, str] = field(hash=False, compare=False)
    raw: list | None = field(default=None, hash=False, compare=False, repr=False)

    @cached_property
    def run(self) -> Run | None:
        """The whole run (a Run without dependencies or staleness) when it was read, else None:
        built on first use (answers that only resolve producers never build it)."""
        return None if self.raw is None else run_from_list(self.raw)[0]

    @classmethod
    def of_row(cls, row_json: str) -> Info:
        """Info of a ``RUN_ROW_JSON`` value (keeping the row for the Run it describes)."""
        r = json.loads(row_json)
        in_versions, out_versions = r[12], r[15]
        outputs: dict[str, str] = {}
        for i, name in enumerate(r[14]):
            outputs.setdefault(name, out_versions[i] if i < len(out_versions) else "")
        inputs = tuple((name, in_versions[i] if i < len(in_versions) else "")
                       for i, name in enumerate(r[11]))
        return cls(r[0], r[2], int(r[3]), inputs, tuple(r[17]), outputs, r)


Writers = dict[str, dict[str, Info]]
"""``{pointer: {run id: Info}}``: every run that ever wrote each pointer listed (learnt from
lineage's unwindowed candidate read, which is complete); staleness reuses it (newer writers)."""


def lineage_info(store: Connection, ids: Iterable[str]) -> dict[str, Info]:
    """Lineage Info (with the whole run) of runs by full id: one read of mltrace_lineage's
    lineage_by_run projection (two columns)."""
    return {i.id: i for i in (Info.of_row(r) for r in rows_by_id(store, ids))}


# --- run ids ------------------------------------------------------------------------------------
RESOLVE_CANDIDATES = 50
"""Most candidates an ambiguous prefix lists (one more is read to know there are more)."""
RESOLVE_PREFIX = f"""
SELECT DISTINCT RunId FROM {{{{db}}}}.mltrace_runs
WHERE startsWith(RunId, {{prefix:String}})
ORDER BY RunId
LIMIT {RESOLVE_CANDIDATES + 1}
"""


def run_id_prefix(text: str) -> str | None:
    """``text`` as a run-id prefix (stripped, lower case), or None when it cannot be one (not
    hex, or shorter than :data:`MIN_PREFIX`)."""
    p = str(text).strip().lower()
    return p if len(p) >= MIN_PREFIX and _HEX.fullmatch(p) else None


def resolve_run_id(store: Connection, prefix: str) -> str:
    """Full run id for a unique prefix of at least 4 hex characters.

    Raises:
        NotFound: no run id starts with it (or it is not hex / too short).
        AmbiguousRunId: several runs start with it (candidates listed).
    """
    p = run_id_prefix(prefix)
    if p is None:
        raise NotFound(f"no run with id {prefix!r}",
                       hint=f"a run id is hex; type at least {MIN_PREFIX} characters of it")
    rows = run_query(store, "resolve_run_id", RESOLVE_PREFIX, {"prefix": p})
    ids = [r[0] for r in rows]
    if not ids:
        raise NotFound(f"no run with id {prefix!r}", hint="list run ids with `mltrace recent`")
    if p in ids:
        return p
    if len(ids) > 1:
        raise AmbiguousRunId(prefix, ids[:RESOLVE_CANDIDATES], more=len(ids) > RESOLVE_CANDIDATES)
    return ids[0]
