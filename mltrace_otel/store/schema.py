"""Schema: numbered, forward-only migrations rendered for one database and applied in order.

Migration files live in ``store/migrations/NNNN_name.sql``; each holds one or more statements
separated by ``;`` at the end of a line. Tokens rendered here:

- ``{{db}}``: the database, backquoted (the only spliced identifier; validated as a plain name).
- ``{{on_cluster}}``: ``ON CLUSTER `name``` when a cluster is configured, else nothing.
- ``{{engine X(args)}}``: the engine, ``ReplicatedX(args)`` when a cluster is configured.
- ``{{ttl EXPR}}``: ``TTL EXPR + toIntervalDay(N)`` when a TTL is configured, else nothing.
- ``{{str_array EXPR}}``: an attribute value as Array(String): compact JSON arrays are parsed,
  a plain non-empty string is one element, '' is the empty array.

Imports only settings/errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

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
    """SQL turning an attribute string into Array(String) (see module docstring)."""
    return (
        f"if(startsWith({expr}, '['), JSONExtract({expr}, 'Array(String)'), "
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
