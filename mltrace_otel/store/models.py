"""Result types of the store's queries: frozen dataclasses, never loose dicts.

These are the contract between the store and its readers (the mltrace API facade, the CLI, the
Dash app, /metrics). Every datetime is timezone-aware UTC. ``to_json()`` gives the stable JSON
shape the CLI's ``--json`` and the HTTP API print (documented in docs/cli.md); ``from_json()``
reads it back.

Imports nothing from the project.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from mltrace_otel.spool import Entry

_T = TypeVar("_T")


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        d = {f.name: _jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
        shape = getattr(v, "_json_out", None)
        return shape(d) if shape is not None else d
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def _from_jsonable(tp: Any, v: Any) -> Any:
    """``v`` (from :func:`_jsonable`) back as type ``tp`` (a resolved annotation)."""
    if v is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _from_jsonable(inner[0], v) if len(inner) == 1 else v
    if origin is tuple:
        return tuple(_from_jsonable(typing.get_args(tp)[0], x) for x in v)
    if origin is list:
        return [_from_jsonable(typing.get_args(tp)[0], x) for x in v]
    if origin is dict:
        return {str(k): x for k, x in v.items()}
    if tp is datetime:
        return datetime.fromisoformat(v)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _from_dict(tp, v)
    return v


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """A dataclass's fields and their resolved types, worked out once per class (resolving the
    annotations costs ~0.8 ms, which dominated the API client's answers of many runs)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _from_dict(cls: type[_T], data: dict[str, Any]) -> _T:
    shape = getattr(cls, "_json_in", None)
    if shape is not None:
        data = shape(data)
    types_ = _field_types(cls)
    return cls(**{k: _from_jsonable(types_[k], v) for k, v in data.items() if k in types_})


class JsonMixin:
    """``to_json()``: the dataclass as plain JSON-able data (datetimes as ISO 8601);
    ``from_json()``: the inverse (derived keys such as ``duration_s`` are ignored), so the
    HTTP API's client hands readers the same objects a direct read does."""

    def to_json(self) -> Any:
        return _jsonable(self)

    @classmethod
    def from_json(cls: type[_T], data: dict[str, Any]) -> _T:
        """The result ``to_json()`` gave ``data`` for."""
        return _from_dict(cls, data)


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


STALE_KINDS = ("old_input", "fresher_upstream", "newer_upstream", "upstream_failed", "upstream_stale")
"""Machine-readable kinds of :class:`StaleReason`: the first four are direct causes (a dependency
of the run itself), ``upstream_stale`` is inherited (a run upstream of it is stale)."""


@dataclass(frozen=True)
class Hop(JsonMixin):
    """One dependency step of an inherited staleness path: ``run`` (of ``component``) wrote
    ``pointer`` (``version``, "" unknown) that the previous step read ("" pointer: set_upstream)."""

    run: str
    component: str
    pointer: str = ""
    version: str = ""


@dataclass(frozen=True)
class StaleReason(JsonMixin):
    """Why a run is stale, machine-readable beside mltrace's ``message``.

    Direct causes name the dependency ``run`` (of ``component``) the run read ``pointer`` from:
    ``old_input`` (it ran more than the threshold before), ``fresher_upstream`` (``count``
    fresher runs of its component began before the run), ``newer_upstream`` (its component has
    written a different version since: ``newer``), ``upstream_failed`` (it failed). An inherited
    cause (``upstream_stale``, ``inherited`` True) names the stale upstream ``run``, the ``path``
    of hops from this run to it, and that run's own direct reason as ``root``.
    """

    kind: str
    message: str
    run: str
    component: str
    pointer: str = ""
    newer: str = ""
    count: int = 0
    inherited: bool = False
    path: tuple[Hop, ...] = ()
    root: StaleReason | None = None


@dataclass(frozen=True)
class Change(JsonMixin):
    """What differs from the component's previous run: an ``input`` or ``output`` pointer
    (``name``) whose version differs or that is new (``previous`` ""), or the ``code`` (the
    code snapshot's hash; ``name`` "")."""

    what: str  # "input" | "output" | "code"
    name: str
    previous: str
    current: str


