"""User state written by the CLI, the UI and the API: flags, notes, component metadata and tags.

Flags bind to an output's version (the run that wrote it): :func:`flag` flags the newest
version unless a run is given. Each write is one ``INSERT ... SELECT`` of bound parameters into
a ReplacingMergeTree table with ``Version = now64(9)``; reads take the latest row per key. The
reads of component metadata live here too, beside its writes.

Imports: runs, models, protocols, errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mltrace_otel.errors import MltraceError, NotFound
from mltrace_otel.store.models import ComponentInfo, FlaggedOutput
from mltrace_otel.store.protocols import Connection
from mltrace_otel.store.runs import fetch_runs, resolve_run_id, run_query, sql, utc

# Flags bind to an output's version (migration 0070): one row per (Pointer, RunId = the run that
# wrote the flagged version, OutputVersion = its content version), latest Version wins. RunId ''
# = a name no run had written when flagged; such a row applies only while it is newer than
# every run-bound row of its pointer (the migration carried older name-level flags over).
SET_FLAGS = """
INSERT INTO {{db}}.mltrace_flags (Pointer, RunId, OutputVersion, Flagged, Version)
SELECT f.1, f.2, f.3, {flagged:UInt8}, now64(9)
FROM (SELECT arrayJoin({rows:Array(Tuple(String, String, String))}) AS f)
"""

# The latest row per (Pointer, RunId), of some pointers ({all:UInt8} = 1: of every pointer).
FLAG_ROWS = """
SELECT Pointer, RunId, argMax(OutputVersion, Version), argMax(Flagged, Version),
       toUnixTimestamp64Nano(max(Version))
