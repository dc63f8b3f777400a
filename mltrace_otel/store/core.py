"""Store: one connection to ClickHouse (embedded chDB or a server) through clickhouse-connect.

``open_store(settings)`` connects, applies migrations, drains the spool and (embedded store)
indexes what a killed collector left in its journal.
Query methods delegate to :mod:`.queries` and :mod:`.state`; ingest to :mod:`.ingest`.
Only this package runs SQL; :meth:`Store.query` / :meth:`Store.command` are the one place that
maps ClickHouse errors to :mod:`mltrace_otel.errors`.

Connecting:

- ``http(s)://user:pass@host:port/db``: a ClickHouse server.
- ``chdb:///dir[?database=db]``: the embedded engine. One process at a time can hold a
  directory; :mod:`.connect` opens it here or waits for its holder (a holder that announces
  its query API is asked through that API by the CLI and :mod:`mltrace_otel.api`, not here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from mltrace_otel.errors import QueryError, StoreUnavailable
from mltrace_otel.settings import Settings, mask_url
from mltrace_otel.store import ingest, journal, queries, state
from mltrace_otel.store.indexer import index_left_over
from mltrace_otel.store.models import (
    ComponentInfo,
    FlaggedOutput,
    IngestResult,
    Lineage,
    PointerInfo,
    Review,
    Run,
    RunPage,
)

log = logging.getLogger(__name__)


def open_store(settings: Settings | None = None, *, drain: bool = True, index_journal: bool = True) -> Store:
    """Open the store the settings name, migrate it, and drain the local spool into it (and, on
    the embedded store, index what a collector that was killed left in its journal).

    Args:
        settings: resolved settings; ``Settings.from_env()`` when None.
        drain: move the local spool into the store first.
        index_journal: with ``drain``, on the embedded store, index first what a collector
            killed on it had acknowledged and left in its journal (a collector passes False: its
            indexer recovers the journal while it serves).

    Raises:
        StoreUnavailable: the server cannot be reached, or the embedded store stayed locked
            by another process for longer than ``settings.store_wait_s``.
    """
    from mltrace_otel.store import connect

    settings = settings or Settings.from_env()
    store = Store(settings, connect.connect(settings))
    try:
        store.migrate()
        if drain:
            store.drain_spool()
            if index_journal and settings.is_embedded:
                index_left_over(store, journal.for_store(store), settings)
    except BaseException:
        store.close()
        raise
    return store


class Store:
    """A connection to the mltrace-otel store. Use as a context manager or call close()."""

    settings: Settings
    database: str

    def __init__(self, settings: Settings, conn: Any) -> None:
        """Wrap an open :class:`.connect.Connection` (use :func:`open_store`, not this)."""
        self.settings = settings
        self.database = settings.database
        self._conn = conn
        self.client = conn.client
        self.url = conn.url
        self._closed = False
        self._on_close: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"Store({mask_url(self.url)!r}, database={self.database!r})"

    # --- connection (core) ----------------------------------------------------------------
    def close(self) -> None:
        """Release the connection (and the embedded engine's lock)."""
        if self._closed:
            return
        self._closed = True
        while self._on_close:
            try:
                self._on_close.pop()()
            except Exception:  # closing must go on: the engine lock is released below
                log.exception("mltrace: stopping a user of the store failed")
        self._conn.close()

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the store closes, before the connection is released (a
        holder's API and spool drain stop first; last registered, first run)."""
        self._on_close.append(callback)

    def sibling(self) -> Store:
        """Another connection to this store (same settings and database; no migration, no
        drain), closed on its own. The engine runs queries from different connections side by
        side (one connection runs one at a time): the collector's inserters use one each."""
        from mltrace_otel.store import connect

        conn = connect.connect(self.settings)
        conn.client.database = self.database
        return Store(self.settings, conn)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self, name: str) -> None:
        if self._closed:
            raise StoreUnavailable(f"store {mask_url(self.url)} is closed (query {name})",
                                   hint="open it again with open_store()")

    def _error(self, name: str, parameters: dict[str, Any] | None, e: Exception) -> Exception:
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

        if isinstance(e, OperationalError) or (isinstance(e, OSError) and not isinstance(e, DatabaseError)):
            return StoreUnavailable(f"store {mask_url(self.url)} cannot be reached: {e}",
                                    hint="check the ClickHouse server and MLTRACE_CLICKHOUSE_URL")
        from clickhouse_connect.driver.exceptions import DataError

        code = getattr(e, "code", None)
        return QueryError(name, parameters, " ".join(str(e).split()) or repr(e),
                          code=code if isinstance(code, int) and code > 0 else None,
                          data=isinstance(e, DataError))

    def _call(self, name: str, parameters: dict[str, Any] | None, fn: Any) -> Any:
        """Run ``fn(client)``; map errors once."""
        self._check_open(name)
        try:
            return fn(self.client)
        except Exception as e:  # clickhouse-connect has no narrower base for engine errors
            raise self._error(name, parameters, e) from e

    def query(self, name: str, sql: str, parameters: dict[str, Any] | None = None, *,
              column_formats: dict[str, str] | None = None) -> list[tuple]:
        """Run a named SELECT with bound parameters; rows as tuples. Errors become QueryError.
        ``column_formats``: clickhouse-connect's per-column read formats (``{"Payload": "bytes"}``
        reads a String column as bytes)."""
        return self._call(name, parameters, lambda c: list(
            c.query(sql, parameters=parameters or None, column_formats=column_formats).result_rows))

    def command(self, name: str, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """Run a named statement with bound parameters. Errors become QueryError."""
        self._call(name, parameters, lambda c: c.command(sql, parameters=parameters or None))

    def insert_body(self, name: str, table: str, body: bytes, *, fmt: str,
                    columns: Sequence[str] | None = None, settings: dict[str, Any] | None = None) -> None:
        """Insert a body already encoded in ClickHouse input format ``fmt`` (``JSONCompactColumns``
        from the Python renderer, ``Protobuf`` for the engine's) into a table of this database,
        in one insert: the renderers' way in, with no row-by-row work in the driver."""
        from mltrace_otel.store.schema import quote_ident

        self._call(name, {"table": table, "bytes": len(body)}, lambda c: c.raw_insert(
            f"{quote_ident(self.database)}.{quote_ident(table)}", list(columns) if columns else None, body,
            settings=settings or None, fmt=fmt))

    def insert_columns(self, name: str, table: str, columns: Sequence[Sequence[Any]],
                       column_names: Sequence[str], settings: dict[str, Any] | None = None) -> None:
        """Insert column-oriented data into a table of this database (ingest's fast path)."""
        self._call(name, {"table": table, "rows": len(columns[0]) if columns else 0},
                   lambda c: c.insert(table, columns, column_names=list(column_names),
                                      column_oriented=True, database=self.database,
                                      settings=settings or None))

    # --- schema ---------------------------------------------------------------------------
    def schema_version(self) -> int:
        """Highest migration version applied (0 for an empty database)."""
        from mltrace_otel.store import schema

        return max(schema.applied_versions(self), default=0)

    def migrate(self) -> list[int]:
        """Apply every migration not yet recorded; the versions applied (cheap when none)."""
        from mltrace_otel.store import schema

        return schema.migrate(self)

    # --- ingest ---------------------------------------------------------------------------
    def insert_otlp(self, request: bytes | Any, *, dedup_token: str | None = None) -> IngestResult:
        """Insert an OTLP ExportTraceServiceRequest (object or serialized protobuf)."""
        return ingest.insert_otlp(self, request, dedup_token=dedup_token)

    def insert_requests(self, payloads: Sequence[bytes], spans: int | None = None,
                        dedup_token: str | None = None) -> IngestResult:
        """Insert checked, serialized OTLP requests in one insert, parsed and rendered by the
        engine (the collector's path; :mod:`.otlp_native`). ``spans``: their span count;
        ``dedup_token``: the insert's insert_deduplication_token (the journal's replay)."""
        from mltrace_otel.store import otlp_native

        return otlp_native.insert_requests(self, payloads, spans=spans, dedup_token=dedup_token)

    def insert_requests_rendered(self, payloads: Sequence[bytes],
                                 dedup_token: str | None = None) -> IngestResult:
        """Like :meth:`insert_requests`, rendered in Python (cheaper for a few spans: no view
        analysis)."""
        return ingest.insert_requests_rendered(self, payloads, dedup_token=dedup_token)

    def insert_spans(self, spans: Sequence[Any]) -> IngestResult:
        """Insert OTel SDK ReadableSpans (rendered exactly as the contrib exporter would)."""
        return ingest.insert_spans(self, spans)

    def drain_spool(self) -> int:
        """Move every batch in the local spool into the store, exactly once; spans moved."""
        return ingest.drain_spool(self)

    def clean(self) -> None:
        """Empty every table (mltrace's clean_db)."""
        from mltrace_otel.store import schema

        for stmt in schema.clean_statements(self):
            self.command("clean", stmt)

    # --- runs -----------------------------------------------------------------------------
    def resolve_run_id(self, prefix: str) -> str:
        """Full run id for a unique prefix (>= 4 hex chars); NotFound / AmbiguousRunId."""
        return queries.resolve_run_id(self, prefix)

    def get_run(self, run_id: str) -> Run:
        """One run (prefix allowed) with code, notes, dependencies and staleness; NotFound."""
        return queries.get_run(self, run_id)

    def get_runs(self, run_ids: Sequence[str]) -> list[Run]:
        """Several runs by full id (missing ids skipped), with dependencies and staleness."""
        return queries.get_runs(self, run_ids)

    def recent(self, limit: int = 5, before: str | None = None) -> list[Run]:
        """Newest runs first; ``before`` (a run id) pages past that run."""
        return queries.recent(self, limit, before)

    def recent_page(self, limit: int = 10, before: str | None = None, *, component: str | None = None,
                    status: str | None = None, owner: str | None = None, tag: str | None = None,
                    since: datetime | str | None = None, until: datetime | str | None = None) -> RunPage:
        """The newest runs matching every filter given (component, status ``ok`` / ``failed`` /
        ``stale``, owner, tag, start within [since, until]), searched across the whole store,
        and whether older matching runs remain; ``before`` (a run id) pages past that run."""
        return queries.recent_page(self, limit, before, component=component, status=status, owner=owner,
                                   tag=tag, since=since, until=until)

    def history(self, component: str, limit: int = 10, since: datetime | None = None,
                until: datetime | None = None) -> list[Run]:
        """A component's runs, newest first, started within [since, until]."""
        return queries.history(self, component, limit, since, until)

    def count_runs(self) -> int:
        """Number of distinct runs in the store."""
        return queries.count_runs(self)

    # --- lineage --------------------------------------------------------------------------
    def trace(self, output: str) -> Lineage:
        """Runs that produced ``output`` (its latest producer, then upstream), each once."""
        return queries.trace(self, output)

    def trace_run(self, run_id: str) -> Lineage:
        """Runs upstream of a run (prefix allowed), the run itself at depth 0."""
        return queries.trace_run(self, run_id)

    def impact(self, target: str) -> Lineage:
        """Runs and outputs downstream of an output pointer or a run id (prefix allowed)."""
        return queries.impact(self, target)

    def stale_runs(self, component: str | None = None, limit: int = 100,
                   direct: bool = False) -> list[Run]:
        """Latest runs (per component) that are stale now, newest first; ``direct``: only
        those with a direct cause (inherited causes left out)."""
        return queries.stale_runs(self, component, limit, direct)

    def review(self, limit: int | None = None, since: datetime | str | None = None,
               component: str | None = None, tag: str | None = None) -> Review:
        """Runs common to the flagged outputs' traces, ranked by count, then evidence (failed,
        failed test, stale, changed), then newest; optionally only runs started since
        ``since``, of ``component``, or of components tagged ``tag``."""
        return queries.review(self, limit, since, component, tag)

    # --- components, pointers -------------------------------------------------------------
    def components(self, owner: str | None = None, tag: str | None = None) -> list[ComponentInfo]:
        """Components, filtered by owner and/or tag."""
        return queries.components(self, owner, tag)

    def component(self, name: str) -> ComponentInfo:
        """One component; NotFound."""
        return queries.component(self, name)

    def tags(self) -> list[str]:
        """Every tag of every component, sorted."""
        return queries.tags(self)

    def pointer(self, name: str) -> PointerInfo:
        """An IO pointer: type, flag, producers and consumers; NotFound."""
        return queries.pointer(self, name)

    # --- user state -----------------------------------------------------------------------
    def create_component(self, name: str, description: str = "", owner: str = "",
                         tags: Sequence[str] = ()) -> ComponentInfo:
        """Create or update a component's metadata."""
        return state.create_component(self, name, description, owner, tags)

    def tag_component(self, name: str, tags: Sequence[str]) -> ComponentInfo:
        """Add tags to a component; NotFound when it does not exist."""
        return state.tag_component(self, name, tags)

    def flag(self, pointer: str, run_id: str | None = None) -> bool:
        """Flag an output's newest version (or the version run ``run_id`` wrote) for review;
        True (mltrace's return)."""
        state.flag(self, pointer, run_id)
        return True

    def unflag(self, pointer: str, run_id: str | None = None) -> bool:
        """Unflag every version of an output (or the one run ``run_id`` wrote); False
        (mltrace's return: the flag's new value)."""
        state.unflag(self, pointer, run_id)
        return False

    def flag_output(self, pointer: str, run_id: str | None = None) -> FlaggedOutput:
        """Flag an output's newest version (or the one ``run_id`` wrote); the version flagged
        (``run`` "" when no run wrote it: review reports it as unproduced)."""
        return state.flag(self, pointer, run_id)

    def unflag_output(self, pointer: str, run_id: str | None = None) -> list[FlaggedOutput]:
        """Unflag an output's versions (or the one ``run_id`` wrote); those that were flagged."""
        return state.unflag(self, pointer, run_id)

    def unflag_all(self) -> int:
        """Unflag every output; how many versions were flagged."""
        return state.unflag_all(self)

    def flagged(self) -> list[str]:
        """Every flagged pointer name, sorted."""
        return state.flagged(self)

    def flagged_outputs(self) -> list[FlaggedOutput]:
        """Every flagged output version (pointer, the run that wrote it, its version)."""
        return state.flagged_outputs(self)

    def set_notes(self, run_id: str, notes: str) -> str:
        """Replace a run's notes (prefix allowed); returns the notes."""
        return state.set_notes(self, run_id, notes)
