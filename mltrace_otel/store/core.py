"""Store: one connection to ClickHouse (embedded chDB or a server) through clickhouse-connect.

``open_store(settings)`` connects, applies migrations, and (embedded store) drains the spool.
Query methods delegate to :mod:`.queries` and :mod:`.state`; ingest to :mod:`.ingest`.
Only this package runs SQL; :meth:`Store.query` / :meth:`Store.command` are the one place that
maps ClickHouse errors to :mod:`mltrace_otel.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mltrace_otel.settings import Settings
from mltrace_otel.store import ingest, queries, state
from mltrace_otel.store.models import (
    ComponentInfo,
    IngestResult,
    Lineage,
    PointerInfo,
    Review,
    Run,
)


def open_store(settings: Settings | None = None, *, drain: bool = True) -> Store:
    """Open the store the settings name, migrate it, and drain the local spool into it.

    Raises:
        StoreUnavailable: the server cannot be reached, or the embedded store stayed locked
            by another process for longer than ``settings.store_wait_s``.
    """
    raise NotImplementedError


class Store:
    """A connection to the mltrace-otel store. Use as a context manager or call close()."""

    settings: Settings
    database: str

    # --- connection (core) ----------------------------------------------------------------
    def close(self) -> None:
        """Release the connection (and the embedded engine's lock)."""
        raise NotImplementedError

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, name: str, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        """Run a named SELECT with bound parameters; rows as tuples. Errors become QueryError."""
        raise NotImplementedError

    def command(self, name: str, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """Run a named statement with bound parameters. Errors become QueryError."""
        raise NotImplementedError

    # --- ingest ---------------------------------------------------------------------------
    def insert_otlp(self, request: bytes | Any, *, dedup_token: str | None = None) -> IngestResult:
        """Insert an OTLP ExportTraceServiceRequest (object or serialized protobuf)."""
        return ingest.insert_otlp(self, request, dedup_token=dedup_token)

    def insert_spans(self, spans: Sequence[Any]) -> IngestResult:
        """Insert OTel SDK ReadableSpans (rendered exactly as the contrib exporter would)."""
        return ingest.insert_spans(self, spans)

    def drain_spool(self) -> int:
        """Move every batch in the local spool into the store, exactly once; spans moved."""
        return ingest.drain_spool(self)

    def clean(self) -> None:
        """Empty every table (mltrace's clean_db)."""
        raise NotImplementedError

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

    def stale_runs(self, component: str | None = None, limit: int = 100) -> list[Run]:
        """Latest runs (per component) that are stale now, newest first."""
        return queries.stale_runs(self, component, limit)

    def review(self, limit: int | None = None) -> Review:
        """Runs common to the flagged outputs' traces, ranked by count then newest."""
        return queries.review(self, limit)

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

    def flag(self, pointer: str) -> bool:
        """Flag an output for review; True (mltrace's return)."""
        return state.flag(self, pointer)

    def unflag(self, pointer: str) -> bool:
        """Unflag an output; False (mltrace's return: the flag's new value)."""
        return state.unflag(self, pointer)

    def unflag_all(self) -> int:
        """Unflag every output; how many were flagged."""
        return state.unflag_all(self)

    def flagged(self) -> list[str]:
        """Every flagged pointer, sorted."""
        return state.flagged(self)

    def set_notes(self, run_id: str, notes: str) -> str:
        """Replace a run's notes (prefix allowed); returns the notes."""
        return state.set_notes(self, run_id, notes)