FROM {{db}}.mltrace_flags
WHERE {all:UInt8} = 1 OR Pointer IN {ptrs:Array(String)}
GROUP BY Pointer, RunId
"""

# The newest writer of each pointer: (Pointer, RunId, Version).
LATEST_WRITERS = """
SELECT Pointer, argMax(RunId, (Start, RunId)), argMax(Version, (Start, RunId))
FROM {{db}}.mltrace_io
WHERE Role = 'out' AND Pointer IN {ptrs:Array(String)}
GROUP BY Pointer
"""

SET_NOTES = """
INSERT INTO {{db}}.mltrace_notes (RunId, Notes, Version)
SELECT {run_id:String}, {notes:String}, now64(9)
"""

CREATE_COMPONENT = """
INSERT INTO {{db}}.mltrace_components (Name, Owner, Description, Tags, Version)
SELECT {name:String}, {owner:String}, {description:String}, {tags:Array(String)}, now64(9)
"""

ADD_TAGS = """
INSERT INTO {{db}}.mltrace_component_tags (Name, Tag, Deleted, Version)
SELECT {name:String}, arrayJoin({tags:Array(String)}), 0, now64(9)
"""


def _command(store: Connection, name: str, text: str, params: dict[str, Any]) -> None:
    store.command(name, sql(store, text), params)


# --- components, tags (read) -------------------------------------------------------------------
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


def _components(store: Connection, name: str = "", owner: str = "", tag: str = "") -> list[ComponentInfo]:
    rows = run_query(store, "components", COMPONENTS_SQL, {"name": name, "owner": owner, "tag": tag})
    return [
        ComponentInfo(name=r[0], owner=r[1], description=r[2], tags=tuple(r[3]), runs=int(r[4] or 0),
                      last_run=utc(r[5]) if r[4] else None)
        for r in rows
    ]


def components(store: Connection, owner: str | None = None, tag: str | None = None) -> list[ComponentInfo]:
    """Components (sorted by name), filtered by owner and/or tag."""
    return _components(store, "", owner or "", tag or "")


def component(store: Connection, name: str) -> ComponentInfo:
    """One component; NotFound."""
    if not name:
        raise NotFound("no component with an empty name")
    found = _components(store, str(name))
    if not found:
        raise NotFound(f"no component named {name!r}", hint="list them with `mltrace components`")
    return found[0]


def tags(store: Connection) -> list[str]:
    """Every tag of every component, sorted."""
    return sorted({t for c in _components(store) for t in c.tags})


# --- writes --------------------------------------------------------------------------------------
def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise MltraceError(f"{what} must be a string, not {type(value).__name__}")
    return value


def _tags(tags: Sequence[str] | str) -> list[str]:
    if isinstance(tags, str):
        tags = [tags]
    return list(dict.fromkeys(_text(t, "a tag") for t in tags if t != ""))


def create_component(store: Connection, name: str, description: str = "", owner: str = "",
                     tags: Sequence[str] = ()) -> ComponentInfo:
    """Create or update a component's metadata (latest write wins; spans' empty owner or
    description never erase it)."""
    name = _text(name, "a component name")
    if not name:
        raise MltraceError("a component needs a non-empty name")
    tag_list = _tags(tags)
    _command(store, "create_component", CREATE_COMPONENT, {
        "name": name, "owner": _text(owner or "", "owner"),
        "description": _text(description or "", "description"), "tags": tag_list})
    if tag_list:
        _command(store, "add_component_tags", ADD_TAGS, {"name": name, "tags": tag_list})
    return component(store, name)


def tag_component(store: Connection, name: str, tags: Sequence[str]) -> ComponentInfo:
    """Add tags to a component.

    Raises:
        NotFound: no component of that name (mltrace's behaviour).
    """
    component(store, _text(name, "a component name"))
    tag_list = _tags(tags)
    if tag_list:
        _command(store, "add_component_tags", ADD_TAGS, {"name": name, "tags": tag_list})
    return component(store, name)


def active_flags(rows: Sequence[tuple]) -> list[FlaggedOutput]:
    """The flags in effect among raw latest-per-key rows ``(pointer, run, version, flagged, ns)``:
    run-bound rows flagged now, and name-level rows (run "") flagged and newer than every
    run-bound row of their pointer. Sorted by pointer, then run."""
    newest_bound: dict[str, int] = {}
    for p, rid, _v, _f, ns in rows:
        if rid:
            newest_bound[p] = max(newest_bound.get(p, 0), int(ns))
    out = {(p, rid): FlaggedOutput(p, rid, v) for p, rid, v, f, ns in rows
           if int(f) == 1 and (rid or int(ns) > newest_bound.get(p, -1))}
    return [out[k] for k in sorted(out)]


def flagged_outputs(store: Connection, pointers: Sequence[str] | None = None) -> list[FlaggedOutput]:
    """The flagged output versions (of some pointers; None: all), sorted by pointer, then run."""
    if pointers is not None and not pointers:
        return []
    return active_flags(run_query(store, "flag_rows", FLAG_ROWS,
                                  {"all": int(pointers is None), "ptrs": sorted(set(pointers or ()))}))


def _set(store: Connection, name: str, rows: Sequence[tuple[str, str, str]], flagged: int) -> None:
    if rows:
        _command(store, name, SET_FLAGS, {"rows": [tuple(r) for r in rows], "flagged": flagged})


def flag(store: Connection, pointer: str, run_id: str | None = None) -> FlaggedOutput:
    """Flag an output's version for review: the newest version (the run that wrote ``pointer``
    last, now), or with ``run_id`` (prefix allowed) the version that run wrote. An output no run
    wrote is flagged by name (review reports it as unproduced); never an error.

    Returns the :class:`FlaggedOutput` flagged (``run`` "" for a name no run wrote).

    Raises:
        NotFound / AmbiguousRunId: ``run_id`` does not name exactly one run, or that run did
            not write ``pointer``.
    """
    pointer = _text(pointer, "an output id")
    if run_id is not None:
        target = _written_by(store, pointer, _text(run_id, "a run id"))
    else:
        rows = run_query(store, "latest_writers", LATEST_WRITERS, {"ptrs": [pointer]})
        target = FlaggedOutput(pointer, rows[0][1], rows[0][2]) if rows else FlaggedOutput(pointer)
    _set(store, "flag", [(target.pointer, target.run, target.version)], 1)
    return target


def _written_by(store: Connection, pointer: str, run_id: str) -> FlaggedOutput:
    """The version of ``pointer`` that the run ``run_id`` (prefix allowed) wrote; NotFound when
    it did not write it."""
    rid = resolve_run_id(store, run_id)
    found = fetch_runs(store, [rid])
    run = found[rid][0] if rid in found else None
    out = next((p for p in run.outputs if p.name == pointer), None) if run else None
    if out is None:
        raise NotFound(f"run {rid[:8]} did not write {pointer!r}",
                       hint=f"`mltrace inspect {rid[:8]}` lists its outputs")
    return FlaggedOutput(pointer, rid, out.version)


def unflag(store: Connection, pointer: str, run_id: str | None = None) -> list[FlaggedOutput]:
    """Unflag an output: every flagged version of it, or with ``run_id`` (prefix allowed) the
    version that run wrote. Returns the versions that were flagged and now are not.

    Raises:
        NotFound / AmbiguousRunId: as :func:`flag`, for ``run_id``.
    """
    pointer = _text(pointer, "an output id")
    current = flagged_outputs(store, [pointer])
    if run_id is not None:
        target = _written_by(store, pointer, _text(run_id, "a run id"))
        current = [f for f in current if f.run == target.run]
        rows = [(pointer, target.run, target.version)]
    else:
        rows = [(f.pointer, f.run, f.version) for f in current] + [(pointer, "", "")]
    _set(store, "unflag", rows, 0)
    return current


def flagged(store: Connection) -> list[str]:
    """Every flagged pointer name (once however many of its versions are flagged), sorted."""
    return sorted({f.pointer for f in flagged_outputs(store)})


def unflag_all(store: Connection) -> int:
    """Unflag every output; how many versions were flagged."""
    current = flagged_outputs(store)
    _set(store, "unflag_all", [(f.pointer, f.run, f.version) for f in current], 0)
    return len(current)


def set_notes(store: Connection, run_id: str, notes: str) -> str:
    """Replace a run's notes (prefix allowed); returns the notes.

    Raises:
        NotFound / AmbiguousRunId: the id does not name exactly one run.
    """
    rid = resolve_run_id(store, _text(run_id, "a run id"))
    notes = _text(notes, "notes")
    _command(store, "set_notes", SET_NOTES, {"run_id": rid, "notes": notes})
    return notes


__all__ = ["components", "component", "tags", "create_component", "tag_component", "flag", "unflag",
           "flagged", "flagged_outputs", "unflag_all", "set_notes", "active_flags", "NotFound"]
