"""mltrace's query functions (``backtrace``, ``review_flagged_outputs``, ...) on the store.

Same names, arguments and return shapes as mltrace 0.17: runs come back as
:class:`mltrace_otel.sdk.run.ComponentRun`, components as :class:`mltrace_otel.sdk.component.Component`.
Differences users may notice are fixes: a trace lists each run once; run ids are span ids (hex
strings; a unique prefix of at least 4 characters works everywhere an id is taken); staleness is
computed when asked; a flagged id that no run wrote does not break the review.

One store per process, opened on first use from :func:`mltrace_otel.sdk.config.current_settings`
(re-opened when ``set_db_uri`` changes the URL). Before each query the SDK's pending spans are
flushed and, on the embedded store, the spool is drained, so the caller's own runs are visible.
With ``MLTRACE_SERVER_URL`` set, no store is opened: the functions ask that server's HTTP API
(:class:`mltrace_otel.client.ApiClient`, sending ``MLTRACE_TOKEN``); clean_db, which has no
API route (emptying a shared store is done where it is), raises ConfigError there.

The embedded store: when another live process holds it and announces its query API
(``mltrace ui`` / ``server`` / ``collector``, another script using these functions), the
functions ask that API the same way (waiting first, up to 10 s, for that process to drain the
spool files pending when asked, so the caller's own runs are visible), and go back to the store
itself when that process leaves. A process that opens the embedded store here holds it until
:func:`close` or exit, so it announces its own API (:class:`mltrace_otel.web_api.StoreHost`: a
loopback port, a random token) and drains the spool every second, for the CLI and the others.

Imports: store, sdk (run, component, pointers, config, export), models, errors, client, shapes,
web_api (the holder's API).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from mltrace_otel.errors import ConfigError, NotFound, StoreUnavailable
from mltrace_otel.store.models import ComponentInfo, FlaggedOutput, Lineage, PointerInfo, Review, Run

if TYPE_CHECKING:  # types only
    from mltrace_otel.store.core import Store

log = logging.getLogger(__name__)
_lock = threading.RLock()
_store: Store | _RemoteStore | None = None
_store_url: str | None = None
_DRAIN_WAIT_S = 10.0
HOLDER_LEAVING_S = 5.0
"""How long a query waits, after the announced API refused it, for its holder to withdraw."""
F = TypeVar("F", bound=Callable[..., Any])


# --- the store ----------------------------------------------------------------------------------
def _get_store() -> Any:
    """The process's store for the current settings; flushed and drained, ready to query."""
    global _store, _store_url
    from mltrace_otel.sdk import config, export

    export.flush()
    settings = config.current_settings()
    if settings.server_url:
        url = f"api+{settings.server_url}"
        with _lock:
            if _store is None or _store_url != url:
                if _store is not None:
                    _store.close()
                from mltrace_otel.client import ApiClient

                _store = _RemoteStore(ApiClient(settings.server_url, settings.token))
                _store_url = url
            return _store
    url = settings.resolved_store_url
    with _lock:
        if _store is not None and (_store_url != url or getattr(_store, "_closed", False)
                                   or _holder_left(_store)):
            _store.close()
            _store = None
        if _store is None:
            _store = _open(settings)
            _store_url = url
        elif isinstance(_store, _RemoteStore):
            from mltrace_otel.store.connect import wait_drained

            wait_drained(settings.spool_dir, _DRAIN_WAIT_S)
        elif settings.is_embedded:
            _store.drain_spool()
        return _store


def _open(settings: Any) -> Any:
    """The embedded store's holder's API, else the store opened here (and hosted)."""
    from mltrace_otel.client import client_for
    from mltrace_otel.store import open_store
    from mltrace_otel.store.connect import wait_drained

    client = client_for(settings)
    if client is None:
        try:
            store = open_store(settings)
        except StoreUnavailable:
            client = client_for(settings)  # a holder announced its API while this one waited
            if client is None:
                raise
        else:
            if settings.is_embedded:
                _host(store)
            return store
    wait_drained(settings.spool_dir, _DRAIN_WAIT_S)
    return _RemoteStore(client, settings)


