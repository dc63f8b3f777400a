"""What the query modules, the renderers and the writer need of a store, as small typed interfaces.

The query modules take a :class:`Connection` (migrations a :class:`SchemaConnection`) instead of
the whole :class:`~mltrace_otel.store.core.Store`: they run named SQL with bound parameters and
nothing else, so they never import the module that opens connections. The ingest side has
:class:`IngestConnection` (renderers, journal) and :class:`SpanSink` (the write, the collector's
indexer). ``Store`` satisfies them all structurally.

Imports nothing of the store (typing only; the settings and clickhouse-connect for types).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from clickhouse_connect.driver.client import Client

    from mltrace_otel.settings import Settings
    from mltrace_otel.store.models import IngestResult

__all__ = ["Connection", "IngestConnection", "SchemaConnection", "SpanSink"]


class Connection(Protocol):
    """A connection that runs the queries' SQL: named statements with bound parameters.

    Every query module reaches the store through these three members. ``name`` names the
    statement in errors and logs; ``parameters`` are bound server-side (``{name:Type}`` in
    the SQL), never spliced. An implementation must map the driver's errors to
    :mod:`mltrace_otel.errors` (:class:`~mltrace_otel.errors.QueryError` carrying ``name``,
    ``parameters`` and the ClickHouse code; :class:`~mltrace_otel.errors.StoreUnavailable` when
    the store cannot be reached) and must not raise anything else for a failed statement.
    """

    @property
    def database(self) -> str:
        """The database holding the tables: the only identifier spliced into SQL (quoted)."""
        ...

    def query(self, name: str, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        """Run a named SELECT; its rows as tuples."""
        ...

    def command(self, name: str, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """Run a named statement that returns no rows (INSERT ... SELECT, DDL)."""
        ...


class SchemaConnection(Connection, Protocol):
    """A connection migrations can run on: a :class:`Connection` plus the deployment's
    settings (cluster, TTL) and the driver's client, whose default database
    :func:`.schema.migrate` sets once the migrations have created it."""

    @property
    def settings(self) -> Settings:
        """The settings the connection was opened with (``cluster``, ``ttl_days``)."""
        ...

    @property
    def client(self) -> Client:
        """The clickhouse-connect client (its ``database`` is set after migrating)."""
        ...


class SpanSink(Protocol):
    """What :func:`mltrace_otel.store.writer.write` needs of a store: the two renderers' inserts."""

    def insert_requests(self, payloads: Sequence[bytes], spans: int | None = None,
                        dedup_token: str | None = None) -> IngestResult:
        """One insert, rendered by the engine."""
        ...

    def insert_requests_rendered(self, payloads: Sequence[bytes], *,
                                 dedup_token: str | None = None) -> IngestResult:
        """One insert, rendered in Python."""
        ...


class IngestConnection(Connection, SpanSink, Protocol):
    """What the renderers, the spool drain and the ingest journal need: a :class:`Connection`
    that also stores requests (:class:`SpanSink`), takes encoded bodies, and says where it
    points (the embedded engine's directory holds the journal)."""

    @property
    def settings(self) -> Settings:
        """The settings the connection was opened with (embedded or server, cluster, dirs)."""
        ...

    @property
    def url(self) -> str:
        """The store's URL (a ClickHouse server, or ``chdb://dir``)."""
        ...

    def insert_body(self, name: str, table: str, body: bytes, *, fmt: str,
                    columns: Sequence[str] | None = None, settings: dict[str, Any] | None = None) -> None:
        """One insert of a body already in ClickHouse input format ``fmt``."""
        ...
