"""Schema: migrations applied in order, recorded, idempotent; errors mapped; clean empties.
(The baseline against the legacy migrations: test_schema_baseline.py.)"""

from __future__ import annotations

import pytest

from mltrace_otel.errors import QueryError
from mltrace_otel.store import open_store
from mltrace_otel.store.schema import load_migrations, pending


def test_open_store_creates_database_and_records_the_baseline_and_later_migrations(store) -> None:
    tables = {r[0] for r in store.query("t", "SELECT name FROM system.tables WHERE database = {d:String}",
                                        {"d": store.database})}
    assert {"otel_traces", "otel_traces_trace_id_ts", "otel_traces_trace_id_ts_mv", "mltrace_runs",
            "mltrace_io", "mltrace_components", "mltrace_flags", "mltrace_notes",
            "mltrace_component_tags", "mltrace_schema_migrations"} <= tables
    versions = [m.version for m in pending(load_migrations(store.database), set())]
    assert versions == sorted(versions) and not any(m.legacy for m in pending(load_migrations("x"), set()))
    recorded = store.query("v", "SELECT Version FROM mltrace_schema_migrations ORDER BY Version")
    assert [v for v, in recorded] == versions
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


def _statements(cluster: str | None = None, ttl_days: int = 0) -> list[str]:
    from mltrace_otel.store.schema import plan

    return [" ".join(s.split()) for s in plan("mlt", cluster, ttl_days)]


def test_without_a_cluster_the_sql_is_plain() -> None:
    sql = _statements()
    assert not any("ON CLUSTER" in s or "Replicated" in s or "Distributed" in s for s in sql)
    assert not any(" TTL " in s for s in sql)
    assert all("`mlt`." in s or s.startswith("CREATE DATABASE") for s in sql)


def test_a_cluster_gets_on_cluster_replicated_engines_and_distributed_tables() -> None:
    import re

    from mltrace_otel.store.schema import local_tables

    sql = _statements("prod")
    ddl = [s for s in sql if s.startswith(("CREATE", "ALTER", "DROP", "RENAME"))]
    assert len(ddl) > 30 and all("ON CLUSTER `prod`" in s for s in ddl)
    engines = [m.group(1) for s in sql for m in [re.search(r"ENGINE = (\w+)", s)] if m]
    # every table holding data is replicated; the native ingest's entry table (Null) and its
    # read-once deferred list (Memory) hold nothing durable
    assert engines and all(e.startswith("Replicated") or e in ("Distributed", "Null", "Memory")
                           for e in engines)
    assert sorted(e for e in engines if e in ("Null", "Memory")) == ["Memory", "Null"]
    # tables and views live in mlt_local on every node; mlt holds a Distributed table per data table
    creates = {m.group(1): s for s in sql
               for m in [re.match(r"CREATE (?:TABLE|MATERIALIZED VIEW) IF NOT EXISTS (\S+)", s)] if m}
    data_tables = local_tables("mlt", "prod")
    assert {"otel_traces", "otel_traces_trace_id_ts", "mltrace_runs", "mltrace_io", "mltrace_components",
            "mltrace_component_tags", "mltrace_flags", "mltrace_notes"} <= set(data_tables)
    for t in data_tables:
        assert f"`mlt_local`.{t}" in creates
        dist = creates[f"`mlt`.{t}"]
        assert f"AS `mlt_local`.{t} ENGINE = Distributed(`prod`, `mlt_local`, {t}, " in dist
    assert "TO `mlt_local`.mltrace_runs" in creates["`mlt_local`.mltrace_runs_mv"]
    assert "FROM `mlt_local`.otel_traces" in creates["`mlt_local`.mltrace_runs_mv"]
    # the migrations record is replicated on one path for the whole cluster
    assert "ReplicatedReplacingMergeTree('/clickhouse/mltrace/mlt/schema_migrations'" in \
        creates["`mlt`.mltrace_schema_migrations"]
    # Distributed tables come after the local tables they copy
    order = list(creates)
    assert all(order.index(f"`mlt`.{t}") > order.index(f"`mlt_local`.{t}") for t in data_tables)


def test_legacy_migrations_render_for_a_cluster_too() -> None:
    legacy = [s for m in load_migrations("mlt_local", "prod", 7) if m.legacy for s in m.statements]
    ddl = [" ".join(s.split()) for s in legacy if s.startswith(("CREATE", "ALTER", "DROP"))]
    assert ddl and all("ON CLUSTER `prod`" in s for s in ddl)
    assert not any("{{" in s for s in legacy)


def test_ttl_is_rendered_for_span_and_run_tables() -> None:
    sql = "\n".join(_statements(ttl_days=7))
    assert "TTL toDateTime(Timestamp) + toIntervalDay(7)" in sql
    assert "TTL toDateTime(Start) + toIntervalDay(7)" in sql
    assert "ttl_only_drop_parts = 1" in sql


def test_ttl_applies_on_the_embedded_store(tmp_settings) -> None:
    with open_store(tmp_settings.replace(ttl_days=3)) as s:
        (ddl,), = s.query("ddl", "SELECT create_table_query FROM system.tables "
                          "WHERE database = {d:String} AND name = 'otel_traces'", {"d": s.database})
        assert "TTL toDateTime(Timestamp) + toIntervalDay(3)" in ddl
        s.command("drop", f"DROP DATABASE `{s.database}`")


def test_clean_empties_every_table_and_keeps_the_schema(store, otel_tracer) -> None:
    tracer, exporter = otel_tracer
    with tracer.start_as_current_span("r", attributes={"mltrace.component.name": "r",
                                                       "mltrace.run.outputs": ["o"]}):
        pass
    store.insert_spans(exporter.get_finished_spans())
    store.command("flag", "INSERT INTO mltrace_flags (Pointer, Flagged, Version) VALUES ('o', 1, now64())")
    store.clean()
    counts = store.query("counts", "SELECT name, total_rows FROM system.tables WHERE database = {d:String} "
                         "AND engine LIKE '%MergeTree' AND name != 'mltrace_schema_migrations'",
                         {"d": store.database})
    assert counts and all(n == 0 for _, n in counts), counts
    assert store.migrate() == []
    assert store.query("n", "SELECT count() FROM mltrace_schema_migrations") != [(0,)]


def test_opening_a_migrated_store_costs_one_query(store, tmp_settings, monkeypatch) -> None:
    from mltrace_otel.store.core import Store

    calls: list[str] = []
    real_query, real_command = Store.query, Store.command
    monkeypatch.setattr(Store, "query", lambda self, name, *a, **k: (calls.append(name),
                                                                     real_query(self, name, *a, **k))[1])
    monkeypatch.setattr(Store, "command", lambda self, name, *a, **k: (calls.append(name),
                                                                       real_command(self, name, *a, **k))[1])
    with open_store(tmp_settings):
        pass
    assert calls == ["schema_versions"]
