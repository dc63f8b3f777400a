"""ComponentRun (mltrace's manual API) and log_component_run.

Build a run by hand (start/end timestamps, inputs, outputs, git hash, code snapshot, notes,
upstream components) and log it: it becomes one span, like a decorated run. The query API
also returns ComponentRun objects read from the store (with status, test results, exception
and owner filled in).

Inputs and outputs named by a local file get that file's content version
(:mod:`mltrace_otel.sdk.files`): inputs when :meth:`ComponentRun.add_input` / ``add_inputs``
adds them (mltrace's documented pattern adds an input before reading it), outputs and any
input added otherwise when the run is logged.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from mltrace_otel import conventions as C
from mltrace_otel.sdk import spans
from mltrace_otel.sdk.exporters import MAX_TIME_NS, MIN_TIME_NS
from mltrace_otel.sdk.pointers import IOPointer, PointerTypeEnum, with_file_version

_ENDPOINT = PointerTypeEnum.ENDPOINT


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ComponentRun:
    """One run of a component (mltrace's ComponentRun).

    Args:
        component_name: the component this is a run of.
        notes: free text recorded with the run.
        start_timestamp / end_timestamp: when it ran (naive datetimes are taken as UTC).
        inputs / outputs: IOPointers or names.
        git_hash / git_tags / code_snapshot: the code that ran.
        id: the run id (span id, 16 hex chars); set when the run is logged.
        stale: staleness messages (filled by the query API).
        dependencies: names of upstream components (see :meth:`set_upstream`).
        status / test_results / exception / owner: filled by the query API from the store.
    """

    def __init__(self, component_name: str, notes: str = "", start_timestamp: datetime | None = None,
                 end_timestamp: datetime | None = None, inputs: list | None = None,
                 outputs: list | None = None, git_hash: str | None = None,
                 git_tags: list[str] | None = None, code_snapshot: str | bytes | None = None,
                 id: str | None = None, stale: list[str] | None = None,  # noqa: A002 - mltrace's name
                 dependencies: list[str] | None = None, *, status: str = "UNSET",
                 test_results: list | None = None, exception: str = "", owner: str = "") -> None:
        self._component_name = component_name
        self._notes = notes or ""
        self._start_timestamp = start_timestamp
        self._end_timestamp = end_timestamp
        self._inputs: list[IOPointer] = spans.dedupe([_to_pointer(x) for x in inputs]) if inputs else []
        self._versioned_inputs: set[str] = set()  # names add_input(s) took the file version of
        self._outputs: list[IOPointer] = spans.dedupe([_to_pointer(x) for x in outputs]) if outputs else []
        self._git_hash = git_hash
        self._git_tags = list(git_tags) if git_tags else git_tags
        self._code_snapshot = _decode(code_snapshot)
        self._id = id
        self._stale = list(stale or [])
        self._dependencies = list(dict.fromkeys(dependencies)) if dependencies else []
        self._status = status
        self._test_results = test_results
        self._exception = exception
        self._owner = owner

    # --- properties ------------------------------------------------------------------------
    @property
    def component_name(self) -> str:
        return self._component_name

    @property
    def notes(self) -> str:
        return self._notes

    @notes.setter
    def notes(self, notes: str) -> None:
        self._notes = notes or ""

    @property
    def start_timestamp(self) -> datetime | None:
        return self._start_timestamp

    @property
    def end_timestamp(self) -> datetime | None:
        return self._end_timestamp

    @property
    def inputs(self) -> list[IOPointer]:
        return self._inputs

    @inputs.setter
    def inputs(self, inputs: list) -> None:
        self._inputs = spans.dedupe(_to_pointer(x) for x in inputs)
        self._versioned_inputs = set()

    @property
    def outputs(self) -> list[IOPointer]:
        return self._outputs

    @outputs.setter
    def outputs(self, outputs: list) -> None:
        self._outputs = spans.dedupe(_to_pointer(x) for x in outputs)

    @property
    def git_hash(self) -> str | None:
        return self._git_hash

    @git_hash.setter
    def git_hash(self, new_hash: str | None) -> None:
        self._git_hash = new_hash

    @property
    def git_tags(self) -> list[str] | None:
        return self._git_tags

    @git_tags.setter
    def git_tags(self, tags: list[str] | None) -> None:
        self._git_tags = list(tags) if tags else tags

    @property
    def code_snapshot(self) -> str | None:
        return self._code_snapshot

    @code_snapshot.setter
    def code_snapshot(self, snapshot: str | bytes | None) -> None:
        self._code_snapshot = _decode(snapshot)

    @property
    def id(self) -> str | None:
        return self._id

    @property
    def stale(self) -> list[str]:
        return self._stale

    @property
    def dependencies(self) -> list[str]:
        return self._dependencies

    @property
    def status(self) -> str:
        """UNSET, OK or ERROR (ERROR: the function or a test raised)."""
        return self._status

    @property
    def test_results(self) -> list | None:
        return self._test_results

    @property
    def exception(self) -> str:
        return self._exception

    @property
    def owner(self) -> str:
        return self._owner

    @property
    def duration(self) -> float | None:
        """Seconds between start and end, or None."""
        if self._start_timestamp is None or self._end_timestamp is None:
            return None
        return (spans.to_ns(self._end_timestamp) - spans.to_ns(self._start_timestamp)) / 1e9

    # --- mltrace's setters -----------------------------------------------------------------
    def set_start_timestamp(self, ts: datetime | None = None) -> None:
        """Set the start (now, in UTC, by default). Raises TypeError for a non-datetime."""
        if ts is None:
            ts = _utcnow()
        if not isinstance(ts, datetime):
            raise TypeError("Timestamp must be of type datetime.")
        self._start_timestamp = ts

    def set_end_timestamp(self, ts: datetime | None = None) -> None:
        """Set the end (now, in UTC, by default). Raises TypeError for a non-datetime."""
        if ts is None:
            ts = _utcnow()
        if not isinstance(ts, datetime):
            raise TypeError("Timestamp must be of type datetime.")
        self._end_timestamp = ts

    def add_input(self, inp: str | IOPointer, pointer_type: PointerTypeEnum | None = None) -> None:
        """Add one input (a name or an IOPointer); a repeated name is ignored. A name that is a
        local file gets the file's version now, before the caller reads (or rewrites) it."""
        self._add_inputs([_to_pointer(inp, pointer_type)])

    def add_inputs(self, inputs: list[str | IOPointer]) -> None:
        """Add several inputs (local files are versioned now, as by :meth:`add_input`)."""
        self._add_inputs([_to_pointer(x) for x in _listify(inputs)])

    def _add_inputs(self, new: list[IOPointer]) -> None:
        new = [with_file_version(p) for p in new]
        if not self._inputs:  # the common case: every pointer kept is one of these
            self._inputs = spans.dedupe(new)
            self._versioned_inputs.update(p._name for p in self._inputs)
            return
        self._inputs = spans.dedupe([*self._inputs, *new])
        added = set(map(id, new))  # a name already there keeps its pointer, unversioned until logged
        self._versioned_inputs.update(p._name for p in self._inputs if id(p) in added)

    def add_output(self, out: str | IOPointer, pointer_type: PointerTypeEnum | None = None) -> None:
        """Add one output (a name or an IOPointer); a repeated name is ignored."""
        self._outputs = spans.dedupe([*self._outputs, _to_pointer(out, pointer_type)])

    def add_outputs(self, outputs: list[str | IOPointer]) -> None:
        """Add several outputs."""
        new = [_to_pointer(x) for x in _listify(outputs)]
        self._outputs = spans.dedupe([*self._outputs, *new] if self._outputs else new)

    def add_notes(self, notes: str) -> None:
        """Set the run's notes."""
        self._notes = notes or ""

    def set_upstream(self, dependencies: str | list[str]) -> None:
        """Declare upstream components (Airflow-style); each resolves to that component's latest
        run that started no later than this one (resolved by the store at query time)."""
        deps = [dependencies] if isinstance(dependencies, str) else list(dependencies)
        self._dependencies = list(dict.fromkeys([*self._dependencies, *map(str, deps)]))

    # --- dict form -------------------------------------------------------------------------
    def to_dictionary(self) -> dict[str, Any]:
        return {
            "component_name": self._component_name, "notes": self._notes,
            "start_timestamp": self._start_timestamp, "end_timestamp": self._end_timestamp,
            "inputs": list(self._inputs), "outputs": list(self._outputs),
            "git_hash": self._git_hash, "git_tags": self._git_tags,
            "code_snapshot": self._code_snapshot, "id": self._id, "stale": list(self._stale),
            "dependencies": list(self._dependencies), "status": self._status,
            "test_results": self._test_results, "exception": self._exception, "owner": self._owner,
        }

    @classmethod
    def from_dictionary(cls, d: dict[str, Any]) -> ComponentRun:
        keys = ("notes", "start_timestamp", "end_timestamp", "inputs", "outputs", "git_hash", "git_tags",
                "code_snapshot", "id", "stale", "dependencies")
        extra = ("status", "test_results", "exception", "owner")
        return cls(d["component_name"], **{k: d[k] for k in keys if k in d},
                   **{k: d[k] for k in extra if k in d and d[k] is not None})

    def __repr__(self) -> str:
        d = self.to_dictionary()
        for k in ("start_timestamp", "end_timestamp"):
            if d[k] is not None:
                d[k] = d[k].isoformat(sep=" ", timespec="seconds")
        d["inputs"] = [p.name for p in self._inputs]
        d["outputs"] = [p.name for p in self._outputs]
        if d["code_snapshot"] and len(d["code_snapshot"]) > 80:
            d["code_snapshot"] = d["code_snapshot"][:77] + "..."
        return json.dumps(d, default=str)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ComponentRun):
            return NotImplemented
        return self.to_dictionary() == other.to_dictionary()

    def __hash__(self) -> int:
        return hash((self._component_name, self._id))


