"""What each query command answers, and the JSON shape it answers with: one function each.

The CLI (``mltrace ... --json``), the HTTP query API (``/api/v1``, :mod:`mltrace_otel.web_api`)
and its client all go through these, so a question asked any of the three ways gets the same
runs and the same JSON. ``answer_*`` functions take an open
:class:`~mltrace_otel.store.core.Store` (its query methods) and return the store's result types;
``*_json`` functions turn a result into the documented shape (docs/cli.md). Validation that
belongs to the question (an unknown component is NotFound, not zero runs) lives here too.

May import: mltrace_otel.store.models, .errors (no store connection, no CLI, no web framework;
the Store class for type checkers only).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any

from mltrace_otel.errors import ConfigError, NotFound
from mltrace_otel.store.models import (
    ComponentInfo,
    FlaggedOutput,
    Lineage,
    PointerInfo,
    Review,
    Run,
    RunPage,
)

if TYPE_CHECKING:  # pragma: no cover
    from mltrace_otel.store.core import Store


_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$", re.I)
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SPACE_ZONE = re.compile(r"^(.*\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)$")
_DATE = re.compile(r"^(\d{4})-?(\d\d)-?(\d\d)(?:([zZ])|([+-])(\d\d):?(\d\d)?)?$")
"""A date alone (2026-11-01, 20261101), with or without a zone (Z, +01:00, -0500, +01)."""


def parse_when(text: str, *, end: bool = False, local: bool = False) -> datetime:
    """A date, time or age a user typed as a since/until bound, as an aware UTC datetime: the one
    reading of ``--since``/``--until`` (CLI) and ``since``/``until`` (the API's and the UI's URLs).

    ``2026-11-01``, ``2026-11-01T09:30``, either with a zone (``Z``, ``+01:00``), or an age ago
    (``30m``, ``12h``, ``7d``, ``2w``). No zone: local time with ``local`` (the CLI: a terminal's
    user means their clock), else UTC (URLs). A date alone (``2026-11-01``, ``2026-11-01+01:00``) as
    an upper bound (``end``) is the end of that day, in its zone if it has one: "until 2026-11-01"
    includes the runs of November 1. A zone typed into a URL unencoded
    (``+01:00`` arrives as `` 01:00``) still counts.

    Raises:
        ValueError: not a date, time or age, or beyond what a datetime holds (years 1-9999).
    """
    s = text.strip()
    m = _AGE.match(s)
    try:
        if m:
            age = timedelta(seconds=float(m.group(1)) * _AGE_SECONDS[m.group(2).lower()])
            return datetime.now(timezone.utc) - age
        d = _DATE.match(s)
        if d:  # a date alone: its first instant, or as an upper bound its last, in its zone if it has one
            year, month, day, z, sign, hours, minutes = d.groups()
            zone = timezone.utc if z else None
            if sign:
                offset = timedelta(hours=int(hours), minutes=int(minutes or 0))
                zone = timezone(-offset if sign == "-" else offset)
            dt = datetime.combine(date(int(year), int(month), int(day)), time.max if end else time.min, zone)
        else:
            if _SPACE_ZONE.search(s):
                s = _SPACE_ZONE.sub(r"\1+\2", s)
            if s[-1:] in ("Z", "z"):  # Python 3.10 reads no "Z"
                s = s[:-1] + "+00:00"
            dt = datetime.fromisoformat(s)
        if dt.tzinfo is None:
            dt = dt.astimezone() if local else dt.replace(tzinfo=timezone.utc)
        return dt.astimezone(timezone.utc)
    except OverflowError as e:  # an age or a zone beyond years 1-9999
        raise ValueError(str(e)) from None


@dataclass(frozen=True)
class FlagChange:
    """What ``flag`` / ``unflag`` did: the ``outputs`` named and the ``versions`` (un)flagged."""

    outputs: tuple[str, ...]
    versions: tuple[FlaggedOutput, ...]


# --- the answers ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RecentFilter:
    """What ``mltrace recent`` (``/api/v1/recent``, the UI's Recent table) narrows the runs to;
    None or "" is no filter. ``status``: ``ok``, ``failed`` or ``stale``; ``tag``: tagged when
    they ran or whose component carries it now; ``since`` / ``until``: start bounds, inclusive."""

    component: str | None = None
    status: str | None = None
    owner: str | None = None
    tag: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def kwargs(self) -> dict[str, Any]:
        """The filters as :meth:`~mltrace_otel.store.core.Store.recent_page`'s keyword arguments."""
        return {f: getattr(self, f) for f in ("component", "status", "owner", "tag", "since", "until")}

    @property
    def active(self) -> bool:
        """Any filter given."""
        return any(v not in (None, "") for v in self.kwargs().values())


def answer_recent(store: Store, limit: int, before: str | None = None,
                  where: RecentFilter | None = None) -> RunPage:
    """The newest runs matching ``where`` (searched across the whole store) and whether older
    ones remain; ``before`` (id or unique prefix) pages past that run."""
    before_id = store.resolve_run_id(before) if before else None
    return store.recent_page(limit, before_id, **(where or RecentFilter()).kwargs())


def answer_history(store: Store, component: str, limit: int, since: datetime | None = None,
                   until: datetime | None = None) -> list[Run]:
    """A component's runs, newest first; NotFound for a component the store does not know."""
    runs = store.history(component, limit, since, until)
    if not runs:
        store.component(component)  # NotFound for an unknown component
    return runs


def answer_tagged(store: Store, tag: str, limit: int) -> list[Run]:
    """The newest runs of the components with ``tag``; NotFound when no component has it."""
    comps = store.components(tag=tag)
    if not comps:
        raise NotFound(f"no component has the tag {tag!r}", hint="`mltrace tags` lists them")
    runs = [r for c in comps for r in store.history(c.name, limit)]
    runs.sort(key=lambda r: (r.start, r.id), reverse=True)
    return runs[:limit]


def check_trace(output: str | None, run: str | None) -> None:
    """ConfigError unless exactly one of ``output`` and ``run`` is given (a missing one in the
    words of every command's missing argument)."""
    usage = "usage: mltrace trace OUTPUT, or mltrace trace --run RUN_ID (e.g. mltrace trace predictions.csv)"
    if output is None and run is None:
        raise ConfigError("missing argument OUTPUT (or --run RUN_ID)", hint=usage)
    if output is not None and run is not None:
        raise ConfigError("give an OUTPUT or --run RUN_ID, not both", hint=usage)


def answer_trace(store: Store, output: str | None = None, run: str | None = None) -> Lineage:
    """The runs upstream of an output (or of a run). A pointer that runs only read gives an
    empty trace (zero results); one no run used is NotFound."""
    check_trace(output, run)
    if run is not None:
        return store.trace_run(run)
    try:
        lineage: Lineage | None = store.trace(output)
    except NotFound:
        lineage = None
    if lineage is None or not lineage.nodes:
        store.pointer(output)  # NotFound for a pointer no run used
        return Lineage(root=str(output), direction="trace")
    return lineage


def answer_stale(store: Store, component: str | None, limit: int, direct: bool = False) -> list[Run]:
    """The latest stale run of each component (or of one; NotFound when it is unknown)."""
    if component is not None:
        store.component(component)
    return store.stale_runs(component, limit, direct)


def answer_review(store: Store, limit: int | None = None, since: datetime | None = None,
                  component: str | None = None, tag: str | None = None) -> Review:
    """The review, optionally scoped (NotFound for an unknown component)."""
    if component is not None:
        store.component(component)
    return store.review(limit, since, component, tag)


def answer_flag(store: Store, outputs: Sequence[str], run: str | None = None) -> FlagChange:
    """Flag each output's newest version (or the one ``run`` wrote). Every name is checked
    before anything is flagged (NotFound for a pointer no run used)."""
    for name in outputs:
        store.pointer(name)
    run_id = store.resolve_run_id(run) if run is not None else None
    return FlagChange(tuple(outputs), tuple(store.flag_output(name, run_id) for name in outputs))


def check_unflag(outputs: Sequence[str], all_: bool, run: str | None) -> None:
    """ConfigError unless the arguments name outputs or all of them (and ``run`` only outputs)."""
    usage = "usage: mltrace unflag OUTPUT..., or mltrace unflag --all"
    if not outputs and not all_:
        raise ConfigError("missing argument OUTPUT... (or --all)", hint=usage)
    if outputs and all_:
        raise ConfigError("give OUTPUT... or --all, not both", hint=usage)
    if all_ and run is not None:
        raise ConfigError("--run names a version of an OUTPUT; it does not go with --all")


def answer_unflag(store: Store, outputs: Sequence[str] = (), all_: bool = False,
                  run: str | None = None) -> FlagChange:
    """Unflag outputs (every version, or the one ``run`` wrote), or with ``all_`` every one."""
    check_unflag(outputs, all_, run)
    if all_:
        versions = store.flagged_outputs()
        names = sorted({f.pointer for f in versions})
        store.unflag_all()
        return FlagChange(tuple(names), tuple(versions))
    for name in outputs:
        store.pointer(name)
    run_id = store.resolve_run_id(run) if run is not None else None
    return FlagChange(tuple(outputs),
                      tuple(f for name in outputs for f in store.unflag_output(name, run_id)))


def answer_notes(store: Store, run_id: str, text: str) -> tuple[str, str]:
    """Replace a run's notes: (the full run id, the notes saved)."""
    full = store.resolve_run_id(run_id)
    return full, store.set_notes(full, text)


# --- the shapes -----------------------------------------------------------------------------
def runs_json(runs: Sequence[Run]) -> list[Any]:
    """recent, history, tag, stale: a list of runs."""
    return [r.to_json() for r in runs]


def components_json(comps: Sequence[ComponentInfo]) -> list[Any]:
    """components: a list of components."""
    return [c.to_json() for c in comps]


def tags_json(names: Sequence[str]) -> list[str]:
    """tags: the sorted tag names."""
    return list(names)


def flag_json(change: FlagChange) -> dict[str, Any]:
    """flag: ``{"flagged": [names], "versions": [flagged versions]}``."""
    return {"flagged": list(change.outputs), "versions": [f.to_json() for f in change.versions]}


def unflag_json(change: FlagChange) -> dict[str, Any]:
    """unflag: ``{"unflagged": [names], "versions": [versions that were flagged]}``."""
    return {"unflagged": list(change.outputs), "versions": [f.to_json() for f in change.versions]}


def notes_json(run_id: str, notes: str) -> dict[str, str]:
    """notes: ``{"run": full id, "notes": text}``."""
    return {"run": run_id, "notes": notes}


def flag_change_from_json(data: dict[str, Any], key: str) -> FlagChange:
    """The inverse of :func:`flag_json` / :func:`unflag_json` (``key`` "flagged" or "unflagged")."""
    return FlagChange(tuple(data.get(key) or ()),
                      tuple(FlaggedOutput.from_json(v) for v in data.get("versions") or ()))


# --- one object per way of asking -----------------------------------------------------------
class StoreQueries:
    """The questions asked of an open store directly: what the CLI asks when it holds the store
    and what the HTTP API answers. :class:`mltrace_otel.client.ApiClient` has the same methods
    over HTTP, so a reader takes either (``mltrace --server URL`` gets the client)."""

    remote = False
    """True for the HTTP client: commands that need the store itself (clear, migrate) refuse."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def recent(self, limit: int, before: str | None = None, where: RecentFilter | None = None) -> list[Run]:
        """The newest runs (``mltrace recent --json``), matching ``where``."""
        return list(answer_recent(self.store, limit, before, where).runs)

    def recent_page(self, limit: int, before: str | None = None,
                    where: RecentFilter | None = None) -> RunPage:
        """The newest runs matching ``where`` and whether older ones remain (``mltrace recent``)."""
        return answer_recent(self.store, limit, before, where)

    def history(self, component: str, limit: int, since: datetime | None = None,
                until: datetime | None = None) -> list[Run]:
        """A component's runs (``mltrace history``)."""
        return answer_history(self.store, component, limit, since, until)

    def inspect(self, run_id: str) -> Run:
        """One run, everything about it (``mltrace inspect``)."""
        return self.store.get_run(run_id)

    def tagged(self, tag: str, limit: int) -> list[Run]:
        """The newest runs of the components with a tag (``mltrace tag``)."""
        return answer_tagged(self.store, tag, limit)

    def trace(self, output: str | None = None, run: str | None = None) -> Lineage:
        """Upstream of an output or a run (``mltrace trace``)."""
        return answer_trace(self.store, output, run)

    def impact(self, target: str) -> Lineage:
        """Downstream of an output or a run (``mltrace impact``)."""
        return self.store.impact(target)

    def stale(self, component: str | None, limit: int, direct: bool = False) -> list[Run]:
        """The stale runs (``mltrace stale``)."""
        return answer_stale(self.store, component, limit, direct)

    def review(self, limit: int | None = None, since: datetime | None = None,
               component: str | None = None, tag: str | None = None) -> Review:
        """The review (``mltrace review``)."""
        return answer_review(self.store, limit, since, component, tag)

    def components(self, owner: str | None = None, tag: str | None = None) -> list[ComponentInfo]:
        """Components (``mltrace components``)."""
        return self.store.components(owner, tag)

    def tags(self) -> list[str]:
        """Every tag (``mltrace tags``)."""
        return self.store.tags()

    def pointer(self, name: str) -> PointerInfo:
        """An IO pointer, its writers and readers; NotFound."""
        return self.store.pointer(name)

    def flag(self, outputs: Sequence[str], run: str | None = None) -> FlagChange:
        """Flag outputs (``mltrace flag``)."""
        return answer_flag(self.store, outputs, run)

    def unflag(self, outputs: Sequence[str] = (), all_: bool = False, run: str | None = None) -> FlagChange:
        """Unflag outputs or all (``mltrace unflag``)."""
        return answer_unflag(self.store, outputs, all_, run)

    def notes(self, run_id: str, text: str) -> tuple[str, str]:
        """Replace a run's notes (``mltrace notes``): (full id, notes)."""
        return answer_notes(self.store, run_id, text)
