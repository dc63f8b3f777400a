"""Schema: numbered, forward-only migrations rendered for one database and applied in order.

Migration files live in ``store/migrations/NNNN_name.sql``; each holds one or more statements
separated by ``;`` at the end of a line. Tokens rendered here:

- ``{{db}}``: the database, backquoted (the only spliced identifier; validated as a plain name).
- ``{{on_cluster}}``: ``ON CLUSTER `name``` when a cluster is configured, else nothing.
- ``{{engine X(args)}}``: the engine, ``ReplicatedX(args)`` when a cluster is configured.
- ``{{ttl EXPR}}``: ``TTL EXPR + toIntervalDay(N)`` when a TTL is configured, else nothing.
- ``{{str_array EXPR}}``: an attribute value as Array(String): JSON arrays are parsed (other
  element types in their JSON form), any other non-empty string is one element, '' is the
  empty array.
- ``{{run_row_json}}``: a run as one JSON array (``queries.RUN_ROW_JSON``, the ``Row`` the
  lineage table stores and the queries parse).
- ``{{otlp_request_type}}``, ``{{otlp_rows}}``, ``{{otlp_deferred_rows}}``: the native ingest's
  request column type and view queries (:mod:`.otlp_native`).

Imports settings/errors (and :mod:`.otlp_native` for its tokens).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

_TOKEN = re.compile(r"\{\{(\w+)(?:\s+(.*?))?\}\}", re.S)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Migration:
    """One migration file: its number, name and rendered statements."""

    version: int
    name: str
    statements: tuple[str, ...]


def quote_ident(name: str) -> str:
    """Backquote a plain identifier (database or cluster name); refuse anything else."""
    if not _IDENT.fullmatch(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return f"`{name}`"


def str_array(expr: str) -> str:
    """SQL turning an attribute string into Array(String) (see module docstring).

    A JSON array (how the contrib exporter renders an array attribute) gives its elements,
    non-strings in their JSON form (``[1,true]`` → ``['1','true']``); any other string is one
    element, even one starting with ``[`` (a pointer named ``[draft] notes.txt``: reading it
    as JSON gave no pointer at all). Only a string that is not valid JSON changed meaning
    (``JSONType`` is 'Array' only for a whole, valid array), so migrations rendered before and
    after this change agree on every valid array. The rendering cannot tell a scalar string
    ``["a"]`` from the array ``["a"]``: it is read as the array (the collector counts such
    off-contract values, :mod:`mltrace_otel.collector.otlp`).
    """
    return (
        f"if(startsWith({expr}, '[') AND JSONType({expr}) = 'Array', JSONExtract({expr}, 'Array(String)'), "
        f"if({expr} = '', CAST([], 'Array(String)'), [{expr}]))"
    )


def render(sql: str, database: str, cluster: str | None = None, ttl_days: int = 0) -> str:
    """Render the tokens of one migration file for a database, cluster and TTL."""

    def sub(m: re.Match[str]) -> str:
        kind, arg = m.group(1), (m.group(2) or "").strip()
        if kind == "db":
            return quote_ident(database)
        if kind == "on_cluster":
            return f"ON CLUSTER {quote_ident(cluster)}" if cluster else ""
        if kind == "engine":
            return f"Replicated{arg}" if cluster else arg
        if kind == "ttl":
            return f"TTL {arg} + toIntervalDay({int(ttl_days)})" if ttl_days > 0 else ""
        if kind == "str_array":
            return str_array(arg)
        if kind == "run_row_json":
            from mltrace_otel.store.queries import RUN_ROW_JSON

            return RUN_ROW_JSON
        if kind.startswith("otlp_"):
            from mltrace_otel.store import otlp_native

            if kind == "otlp_request_type":
                return otlp_native.REQUEST_TYPE
            if kind == "otlp_rows":
                return otlp_native.rows_sql(quote_ident(database))
            if kind == "otlp_deferred_rows":
                return otlp_native.deferred_rows_sql(quote_ident(database))
        raise ValueError(f"unknown migration token {kind!r}")

    return _TOKEN.sub(sub, sql)


def split_statements(sql: str) -> list[str]:
    """Split a file into statements at ``;`` closing a line; drop comments-only pieces."""
    out = []
    for piece in re.split(r";\s*$", sql, flags=re.M):
        body = "\n".join(line for line in piece.splitlines() if not line.strip().startswith("--"))
        if body.strip():
            out.append(body.strip())
    return out


def load_migrations(database: str, cluster: str | None = None, ttl_days: int = 0) -> list[Migration]:
    """Every migration, rendered, in version order."""
    files = sorted(
        (f for f in resources.files("mltrace_otel.store").joinpath("migrations").iterdir()
         if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )
    out = []
    for f in files:
        num, _, rest = f.name.partition("_")
        sql = render(f.read_text(encoding="utf-8"), database, cluster, ttl_days)
        out.append(Migration(int(num), rest[:-4], tuple(split_statements(sql))))
    return out


# --- applying migrations ------------------------------------------------------------------------
MIGRATIONS_TABLE = "mltrace_schema_migrations"

DISTRIBUTED_KEYS: dict[str, str] = {
    "otel_traces": "cityHash64(TraceId)",
    "otel_traces_trace_id_ts": "cityHash64(TraceId)",
    "mltrace_runs": "cityHash64(TraceId)",
    "mltrace_io": "cityHash64(RunId)",
    "mltrace_components": "cityHash64(Name)",
    "mltrace_component_tags": "cityHash64(Name)",
    "mltrace_flags": "cityHash64(Pointer)",
    "mltrace_notes": "cityHash64(RunId)",
    "mltrace_lineage": "cityHash64(RunId)",
}
"""With a cluster: every data table gets a Distributed table of the same name in the store's
database, sharded by this key (a span's rows and its run's rows land on one shard; user state
by its primary key, so latest-row-wins reads stay per shard)."""


def on_cluster(cluster: str | None) -> str:
    """``ON CLUSTER `name``` when a cluster is configured, else ''."""
    return f"ON CLUSTER {quote_ident(cluster)}" if cluster else ""


def local_database(database: str, cluster: str | None) -> str:
    """Where the tables and materialized views live: the database itself, or with a cluster
    ``<database>_local`` on every node (the database then holds the Distributed tables)."""
    return f"{database}_local" if cluster else database


def setup_statements(database: str, cluster: str | None = None) -> list[str]:
    """The databases and the migrations record, created before any migration runs."""
    oc = on_cluster(cluster)
    out = [f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)} {oc}".strip()]
    if cluster:
        out.append(f"CREATE DATABASE IF NOT EXISTS {quote_ident(local_database(database, cluster))} {oc}")
        # one replication path for the whole cluster: every node sees every recorded version
        engine = (f"ReplicatedReplacingMergeTree('/clickhouse/mltrace/{database}/schema_migrations', "
                  "'{replica}', Applied)")
    else:
        engine = "ReplacingMergeTree(Applied)"
    out.append(
        f"CREATE TABLE IF NOT EXISTS {quote_ident(database)}.{MIGRATIONS_TABLE} {oc} (\n"
        "    Version UInt32,\n    Name String,\n    Applied DateTime64(6) DEFAULT now64(6)\n"
        f") ENGINE = {engine}\nORDER BY Version"
    )
    return out


_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS \S+\.`?(\w+)`?", re.I)


def local_tables(database: str, cluster: str | None = None) -> list[str]:
    """The tables (not views) the migrations create, in creation order."""
    out: list[str] = []
    for m in load_migrations(local_database(database, cluster), cluster):
        for stmt in m.statements:
            match = _CREATE_TABLE.match(stmt)
            if match and match.group(1) not in out:
                out.append(match.group(1))
    return out


def distributed_statements(database: str, cluster: str | None) -> list[str]:
    """With a cluster: a Distributed table over each table the migrations create (none without
    a cluster), sharded by :data:`DISTRIBUTED_KEYS` (``rand()`` for tables not listed).

    A later migration that changes a table's columns must also alter its Distributed table.
    """
    if not cluster:
        return []
    local = local_database(database, cluster)
    return [
        f"CREATE TABLE IF NOT EXISTS {quote_ident(database)}.{table} {on_cluster(cluster)} "
        f"AS {quote_ident(local)}.{table} ENGINE = Distributed({quote_ident(cluster)}, "
        f"{quote_ident(local)}, {table}, {DISTRIBUTED_KEYS.get(table, 'rand()')})"
        for table in local_tables(database, cluster)
    ]


def plan(database: str, cluster: str | None = None, ttl_days: int = 0) -> list[str]:
    """Every statement migrating an empty database runs, in order (for tests and docs)."""
    out = setup_statements(database, cluster)
    for m in load_migrations(local_database(database, cluster), cluster, ttl_days):
        out.extend(m.statements)
    return out + distributed_statements(database, cluster)


def _missing(e: Exception) -> bool:
    text = str(e)
    return "UNKNOWN_DATABASE" in text or "UNKNOWN_TABLE" in text or "Code: 81." in text or "Code: 60." in text


def applied_versions(store: Any) -> set[int]:
    """Versions recorded in the migrations table (empty when the database or table is missing)."""
    from mltrace_otel.errors import QueryError

    db = quote_ident(store.database)
    try:
        rows = store.query("schema_versions", f"SELECT DISTINCT Version FROM {db}.{MIGRATIONS_TABLE}")
    except QueryError as e:
        if _missing(e):
            return set()
        raise
    return {int(r[0]) for r in rows}


def migrate(store: Any) -> list[int]:
    """Apply every migration not yet recorded, in order; the versions applied.

    One query when the schema is current. Each statement is idempotent (IF NOT EXISTS,
    MODIFY SETTING), so a migration interrupted before it was recorded is simply re-run, and
    two processes migrating one server at once do no harm.
    """
    s = store.settings
    migrations = load_migrations(local_database(store.database, s.cluster), s.cluster, s.ttl_days)
    done = applied_versions(store)
    todo = [m for m in migrations if m.version not in done]
    if todo:
        db = quote_ident(store.database)
        for stmt in setup_statements(store.database, s.cluster):
            store.command("migration_setup", stmt)
        for m in todo:
            for stmt in m.statements:
                store.command(f"migration_{m.version:04d}_{m.name}", stmt)
            store.command(
                "record_migration",
                f"INSERT INTO {db}.{MIGRATIONS_TABLE} (Version, Name) VALUES ({{v:UInt32}}, {{n:String}})",
                {"v": m.version, "n": m.name},
            )
        for stmt in distributed_statements(store.database, s.cluster):
            store.command("migration_distributed", stmt)
    if store.client.database != store.database:
        store.client.database = store.database
    return [m.version for m in todo]


def clean_statements(store: Any) -> list[str]:
    """TRUNCATE of every data table (mltrace's clean_db); with a cluster, the local tables on
    every node. The migrations record stays."""
    s = store.settings
    local = local_database(store.database, s.cluster)
    rows = store.query(
        "data_tables",
        "SELECT name FROM system.tables WHERE database = {db:String} AND engine NOT IN "
        "('MaterializedView', 'View', 'Distributed', 'Null') AND name != {m:String} ORDER BY name",
        {"db": local, "m": MIGRATIONS_TABLE},
    )
    oc = on_cluster(s.cluster)
    return [f"TRUNCATE TABLE IF EXISTS {quote_ident(local)}.{quote_ident(r[0])} {oc}".strip() for r in rows]