def _decode(snapshot: str | bytes | None) -> str | None:
    if isinstance(snapshot, (bytes, bytearray)):
        return bytes(snapshot).decode("utf-8", "replace")
    return snapshot


def _listify(x: Any) -> list:
    return [x] if isinstance(x, (str, IOPointer)) else list(x)


def _to_pointer(x: Any, pointer_type: PointerTypeEnum | None = None) -> IOPointer:
    if type(x) is str:  # the common case: a name
        return IOPointer(x, "", pointer_type)
    if isinstance(x, IOPointer):
        return x
    if isinstance(x, dict):
        return IOPointer.from_dictionary(x)
    return IOPointer(str(x), pointer_type=pointer_type)


def log_component_run(component_run: ComponentRun, set_dependencies_from_inputs: bool = True,
                      staleness_threshold: int = C.DEFAULT_STALENESS_THRESHOLD_S) -> str:
    """Emit a hand-built run as a span; return its run id (also set on ``component_run.id``).

    Args:
        component_run: the run; it must have start and end timestamps.
        set_dependencies_from_inputs: link the run to the same-process producers of its inputs
            (the store always resolves producers from inputs; this only controls span links).
        staleness_threshold: seconds after which an input counts as stale for this run.

    Inputs and outputs that name a local file and carry no version yet get the file's version
    now (see the module docstring).

    A start or end before 1970 or after 2262-04-11 (what a span can carry) is clamped into
    that range with a warning (see :func:`mltrace_otel.sdk.spans.clamp_run_times`).

    Raises:
        RuntimeError: the run has no start or no end timestamp (mltrace's error), or ends
            before it starts.
    """
    cr = component_run
    begun, ended = cr._start_timestamp, cr._end_timestamp
    if begun is None or ended is None:
        missing = [n for n, v in (("start_timestamp", begun), ("end_timestamp", ended)) if v is None]
        raise RuntimeError(f"Cannot log run of {cr._component_name!r}: {' and '.join(missing)} not set "
                           "(call set_start_timestamp() and set_end_timestamp()).")
    start, end = spans.to_ns(begun), spans.to_ns(ended)
    if end < start:
        raise RuntimeError(f"Cannot log run of {cr._component_name!r}: it ends before it starts.")
    if start < MIN_TIME_NS or end > MAX_TIME_NS:
        start, end = spans.clamp_run_times(cr._component_name, start, end)
    checked = getattr(cr, "_versioned_inputs", ())  # added by add_input(s): versioned then
    inputs = [p if p._name in checked else with_file_version(p) for p in cr._inputs]
    outputs = [with_file_version(p) for p in cr._outputs]
    attrs = spans.component_attributes(cr._component_name, cr._owner)
    attrs.update(spans.pointer_attributes(inputs, outputs), **{
        C.RUN_STALENESS_THRESHOLD_S: int(staleness_threshold),
        C.RUN_ENDPOINT: _ENDPOINT in [p._type for p in outputs]})
    if cr._notes:
        attrs[C.RUN_NOTES] = str(cr._notes)
    if cr._git_hash:
        attrs[C.VCS_REVISION] = str(cr._git_hash)
    if cr._git_tags:
        attrs[C.GIT_TAGS] = tuple(str(t) for t in cr._git_tags)
    if cr._code_snapshot:
        attrs[C.CODE_SNAPSHOT] = spans.snapshot(cr._code_snapshot)
    links = spans.links_for([p._name for p in inputs]) if set_dependencies_from_inputs and inputs else None
    span = spans.start_run_span(cr._component_name, attrs, links, start)
    if cr._dependencies:  # the user's values: the SDK checks them
        span.set_attribute(C.RUN_UPSTREAM, list(cr._dependencies))
    span.end(end_time=end)
    ctx = span.get_span_context()
    if outputs:
        spans.remember_outputs(outputs, ctx)
    cr._id = format(ctx.span_id, "016x")
    return cr._id
