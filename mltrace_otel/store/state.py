"""User state written by the CLI, the UI and the API: flags, notes, component metadata and tags.

Each write is one ``INSERT ... SELECT`` of bound parameters (no client-side data blocks, so it
works through a proxy that only forwards SQL) into a ReplacingMergeTree table with
``Version = now64(9)``; reads take the latest row per key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mltrace_otel.errors import MltraceError, NotFound
from mltrace_otel.store import queries
from mltrace_otel.store.models import ComponentInfo

SET_FLAG = """
INSERT INTO {{db}}.mltrace_flags (Pointer, Flagged, Version)
SELECT {pointer:String}, {flagged:UInt8}, now64(9)
"""

FLAGGED = """
SELECT Pointer FROM (
    SELECT Pointer, argMax(Flagged, Version) AS f FROM {{db}}.mltrace_flags GROUP BY Pointer)
WHERE f = 1
ORDER BY Pointer
"""

UNFLAG_ALL = """
INSERT INTO {{db}}.mltrace_flags (Pointer, Flagged, Version)
SELECT arrayJoin({pointers:Array(String)}), 0, now64(9)
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


def _command(store: Any, name: str, text: str, params: dict[str, Any]) -> None:
    store.command(name, queries.sql(store, text), params)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise MltraceError(f"{what} must be a string, not {type(value).__name__}")
    return value


def _tags(tags: Sequence[str] | str) -> list[str]:
    if isinstance(tags, str):
        tags = [tags]
    return list(dict.fromkeys(_text(t, "a tag") for t in tags if t != ""))


def create_component(store: Any, name: str, description: str = "", owner: str = "",
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
    return queries.component(store, name)


def tag_component(store: Any, name: str, tags: Sequence[str]) -> ComponentInfo:
    """Add tags to a component.

    Raises:
        NotFound: no component of that name (mltrace's behaviour).
    """
    queries.component(store, _text(name, "a component name"))
    tag_list = _tags(tags)
    if tag_list:
        _command(store, "add_component_tags", ADD_TAGS, {"name": name, "tags": tag_list})
    return queries.component(store, name)


def flag(store: Any, pointer: str) -> bool:
    """Flag an output for review; True (mltrace's return). Any id can be flagged: one that no
    run wrote shows up in the review as unproduced."""
    _command(store, "flag", SET_FLAG, {"pointer": _text(pointer, "an output id"), "flagged": 1})
    return True


def unflag(store: Any, pointer: str) -> bool:
    """Unflag an output; False (mltrace's return: the flag's new value)."""
    _command(store, "unflag", SET_FLAG, {"pointer": _text(pointer, "an output id"), "flagged": 0})
    return False


def flagged(store: Any) -> list[str]:
    """Every flagged pointer, sorted."""
    return [r[0] for r in queries.run_query(store, "flagged", FLAGGED)]


def unflag_all(store: Any) -> int:
    """Unflag every output; how many were flagged."""
    current = flagged(store)
    if current:
        _command(store, "unflag_all", UNFLAG_ALL, {"pointers": current})
    return len(current)


def set_notes(store: Any, run_id: str, notes: str) -> str:
    """Replace a run's notes (prefix allowed); returns the notes.

    Raises:
        NotFound / AmbiguousRunId: the id does not name exactly one run.
    """
    rid = queries.resolve_run_id(store, _text(run_id, "a run id"))
    notes = _text(notes, "notes")
    _command(store, "set_notes", SET_NOTES, {"run_id": rid, "notes": notes})
    return notes


__all__ = ["create_component", "tag_component", "flag", "unflag", "flagged", "unflag_all",
           "set_notes", "NotFound"]
