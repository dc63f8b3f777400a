"""Result types of the store's queries: frozen dataclasses, never loose dicts.

These are the contract between the store and its readers (the mltrace API facade, the CLI, the
Dash app, /metrics). Every datetime is timezone-aware UTC. ``to_json()`` gives the stable JSON
shape the CLI's ``--json`` prints (documented in the README).

Imports nothing from the project.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


class JsonMixin:
    """``to_json()``: the dataclass as plain JSON-able data (datetimes as ISO 8601)."""

    def to_json(self) -> Any:
        return _jsonable(self)


@dataclass(frozen=True)
class Pointer(JsonMixin):
    """An IO pointer as one run saw it."""

    name: str
    type: str = "UNKNOWN"  # DATA, MODEL, ENDPOINT, UNKNOWN
    version: str = ""  # content fingerprint, "" when unknown
    flagged: bool = False


@dataclass(frozen=True)
class TestResult(JsonMixin):
    """One before/after test method's outcome."""

    __test__ = False  # not a pytest class

    name: str
    method: str
    phase: str  # "before" | "after"
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class Run(JsonMixin):
    """One component run (one span carrying mltrace.component.name).

    ``dependencies`` (run ids of the producers of its inputs, plus set_upstream runs) and
    ``stale`` (staleness messages in mltrace's wording) are computed at query time.
    ``code_snapshot`` is filled only by single-run reads (inspect), "" in lists.
    """

    id: str
    trace_id: str
    component: str
    start: datetime
    end: datetime
    status: str = "UNSET"  # "OK" | "ERROR" | "UNSET"
    status_message: str = ""
    owner: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    service_name: str = ""
    inputs: tuple[Pointer, ...] = ()
    outputs: tuple[Pointer, ...] = ()
    upstream: tuple[str, ...] = ()
    staleness_threshold_s: int = 2592000
    endpoint: bool = False
    git_hash: str = ""
    git_tags: tuple[str, ...] = ()
    code_function: str = ""
    code_file: str = ""
    code_snapshot: str = ""
    notes: str = ""
    tests: tuple[TestResult, ...] = ()
    exception: str = ""
    dependencies: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        """Wall time of the run in seconds."""
        return (self.end - self.start).total_seconds()

    @property
    def failed(self) -> bool:
        """The function or a test raised."""
        return self.status == "ERROR"

    def to_json(self) -> Any:
        d = _jsonable(self)
        d["duration_s"] = self.duration_s
        return d


@dataclass(frozen=True)
class LineageNode(JsonMixin):
    """A run in a trace or impact graph, ``depth`` hops from where the walk started (0 = start)."""

    depth: int
    run: Run


@dataclass(frozen=True)
class LineageEdge(JsonMixin):
    """``producer`` wrote ``pointer`` which ``consumer`` read (both run ids)."""

    producer: str
    consumer: str
    pointer: str


@dataclass(frozen=True)
class Lineage(JsonMixin):
    """A trace (upstream) or impact (downstream) walk: each run once, ordered by depth then
    newest first, plus the edges between them. ``outputs`` (impact only): every pointer the
    reached runs wrote."""

    root: str  # the output pointer or run id the walk started from
    direction: str  # "trace" | "impact"
    nodes: tuple[LineageNode, ...] = ()
    edges: tuple[LineageEdge, ...] = ()
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReviewEntry(JsonMixin):
    """A run reached from ``count`` of the flagged outputs; coverage = count / len(flagged)."""

    run: Run
    count: int
    coverage: float


@dataclass(frozen=True)
class Review(JsonMixin):
    """review_flagged_outputs: the flagged ids, those no run produced, and the ranked runs."""

    flagged: tuple[str, ...] = ()
    unproduced: tuple[str, ...] = ()
    entries: tuple[ReviewEntry, ...] = ()


@dataclass(frozen=True)
class ComponentInfo(JsonMixin):
    """A component's static metadata and a summary of its runs."""

    name: str
    owner: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    runs: int = 0
    last_run: datetime | None = None


@dataclass(frozen=True)
class PointerInfo(JsonMixin):
    """An IO pointer across runs: its type, whether flagged, who wrote and read it."""

    name: str
    type: str = "UNKNOWN"
    flagged: bool = False
    producers: tuple[str, ...] = ()  # run ids, newest first
    consumers: tuple[str, ...] = ()  # run ids, newest first


@dataclass(frozen=True)
class IngestResult(JsonMixin):
    """What one insert of spans did: rows written, spans rejected and why."""

    accepted: int = 0
    rejected: int = 0
    errors: tuple[str, ...] = field(default_factory=tuple)
