"""The schema baseline: a store made by an earlier version (the legacy migrations 0001-0070 it
recorded, applied as those versions applied them) and upgraded by today's code has exactly the
shape of a new store (columns, tables, keys, settings, view queries, projections, skip indexes),
and keeps its data through the upgrade."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from mltrace_otel.settings import Settings
from mltrace_otel.store import schema
from mltrace_otel.store.core import Store

_SHAPE_QUERIES = {
    "columns": """
        SELECT table, position, name, type, default_kind, default_expression, compression_codec
        FROM system.columns WHERE database = {db:String} ORDER BY table, position""",
    "tables": """
        SELECT name, engine, sorting_key, primary_key, partition_key, create_table_query, as_select
        FROM system.tables WHERE database = {db:String} ORDER BY name""",
    "projections": """
        SELECT table, name, type, sorting_key, query
        FROM system.projections WHERE database = {db:String} ORDER BY table, name""",
    "skip_indexes": """
        SELECT table, name, type_full, expr, granularity
        FROM system.data_skipping_indices WHERE database = {db:String} ORDER BY table, name""",
}


def shape(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """What the schema of the store's database is, with the database's name replaced by ``DB``
    (in create_table_query and as_select), so two databases compare."""
    own = re.compile(rf"\b{re.escape(store.database)}\.")
    return {
        what: [tuple(own.sub("DB.", v) if isinstance(v, str) else v for v in row)
               for row in store.query(f"shape_{what}", sql, {"db": store.database})]
        for what, sql in _SHAPE_QUERIES.items()
    }


def unmigrated(settings: Settings, database: str) -> Store:
    """A store on another database of the session's engine, not migrated (as open_store would)."""
    from mltrace_otel.store import connect

    url = settings.resolved_store_url.replace(f"database={settings.database}", f"database={database}")
    other = settings.replace(store_url=url)
    return Store(other, connect.connect(other))


def make_old_store(store: Store, up_to: int) -> None:
    """Apply the legacy migrations up to version ``up_to`` to an empty database as the versions
    before the baseline did: the database and migrations table, then each migration's
    statements, then its version recorded."""
    for stmt in schema.setup_statements(store.database):
        store.command("old_setup", stmt)
    for m in schema.load_migrations(store.database):
        if m.legacy and m.version <= up_to:
            for stmt in m.statements:
                store.command(f"old_{m.version:04d}", stmt)
            store.command("old_record", f"INSERT INTO `{store.database}`.{schema.MIGRATIONS_TABLE} "
                          "(Version, Name) VALUES ({v:UInt32}, {n:String})", {"v": m.version, "n": m.name})


@pytest.fixture
def old_store(store: Store, tmp_settings: Settings) -> Iterator[Store]:
    """An empty, unmigrated database next to the test's fresh ``store``; dropped after."""
    s = unmigrated(tmp_settings, f"{store.database}_old")
    try:
        yield s
    finally:
        s.command("drop_old", f"DROP DATABASE IF EXISTS `{s.database}`")
        s.close()


def test_a_new_store_applies_the_baseline_and_no_legacy_migration(store: Store) -> None:
    recorded = store.query("recorded", f"SELECT Version, Name FROM `{store.database}`."
                           f"{schema.MIGRATIONS_TABLE} ORDER BY Version")
    assert recorded[0] == (schema.BASELINE, "baseline")
    assert all(v >= schema.BASELINE for v, _ in recorded)


@pytest.mark.parametrize("up_to", [70, 60, 20, 3])
def test_an_upgraded_store_has_exactly_the_shape_of_a_new_one(store: Store, old_store: Store,
                                                               up_to: int) -> None:
    """A store of the last version before the baseline (0070) and of earlier ones."""
    make_old_store(old_store, up_to)
    legacy = [v for v in schema.LEGACY_VERSIONS if v > up_to]
    later = [v for v in schema.applied_versions(store) if v > schema.BASELINE]
    assert old_store.migrate() == [*legacy, schema.BASELINE, *sorted(later)]
    assert old_store.migrate() == []
    new, upgraded = shape(store), shape(old_store)
    assert new["tables"] and new["projections"] and new["skip_indexes"]
    for what in _SHAPE_QUERIES:
        assert upgraded[what] == new[what], what