@dataclass(frozen=True)
class Run(JsonMixin):
    """One component run (one span carrying mltrace.component.name).

    ``dependencies`` (run ids of the producers of its inputs, plus set_upstream runs) and
    ``stale`` (staleness messages in mltrace's wording) are computed at query time.
    ``code_snapshot`` is filled only by single-run reads (inspect), "" in lists.
    ``stale_reasons`` say why, machine-readable (``stale`` holds their messages, direct causes
    first); lists (recent, history) carry direct causes only, walks (trace, impact, review,
    stale runs, inspect) inherited ones too. ``previous_run``, ``code_hash`` and ``changes``
    (what differs from the component's previous run) are filled by inspect and review.
    """

    id: str
    trace_id: str
    component: str
    start: datetime
    end: datetime
    status: str = "UNSET"  # the OTel span status: "OK" | "ERROR" | "UNSET" (JSON: otel_status)
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
    stale_reasons: tuple[StaleReason, ...] = ()
    previous_run: str = ""
    code_hash: str = ""
    changes: tuple[Change, ...] = ()

    @property
    def duration_s(self) -> float:
        """Wall time of the run in seconds."""
        return (self.end - self.start).total_seconds()

    @property
    def failed(self) -> bool:
        """The function or a test raised."""
        return self.status == "ERROR"

    @property
    def stale_direct(self) -> tuple[StaleReason, ...]:
        """The direct causes of staleness (a dependency of this run), without inherited ones."""
        return tuple(r for r in self.stale_reasons if not r.inherited)

    @property
    def stale_inherited_only(self) -> bool:
        """Stale only because a run upstream is (walks carry such causes, lists do not); False
        for a run built with messages but no reasons (its messages count as direct)."""
        return bool(self.stale_reasons) and not self.stale_direct

    @property
    def failure(self) -> str:
        """One line saying how the run failed ("" when it did not): the exception's first
        line, else the status message, else the first failed test."""
        if not self.failed:
            return ""
        for text in (self.exception, self.status_message):
            line = text.strip().splitlines()[0] if text.strip() else ""
            if line:
                return line
        bad = next((t for t in self.tests if not t.passed), None)
        return f"test {bad.name}.{bad.method} failed" if bad else "failed"

    def _json_out(self, d: dict[str, Any]) -> dict[str, Any]:
        """The JSON shape: ``status`` as the CLI shows it (``ok`` / ``failed``), the span's
        status code as ``otel_status``, and ``duration_s`` (wherever a run is in the JSON)."""
        out: dict[str, Any] = {}
        for k, v in d.items():
            if k == "status":
                out["status"] = "failed" if self.failed else "ok"
                out["otel_status"] = v
            else:
                out[k] = v
        out["duration_s"] = self.duration_s
        return out

    @staticmethod
    def _json_in(data: dict[str, Any]) -> dict[str, Any]:
        """The inverse of :meth:`_json_out`; also reads the older shape (``status`` the OTel code)."""
        data = dict(data)
        if "otel_status" in data:
            data["status"] = data.pop("otel_status")
        elif data.get("status") in ("ok", "failed"):
            data["status"] = "ERROR" if data["status"] == "failed" else "UNSET"
        return data


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
    version: str = ""  # the version read ("" unknown): the consumer's, else what the producer wrote


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
    """A run reached from ``count`` of the flagged outputs; coverage = count / len(flagged).
    ``why``: the evidence that broke ties among equal counts (failed, failed test, stale,
    changed since the component's previous run), as short sentences; ``coverage_text`` is
    mltrace's sentence."""

    run: Run
    count: int
    coverage: float
    why: tuple[str, ...] = ()
    coverage_text: str = ""


@dataclass(frozen=True)
class FlaggedOutput(JsonMixin):
    """A flagged output version: ``pointer`` as ``run`` wrote it (``version``, "" unknown);
    ``run`` "" when no run had written it when it was flagged."""

    pointer: str
    run: str = ""
    version: str = ""


@dataclass(frozen=True)
class Review(JsonMixin):
    """review_flagged_outputs: the flagged ids, those no run produced, and the ranked runs.

    ``flagged`` holds the pointer of each flagged version (a name twice when two of its versions
    are flagged), so coverage = count / len(flagged); ``flagged_versions`` says which versions.
    ``scope``: the filters the entries were limited to (since, component, tag), {} when none.
    """

    flagged: tuple[str, ...] = ()
    unproduced: tuple[str, ...] = ()
    entries: tuple[ReviewEntry, ...] = ()
    flagged_versions: tuple[FlaggedOutput, ...] = ()
    scope: dict[str, str] = field(default_factory=dict, hash=False)


RUN_STATUSES = ("ok", "failed", "stale")
"""The statuses runs can be filtered by (:meth:`.core.Store.recent_page`): ``ok`` and ``failed``
as the CLI's JSON ``status`` says them, ``stale`` for runs stale now."""


@dataclass(frozen=True)
class RunPage(JsonMixin):
    """A page of runs, newest first, and whether older runs that match the same question remain
    (``more``: ask again with ``before=next_before``).

    ``next_before`` is the last run shown, or, when a search for stale runs stopped after
    looking at :data:`~mltrace_otel.store.queries.STALE_SCAN` runs, the last run it looked at
    (the page may then hold fewer runs than asked, even none)."""

    runs: tuple[Run, ...] = ()
    more: bool = False
    next_before: str = ""


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


@dataclass(frozen=True)
class Recovered:
    """What a collector finds in the journal when it starts: groups whose index insert may
    have been cut short (replay each with its own token) and entries in no group yet."""

    groups: list[list[Entry]]
    entries: list[Entry]
    last_seq: int
    corrupt: int = 0
    """Damaged records skipped (each at least one request: logged at ERROR)."""