def _host(store: Store) -> None:
    """A script that queries keeps the engine for its whole life: announce an API on a loopback
    port so the CLI, the UI and other scripts ask it instead of waiting for the store, and drain
    the spool every second (they cannot drain it themselves)."""
    try:
        from mltrace_otel.web_api import StoreHost

        StoreHost(store).start()
    except Exception as e:  # no Flask, say: the others wait for the store, as without a host
        log.warning("mltrace: cannot serve the store to other processes: %s", e)


def _holder_left(store: Store | _RemoteStore) -> bool:
    """True for the API of a holder of the embedded store that no longer announces it."""
    if not isinstance(store, _RemoteStore) or store.settings is None:
        return False
    from mltrace_otel.store.connect import announced

    found = announced(store.settings)
    return found is None or found.url != store.client.url


def _reconnecting(fn: F) -> F:
    """Ask again, once, when the holder whose API was asked left meanwhile (the store is then
    opened here, or another holder's API asked). A holder that is stopping may refuse a
    connection a moment before it withdraws its announcement: give it HOLDER_LEAVING_S to."""
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StoreUnavailable:
            deadline = time.monotonic() + HOLDER_LEAVING_S
            while True:
                with _lock:
                    if _store is None:
                        raise
                    if _holder_left(_store):
                        break
                    remote = isinstance(_store, _RemoteStore)
                if not remote or time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)
            return fn(*args, **kwargs)
    return call  # type: ignore[return-value]


def close() -> None:
    """Close the process's store (releases the embedded engine). Queries reopen it."""
    global _store, _store_url
    with _lock:
        if _store is not None:
            _store.close()
        _store, _store_url = None, None


class _RemoteStore:
    """The store methods this module calls, asked of a server's HTTP API (MLTRACE_SERVER_URL,
    or the one announced by the holder of the embedded store: ``settings`` given)."""

    _closed = False

    def __init__(self, client: Any, settings: Any = None) -> None:
        self.client = client
        self.settings = settings
        self._components: dict[str, str] = {}

    def close(self) -> None:
        """Nothing to release (each request is its own connection)."""

    def trace(self, output: str) -> Lineage:
        lin = self.client.trace(output=output)
        if not lin.nodes:  # a pointer runs only read: the store says the same
            raise NotFound(f"no run wrote {output!r}", hint="check the output id (`mltrace recent`)")
        return lin

    def impact(self, target: str) -> Lineage:
        return self.client.impact(target)

    def stale_runs(self, component: str | None, limit: int, direct: bool) -> list[Run]:
        return self.client.stale(component, limit, direct)

    def review(self, limit: int | None = None, since: datetime | str | None = None,
               component: str | None = None, tag: str | None = None) -> Review:
        return self.client.review(limit, _when(since), component, tag)

    def history(self, component: str, limit: int, since: datetime | str | None,
                until: datetime | str | None) -> list[Run]:
        return self.client.history(component, limit, _when(since), _when(until))

    def recent_ids(self, limit: int, before: str | None) -> list[str]:
        return [r.id for r in self.client.recent(limit, before)] if limit and limit > 0 else []

    def get_run(self, run_id: str) -> Run:
        return self.client.inspect(run_id)

    def set_notes(self, run_id: str, notes: str) -> str:
        return self.client.notes(run_id, notes)[1]

    def component(self, name: str) -> ComponentInfo:
        found = [c for c in self.client.components() if c.name == name]
        if not found:
            raise NotFound(f"no component named {name!r}", hint="list them with `mltrace components`")
        return found[0]

    def components(self, owner: str | None = None, tag: str | None = None) -> list[ComponentInfo]:
        return self.client.components(owner, tag)

    def tags(self) -> list[str]:
        return self.client.tags()

    def pointer(self, name: str) -> PointerInfo:
        return self.client.pointer(name)

    def flag(self, pointer: str, run_id: str | None = None) -> bool:
        self.client.flag([pointer], run_id)
        return True

    def unflag(self, pointer: str, run_id: str | None = None) -> bool:
        self.client.unflag([pointer], False, run_id)
        return False

    def unflag_all(self) -> list[FlaggedOutput]:
        return list(self.client.unflag((), True).versions)

    def component_names(self, run_ids: set[str]) -> dict[str, str]:
        """Component of each run id (one request per id not seen before)."""
        for rid in run_ids - self._components.keys():
            try:
                self._components[rid] = self.client.inspect(rid).component
            except NotFound:
                continue
        return {rid: self._components[rid] for rid in run_ids if rid in self._components}

    def create_component(self, name: str, description: str, owner: str, tags: Sequence[str]) -> ComponentInfo:
        return self.client.create_component(name, description, owner, tags)

    def tag_component(self, name: str, tags: Sequence[str]) -> ComponentInfo:
        return self.client.tag_component(name, tags)

    def __getattr__(self, name: str) -> Any:  # clean: not over the API
        if self.settings is not None:
            raise ConfigError(f"{name} needs the store itself; another process holds it and "
                              f"serves only its query API ({self.client.url})",
                              hint="call it when that process (mltrace ui / server) is stopped")
        raise ConfigError(f"{name} needs the store itself; MLTRACE_SERVER_URL names a server",
                          hint="unset MLTRACE_SERVER_URL where the store is, to change it there")


