"""Schema: migrations applied in order, recorded, idempotent; errors mapped; clean empties."""

from __future__ import annotations

import pytest

from mltrace_otel.errors import QueryError
from mltrace_otel.store import open_store
from mltrace_otel.store.schema import load_migrations


def test_open_store_creates_database_and_records_every_migration(store) -> None:
    tables = {r[0] for r in store.query("t", "SELECT name FROM system.tables WHERE database = {d:String}",
                                        {"d": store.database})}
    assert {"otel_traces", "otel_traces_trace_id_ts", "otel_traces_trace_id_ts_mv", "mltrace_runs",
            "mltrace_io", "mltrace_components", "mltrace_flags", "mltrace_notes",
            "mltrace_component_tags", "mltrace_schema_migrations"} <= tables
    versions = [m.version for m in load_migrations(store.database)]
    assert versions == sorted(versions)
    assert store.schema_version() == versions[-1]


def test_migrate_again_applies_nothing(store, tmp_settings) -> None:
    assert store.migrate() == []
    store.close()
    with open_store(tmp_settings) as again:
        assert again.migrate() == []
        recorded = again.query("m", "SELECT Version, count() FROM mltrace_schema_migrations GROUP BY Version")
        assert all(n == 1 for _, n in recorded)


def test_query_error_names_the_query_and_parameters(store) -> None:
    with pytest.raises(QueryError) as e:
        store.query("no_such_table", "SELECT * FROM nope WHERE x = {p:String}", {"p": "v"})
    assert e.value.query == "no_such_table"
    assert e.value.parameters == {"p": "v"}
    assert "nope" in str(e.value)


def test_bound_parameters_carry_hostile_strings(store) -> None:
    evil = "'; DROP TABLE otel_traces; --\\ \"ü"
    assert store.query("echo", "SELECT {s:String}", {"s": evil}) == [(evil,)]
    assert store.query("t", "SELECT count() FROM otel_traces") == [(0,)]


def test_unreachable_server_is_store_unavailable_with_password_masked(tmp_settings) -> None:
    import socket

    from mltrace_otel.errors import StoreUnavailable

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = tmp_settings.replace(store_url=f"http://u:secret@127.0.0.1:{port}/db")
    with pytest.raises(StoreUnavailable) as e:
        open_store(settings)
    assert "secret" not in str(e.value)
    assert f"127.0.0.1:{port}" in str(e.value)
