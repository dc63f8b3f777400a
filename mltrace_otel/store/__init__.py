"""The store: where runs are kept (ClickHouse, embedded chDB by default) and how mltrace's
questions are answered.

Public surface: :class:`Store` (``open_store(settings)``), the result types in
:mod:`mltrace_otel.store.models`. All SQL of the project lives in this package; every user value
reaches it as a bound parameter.

May import: mltrace_otel.conventions, .settings, .errors, .spool, opentelemetry-proto,
clickhouse-connect, chdb. Never the SDK, the collector, the CLI or the dashboards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from mltrace_otel.store.core import Store, open_store

__all__ = ["Store", "open_store"]


def __getattr__(name: str):  # lazy: importing the package must not load chdb
    if name in __all__:
        from mltrace_otel.store import core

        return getattr(core, name)
    raise AttributeError(name)