def _when(value: datetime | str | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return None if value in (datetime.min, datetime.max) else value
    return datetime.fromisoformat(value)


# --- conversions --------------------------------------------------------------------------------
def _component_names(store: Store | _RemoteStore, runs: Sequence[Run], known: dict[str, str] | None = None
                     ) -> dict[str, str]:
    """Component name of every dependency of ``runs`` (one query for those not known)."""
    from mltrace_otel.store import lineage

    names = dict(known or {})
    names.update({r.id: r.component for r in runs})
    missing = {d for r in runs for d in r.dependencies if d not in names}
    if isinstance(store, _RemoteStore):
        names.update(store.component_names(missing))
        return names
    names.update({i: info.component for i, info in lineage.lineage_info(store, missing).items()})
    return names


def _pointer(p: Any) -> Any:
    from mltrace_otel.sdk.pointers import IOPointer

    return IOPointer(p.name, pointer_type=p.type, flag=p.flagged, version=p.version or None)


def _naive_utc(t: datetime | None) -> datetime | None:
    """mltrace's query functions return naive UTC datetimes (so ``datetime.utcnow() - start``
    works, as in mltrace 0.17); the CLI, --json, the UI and the HTTP API keep ISO 8601 with Z."""
    if t is None or t.tzinfo is None:
        return t
    return t.astimezone(timezone.utc).replace(tzinfo=None)


def to_component_run(run: Run, names: dict[str, str] | None = None) -> Any:
    """A store Run as mltrace's ComponentRun (dependencies as component names, like mltrace).

    A run read by a list or a walk (history, backtrace, review, ...) carries no code snapshot;
    its ``code_snapshot`` is then read from the store on first access (one run's read), so
    the lists stay as fast as without it and still return what mltrace 0.17 returned."""
    from mltrace_otel.sdk.run import ComponentRun

    names = names or {}
    deps = list(dict.fromkeys(names.get(d, d) for d in run.dependencies))
    fields = dict(
        notes=run.notes, start_timestamp=_naive_utc(run.start), end_timestamp=_naive_utc(run.end),
        inputs=[_pointer(p) for p in run.inputs], outputs=[_pointer(p) for p in run.outputs],
        git_hash=run.git_hash or None, git_tags=list(run.git_tags) or None, id=run.id,
        stale=list(run.stale), dependencies=deps, status=run.status,
        test_results=[t.to_json() for t in run.tests] or None, exception=run.exception, owner=run.owner,
    )
    if run.code_snapshot:
        return ComponentRun(run.component, code_snapshot=run.code_snapshot, **fields)
    return _stored_run_class()(run.component, service=run.service_name, **fields)


@functools.cache
def _stored_run_class() -> type:
    """:class:`ComponentRun` whose code snapshot is read from the store when first asked for
    (by the property, ``to_dictionary``, ``repr``, ``==`` or pickling)."""
    from mltrace_otel.sdk.run import ComponentRun

    class StoredComponentRun(ComponentRun):
        """Raises (on first access of the snapshot): StoreUnavailable, like the query functions."""

        def __init__(self, *args: Any, service: str | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._snapshot_service = service  # the run's service.name while unread, then None

        def _load_snapshot(self) -> None:
            if self._snapshot_service is None or self._code_snapshot is not None or self._id is None:
                return
            self._code_snapshot = _code_snapshot(self._id, self._snapshot_service)
            self._snapshot_service = None

        @property
        def code_snapshot(self) -> str | None:
            self._load_snapshot()
            return self._code_snapshot

        @code_snapshot.setter
        def code_snapshot(self, snapshot: str | bytes | None) -> None:
            ComponentRun.code_snapshot.fset(self, snapshot)  # type: ignore[attr-defined]
            self._snapshot_service = None

        def to_dictionary(self) -> dict[str, Any]:
            self._load_snapshot()
            return super().to_dictionary()

        def __repr__(self) -> str:
            try:
                self._load_snapshot()
            except Exception:  # repr must not raise: the snapshot stays unread (None)
                log.debug("mltrace: reading the code snapshot of %s failed", self._id, exc_info=True)
            return super().__repr__()

        def __reduce__(self) -> Any:  # pickled as a plain ComponentRun, snapshot read
            self._load_snapshot()
            return (_rebuild_run, (self.to_dictionary(),))

    return StoredComponentRun


def _rebuild_run(d: dict[str, Any]) -> Any:
    from mltrace_otel.sdk.run import ComponentRun

    return ComponentRun.from_dictionary(d)


@_reconnecting
def _code_snapshot(run_id: str, service: str) -> str | None:
    """A stored run's code snapshot, None when it has none (or no longer exists): for the
    embedded or server store one read of its span (two small queries), through an HTTP API
    the run's ``inspect``."""
    store = _get_store()
    try:
        if isinstance(store, _RemoteStore):
            return store.get_run(run_id).code_snapshot or None
        from mltrace_otel.conventions import CODE_SNAPSHOT
        from mltrace_otel.store import queries
        from mltrace_otel.store.runs import run_query

        start = queries.fetch_start_ns(store, run_id)
        rows = run_query(store, "code_snapshot", queries.CODE_SNAPSHOT_SQL,
                         {"key": CODE_SNAPSHOT, "service": service, "start": start, "id": run_id})
    except NotFound:
        return None
    return (rows[0][0] if rows else "") or None


def _runs(store: Store | _RemoteStore, runs: Sequence[Run]) -> list[Any]:
    names = _component_names(store, runs)
    return [to_component_run(r, names) for r in runs]


def to_component(info: ComponentInfo) -> Any:
    """A store ComponentInfo as mltrace's Component."""
    from mltrace_otel.sdk.component import Component

    return Component(name=info.name, owner=info.owner, description=info.description,
                     tags=list(info.tags))


# --- lineage ------------------------------------------------------------------------------------
@_reconnecting
def backtrace(output_pointer: str) -> list[tuple[int, Any]]:
    """The runs that produced an output: ``[(depth, ComponentRun)]``, depth = hops from the run
    that wrote it (0). Each run appears once, at its smallest depth.

    Raises:
        NotFound: no run wrote ``output_pointer``.
    """
    store = _get_store()
    lin = store.trace(str(output_pointer))
    runs = [n.run for n in lin.nodes]
    names = _component_names(store, runs)
    return [(n.depth, to_component_run(n.run, names)) for n in lin.nodes]


_ICONS = {"DATA": "database", "MODEL": "function", "ENDPOINT": "flow-end"}


def web_tree(lin: Lineage) -> dict[str, Any]:
    """mltrace's UI tree for a trace: run nodes (outputs first, then producers by id).

    A run reached again through another path (a diamond) appears as a collapsed node without
    children, so the tree stays as large as the trace (mltrace re-expanded it per path).
    """
    runs = {n.run.id: n.run for n in lin.nodes}
    root = next(n.run for n in lin.nodes if n.depth == 0)
    expanded: set[str] = set()

    def node(run: Run) -> dict[str, Any]:
        rid = f"componentrun_{run.id}"
        res: dict[str, Any] = {"id": rid, "label": run.component, "hasCaret": True,
                               "isExpanded": run.id not in expanded, "stale": list(run.stale),
                               "childNodes": []}
        if run.id in expanded:
            res["hasCaret"] = False
            return res
        expanded.add(run.id)
        for out in sorted(run.outputs, key=lambda p: p.name):
            child = {"id": f"iopointer_{out.name}", "label": out.name, "hasCaret": False, "parent": rid}
            if out.type in _ICONS:
                child["icon"] = _ICONS[out.type]
            res["childNodes"].append(child)
        for dep in sorted(d for d in run.dependencies if d in runs):
            res["childNodes"].append(node(runs[dep]))
        return res

    return node(root)


@_reconnecting
def web_trace(output_id: str) -> list[dict[str, Any]]:
    """mltrace's UI trace: a one-element list holding the tree of the output's latest producer
    (``{"id": "componentrun_<id>", "label", "hasCaret", "isExpanded", "stale", "childNodes"}``,
    output pointers as ``{"id": "iopointer_<name>", "label", "hasCaret", "parent", "icon"?}``).

    Raises:
        NotFound: no run wrote ``output_id``.
    """
    return [web_tree(_get_store().trace(str(output_id)))]


@_reconnecting
def impact(target: str) -> list[tuple[int, Any]]:
    """What an output or a run fed (mltrace never had it): ``[(depth, ComponentRun)]``
    downstream, depth 0 = the run itself (or the readers of the output)."""
    store = _get_store()
    lin = store.impact(str(target))
    runs = [n.run for n in lin.nodes]
    names = _component_names(store, runs)
    return [(n.depth, to_component_run(n.run, names)) for n in lin.nodes]


@_reconnecting
def get_stale_runs(component_name: str | None = None, limit: int = 100, direct: bool = False) -> list[Any]:
    """The latest run of each component (or of one) that is stale now, newest first. A run is
    stale when a run upstream of it is (its ``stale`` messages name the root cause and the
    path); ``direct=True`` keeps only runs stale for a cause of their own."""
    store = _get_store()
    return _runs(store, store.stale_runs(component_name, limit, direct))


@_reconnecting
def stale_reasons(run_id: str) -> list[dict[str, Any]]:
    """Why a run (prefix allowed) is stale, machine-readable: the ``stale_reasons`` of
    ``mltrace inspect --json`` (``kind``: old_input, fresher_upstream, newer_upstream,
    upstream_failed, upstream_stale; ``inherited``; ``message``; ...)."""
    return [r.to_json() for r in _get_store().get_run(str(run_id)).stale_reasons]


@_reconnecting
def review_flagged_outputs() -> tuple[list[str], list[tuple[Any, int]]]:
    """The runs the flagged outputs have in common: ``(flagged_ids, [(ComponentRun, count)])``,
    sorted by count (desc), then newest first. Flagged ids that no run wrote are still listed
    in ``flagged_ids`` and simply reach no run."""
    store = _get_store()
    rv = store.review()
    runs = _runs(store, [e.run for e in rv.entries])
    return list(rv.flagged), [(cr, e.count) for cr, e in zip(runs, rv.entries, strict=True)]


@_reconnecting
def review(limit: int | None = None, since: datetime | str | None = None,
           component: str | None = None, tag: str | None = None) -> Review:
    """The review as the CLI's ``review --json`` gives it (a :class:`~mltrace_otel.store.models.Review`):
    entries ranked by coverage, ties broken by evidence, each with ``why`` and mltrace's
    ``coverage_text``; optionally only runs started since ``since``, of ``component``, or of
    components tagged ``tag``."""
    return _get_store().review(limit, since, component, tag)


# --- runs ---------------------------------------------------------------------------------------
@_reconnecting
def get_history(component_name: str, limit: int = 10, date_lower: datetime | str | None = datetime.min,
                date_upper: datetime | str | None = datetime.max) -> list[Any]:
    """A component's runs, newest first, started within [date_lower, date_upper] (naive = UTC)."""
    store = _get_store()
    return _runs(store, store.history(str(component_name), limit, date_lower or None, date_upper or None))


@_reconnecting
def get_recent_run_ids(limit: int = 5, last_run_id: str | None = None) -> list[str]:
    """Ids of the newest runs; ``last_run_id`` pages past that run (prefix allowed)."""
    store = _get_store()
    if isinstance(store, _RemoteStore):
        return store.recent_ids(limit, last_run_id)
    from mltrace_otel.store import queries

    return queries.recent_ids(store, limit, last_run_id)


@_reconnecting
def get_component_run_information(component_run_id: str) -> Any:
    """One run (prefix allowed) with code snapshot, notes, tests, dependencies and staleness.

    Raises:
        NotFound / AmbiguousRunId: the id does not name exactly one run.
    """
    store = _get_store()
    run = store.get_run(str(component_run_id))
    return to_component_run(run, _component_names(store, [run]))


@_reconnecting
def add_notes_to_component_run(component_run_id: str, notes: str) -> str:
    """Replace a run's notes (prefix allowed); returns the notes."""
    return _get_store().set_notes(component_run_id, notes)


# --- components ---------------------------------------------------------------------------------
@_reconnecting
def get_component_information(component_name: str) -> Any:
    """A Component with its name, description, owner and tags.

    Raises:
        NotFound: no component of that name.
    """
    return to_component(_get_store().component(str(component_name)))


@_reconnecting
def get_components(tag: str = "", owner: str = "") -> list[Any]:
    """Components with the tag and/or owner given, else all of them."""
    return [to_component(c) for c in _get_store().components(owner or None, tag or None)]


def get_components_with_owner(owner: str) -> list[Any]:
    """Components owned by ``owner``."""
    return get_components(owner=owner)


def get_components_with_tag(tag: str) -> list[Any]:
    """Components carrying ``tag``."""
    return get_components(tag=tag)


@_reconnecting
def get_all_tags() -> list[str]:
    """Every tag of every component, sorted."""
    return _get_store().tags()


@_reconnecting
def create_component(name: str, description: str = "", owner: str = "",
                     tags: Sequence[str] | None = None) -> None:
    """Create (or update) a component's metadata."""
    _get_store().create_component(name, description, owner, list(tags or []))


@_reconnecting
def tag_component(component_name: str, tags: Sequence[str]) -> None:
    """Add tags to an existing component.

    Raises:
        NotFound: no component of that name.
    """
    _get_store().tag_component(component_name, list(tags))


# --- flags, pointers, housekeeping --------------------------------------------------------------
@_reconnecting
def flag_output_id(output_id: str) -> bool:
    """Flag an output's newest version (the run that wrote it last) for review; True. Older
    versions (runs that wrote the same name before) are not flagged."""
    return _get_store().flag(output_id)


@_reconnecting
def flag_output_version(output_id: str, run_id: str) -> bool:
    """Flag the version of an output that run ``run_id`` (prefix allowed) wrote; True.

    Raises:
        NotFound / AmbiguousRunId: the id does not name exactly one run, or it did not write
            ``output_id``.
    """
    return _get_store().flag(output_id, str(run_id))


@_reconnecting
def unflag_output_id(output_id: str) -> bool:
    """Unflag every flagged version of an output; False (the flag's new value, as mltrace
    returns)."""
    return _get_store().unflag(output_id)


@_reconnecting
def unflag_all() -> None:
    """Unflag every output."""
    _get_store().unflag_all()


@_reconnecting
def get_io_pointer(io_pointer_id: str, io_pointer_val: Any = None, create: bool = True) -> Any:
    """An IOPointer: its name, type (from the runs that used it, else from the name) and flag.

    Raises:
        NotFound: no run used it and ``create`` is False.
    """
    from mltrace_otel.sdk.pointers import IOPointer

    try:
        info = _get_store().pointer(str(io_pointer_id))
    except NotFound:
        if not create:
            raise
        return IOPointer(str(io_pointer_id), value=io_pointer_val if io_pointer_val is not None else "")
    ptype = info.type if info.type != "UNKNOWN" else None
    return IOPointer(info.name, value=io_pointer_val if io_pointer_val is not None else "",
                     pointer_type=ptype, flag=info.flagged)


@_reconnecting
def clean_db() -> None:
    """Delete every run, flag, note and tag in the store (mltrace's clean_db)."""
    _get_store().clean()


__all__ = [
    "backtrace", "web_trace", "get_history", "get_recent_run_ids", "get_component_information",
    "get_component_run_information", "get_components", "get_components_with_owner",
    "get_components_with_tag", "get_all_tags", "tag_component", "create_component",
    "add_notes_to_component_run", "flag_output_id", "unflag_output_id", "unflag_all",
    "review_flagged_outputs", "get_io_pointer", "clean_db", "impact", "get_stale_runs", "close",
    "review", "stale_reasons", "flag_output_version",
]
