"""What the query modules need from a connection to the store, as two small typed interfaces.

The query modules (:mod:`.queries`, :mod:`.lineage`, :mod:`.staleness`, :mod:`.causes`,
:mod:`.review`, :mod:`.state`, :mod:`.metrics_queries`, :mod:`.schema`) take a
:class:`Connection` (migrations a :class:`SchemaConnection`) instead of the whole
:class:`~mltrace_otel.store.core.Store`: they run named SQL with bound parameters and nothing
else, so they never import the module that opens connections, and a test may hand them any
object with these members. :class:`~mltrace_otel.store.core.Store` satisfies both structurally
(it does not inherit from them).

Imports nothing of the store (typing only; the settings and clickhouse-connect for types).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from clickhouse_connect.driver.client import Client

    from mltrace_otel.settings import Settings

__all__ = ["Connection", "SchemaConnection"]


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