def test_legacy_files_are_the_versions_stores_recorded() -> None:
    legacy = [m.version for m in schema.load_migrations("db") if m.legacy]
    assert tuple(legacy) == schema.LEGACY_VERSIONS
    assert all(v < schema.BASELINE for v in legacy)


def test_a_store_needing_missing_legacy_migrations_is_refused() -> None:
    from mltrace_otel.errors import MltraceError

    without_legacy = [m for m in schema.load_migrations("db") if not m.legacy]
    assert schema.pending(without_legacy, set()) == without_legacy
    later = [m for m in without_legacy if m.version > schema.BASELINE]
    assert schema.pending(without_legacy, {schema.BASELINE}) == later
    assert schema.pending(without_legacy, {schema.BASELINE, *(m.version for m in later)}) == []
    with pytest.raises(MltraceError):
        schema.pending(without_legacy, {1, 2, 3})


def test_the_baseline_holds_plain_sql_and_every_table_setting() -> None:
    from importlib import resources

    folder = resources.files("mltrace_otel.store").joinpath("migrations")
    baseline = folder.joinpath(f"{schema.BASELINE:04d}_baseline.sql").read_text(encoding="utf-8")
    assert set(re.findall(r"\{\{(\w+)", baseline)) == {"db", "on_cluster", "engine", "ttl"}
    later = [f for f in folder.iterdir() if f.name.endswith(".sql") and int(f.name[:4]) > schema.BASELINE]
    assert not [f.name for f in later if "MODIFY SETTING" in f.read_text(encoding="utf-8")]


def test_the_lineage_view_stores_the_row_the_queries_compute(store: Store) -> None:
    """mltrace_lineage_mv's Row and queries.RUN_ROW_JSON (the fallback for a run not yet in
    mltrace_lineage) are one expression."""
    from mltrace_otel.store.queries import RUN_ROW_JSON

    (view,), = store.query("view", "SELECT as_select FROM system.tables WHERE database = {db:String} "
                           "AND name = 'mltrace_lineage_mv'", {"db": store.database})
    (expr,), = store.query("fmt", "SELECT formatQuerySingleLine({q:String})",
                           {"q": f"SELECT {RUN_ROW_JSON} AS Row"})
    assert expr.removeprefix("SELECT ") in view


def _pipeline(tracer: Any) -> None:
    """Three runs as a pipeline writes them: load writes raw.csv, clean reads it and writes
    clean.csv, check reads clean.csv and writes nothing."""
    for name, ins, outs in (("load", [], ["raw.csv"]), ("clean", ["raw.csv"], ["clean.csv"]),
                            ("check", ["clean.csv"], [])):
        with tracer.start_as_current_span(name, attributes={
                "mltrace.component.name": name, "mltrace.run.inputs": ins, "mltrace.run.outputs": outs,
                "mltrace.run.output_versions": ["v1"] * len(outs)}):
            pass


def test_an_upgraded_store_keeps_its_runs_lineage_and_flags(old_store: Store, otel_tracer: Any,
                                                            contrib_insert: Any) -> None:
    tracer, exporter = otel_tracer
    make_old_store(old_store, 10)  # before the lineage table (0011) and flags by version (0070)
    _pipeline(tracer)
    assert contrib_insert(old_store, exporter.get_finished_spans()) == 3
    old_store.command("old_flag", f"INSERT INTO `{old_store.database}`.mltrace_flags "
                      "(Pointer, Flagged, Version) VALUES ('clean.csv', 1, now64(9))")
    old_store.migrate()
    ids = {r.component: r.id for r in old_store.recent(10)}
    assert set(ids) == {"load", "clean", "check"}
    assert [p.name for p in old_store.get_run(ids["clean"]).inputs] == ["raw.csv"]
    assert [n.run.component for n in old_store.trace("clean.csv").nodes] == ["clean", "load"]
    assert [r.id for r in old_store.history("check")] == [ids["check"]]
    assert {(f.pointer, f.run) for f in old_store.flagged_outputs()} == {("clean.csv", ids["clean"])}
