"""Issue 14: triage by version and cause, on the real embedded store with the real SDK writing
real files under tmp_path (plain string paths): version-aware lineage, staleness that reaches
downstream (with early cutoff), failed upstream, flags by version and review by evidence."""

from __future__ import annotations

from pathlib import Path

import pytest
from sdk_pipeline import run_ids, sdk_into, settle, three_steps

from mltrace_otel.errors import NotFound
from mltrace_otel.store import schema


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path / "work"


def _newer_extract(store, tmp_settings, work):
    """extract, clean, report; then extract again with new data. Returns the run ids."""
    with sdk_into(store, tmp_settings, work):
        extract, clean, report = three_steps()
        extract("id,amount\n1,10\n")
        clean("data/raw.csv")
        report()
        settle("data/raw.csv")
        extract("id,amount\n1,11\n")
    (e1, e2), (c,), (r,) = run_ids(store, "extract"), run_ids(store, "clean"), run_ids(store, "report")
    return e1, e2, c, r


def test_a_new_extract_run_makes_clean_and_report_stale_with_root_cause_and_path(store, tmp_settings, work):
    e1, e2, c, r = _newer_extract(store, tmp_settings, work)
    stale = {x.component: x for x in store.stale_runs()}
    assert set(stale) == {"clean", "report"}
    direct = f"extract (ID {e1}) has a newer run now (ID {e2})."
    assert stale["clean"].stale == (direct,)
    assert [x.kind for x in stale["clean"].stale_reasons] == ["newer_upstream"]
    assert stale["report"].stale == (
        f"report (ID {r}) read data/clean.csv from clean (ID {c}), which is stale: {direct}",)
    (why,) = stale["report"].stale_reasons
    assert (why.kind, why.inherited, why.run, why.root.kind, why.root.newer) == (
        "upstream_stale", True, c, "newer_upstream", e2)
    assert [(h.run, h.pointer) for h in why.path] == [(c, "data/clean.csv")]
    # --direct leaves inherited staleness out
    assert [x.component for x in store.stale_runs(direct=True)] == ["clean"]
    # inspect and trace say the same
    assert store.get_run(r).stale == stale["report"].stale
    nodes = {n.run.id: n.run for n in store.trace("report.txt").nodes}
    assert nodes[r].stale == stale["report"].stale and nodes[c].stale == (direct,)
    js = stale["report"].to_json()["stale_reasons"][0]
    assert js["kind"] == "upstream_stale" and js["root"]["kind"] == "newer_upstream"


def test_versions_differ_by_content_and_edges_carry_them(store, tmp_settings, work):
    with sdk_into(store, tmp_settings, work):
        extract, clean, report = three_steps()
        extract("id,amount\n1,10\n")
        settle("data/raw.csv")
        extract("id,amount\n1,11\n")
        settle("data/raw.csv")
        extract("id,amount\n1,10\n")  # the first content again
        clean("data/raw.csv")
        report()
    v1, v2, v3 = (r.outputs[0].version for r in reversed(store.history("extract")))
    assert v1 and v2 and v1 != v2 and v3 == v1
    (c,) = store.history("clean")
    e3 = run_ids(store, "extract")[-1]
    assert c.dependencies == (e3,)  # the latest run that wrote the version read
    lin = store.trace("report.txt")
    edges = {(e.producer, e.pointer): e.version for e in lin.edges}
    assert edges[(e3, "data/raw.csv")] == v1
    assert edges[(c.id, "data/clean.csv")] == c.outputs[0].version != ""


def test_a_newer_run_that_wrote_the_same_version_is_no_cause(store, tmp_settings, work):
    with sdk_into(store, tmp_settings, work):
        extract, clean, report = three_steps()
        extract("id,amount\n1,10\n")
        clean("data/raw.csv")
        report()
        settle("data/raw.csv")
        extract("id,amount\n1,10\n")  # same bytes again: early cutoff
    assert store.stale_runs() == []
    e1, _e2 = run_ids(store, "extract")
    assert store.get_run(run_ids(store, "clean")[0]).stale == ()
    with sdk_into(store, tmp_settings, work):
        settle("data/raw.csv")
        three_steps()[0]("id,amount\n1,12\n")  # new bytes: news
    e3 = run_ids(store, "extract")[-1]
    (clean,) = store.stale_runs(direct=True)
    assert clean.stale == (f"extract (ID {e1}) has a newer run now (ID {e3}).",)


def test_a_report_that_read_a_failed_cleans_output_names_that_run(store, tmp_settings, work):
    with sdk_into(store, tmp_settings, work):
        extract, clean, report = three_steps()
        extract("id,amount\n1,-10\n")
        with pytest.raises(ValueError, match="negative amount"):
            clean("data/raw.csv")
        report()
    (c,), (r,) = store.history("clean"), store.history("report")
    assert c.failed and r.dependencies == (c.id,)
    message = f"clean (ID {c.id}) failed: ValueError: negative amount."
    run = store.get_run(r.id)
    assert run.stale == (message,)
    assert [x.kind for x in run.stale_reasons] == ["upstream_failed"]
    assert [x.id for x in store.stale_runs()] == [r.id]
    assert store.trace("report.txt").nodes[0].run.stale == (message,)
    assert store.history("report")[0].stale == (message,)  # a direct cause: lists show it too


def test_after_flagging_the_report_review_starts_with_the_failed_clean_run(store, tmp_settings, work):
    with sdk_into(store, tmp_settings, work):
        extract, clean, report = three_steps()
        extract("id,amount\n1,10\n")
        clean("data/raw.csv")
        report()
        settle("data/raw.csv", "data/clean.csv", "report.txt")
        extract("id,amount\n1,-10\n")
        with pytest.raises(ValueError, match="negative amount"):
            clean("data/raw.csv")
        report()
    assert store.flag("report.txt") is True
    rv = store.review()
    assert rv.flagged == ("report.txt",) and len(rv.entries) == 3
    first = rv.entries[0]
    assert first.run.component == "clean" and first.run.failed and first.coverage == 1.0
    assert first.why[0] == "failed: ValueError: negative amount"
    assert "input data/raw.csv changed since" in " ".join(first.why)
    assert [e.run.component for e in rv.entries] == ["clean", "report", "extract"]
    assert rv.entries[1].why[0].startswith("stale: clean (ID")
    assert first.to_json()["why"] == list(first.why)
    assert first.coverage_text.startswith("This component has 100% coverage")
    # scoped: only extract runs, or nothing before a date after every run
    assert [e.run.component for e in store.review(component="extract").entries] == ["extract"]
    assert store.review(since="2999-01-01").entries == ()
    assert [e.run.component for e in store.review(tag="etl").entries] == ["clean"]
    assert store.review(tag="etl").scope == {"tag": "etl"}


def test_flags_bind_to_the_version_a_run_wrote(store, tmp_settings, work):
    with sdk_into(store, tmp_settings, work):
        extract, clean, report = three_steps()
        extract("id,amount\n1,10\n")
        clean("data/raw.csv")
        report()
        settle("data/raw.csv", "data/clean.csv", "report.txt")
        extract("id,amount\n1,10\n2,20\n")
        clean("data/raw.csv")
        report()
    old, new = run_ids(store, "report")
    store.flag("report.txt")
    assert store.get_run(new).outputs[0].flagged
    assert not store.get_run(old).outputs[0].flagged  # flags are per version, not per name
    assert [(f.pointer, f.run) for f in store.flagged_outputs()] == [("report.txt", new)]
    assert store.review().flagged_versions[0].run == new
    store.flag("report.txt", run_id=old[:8])
    assert store.get_run(old).outputs[0].flagged
    assert {f.run for f in store.flagged_outputs()} == {old, new}
    assert store.flagged() == ["report.txt"]
    assert len(store.review().flagged) == 2  # two versions flagged: coverage counts both
    store.unflag("report.txt", run_id=new)
    assert [f.run for f in store.flagged_outputs()] == [old]
    store.unflag("report.txt")
    assert store.flagged_outputs() == []
    with pytest.raises(NotFound, match="did not write"):
        store.flag("report.txt", run_id=run_ids(store, "extract")[0])
    with pytest.raises(NotFound):
        store.flag("report.txt", run_id="ffffffff")
    # a flag on an output no run wrote is reported by review, not fatal
    assert store.flag_output("ghost.csv").run == ""
    assert store.review().unproduced == ("ghost.csv",)


def test_inspect_says_what_changed_since_the_previous_run(store, tmp_settings, work):
    with sdk_into(store, tmp_settings, work):
        extract, clean, report = three_steps()
        extract("id,amount\n1,10\n")
        clean("data/raw.csv")
        settle("data/raw.csv", "data/clean.csv")
        extract("id,amount\n1,10\n3,30\n")
        clean("data/raw.csv")

        import mltrace_otel as mltrace

        @mltrace.register("extract", outputs=["data/raw.csv"])
        def extract_v2(rows: str) -> None:  # new code for the same component
            Path("data/raw.csv").write_text(rows)  # the same bytes as before

        settle("data/raw.csv")
        extract_v2("id,amount\n1,10\n3,30\n")
    c1, c2 = run_ids(store, "clean")
    run = store.get_run(c2)
    assert run.previous_run == c1
    assert {(ch.what, ch.name) for ch in run.changes} == {("input", "data/raw.csv"),
                                                           ("output", "data/clean.csv")}
    e1, e2, e3 = run_ids(store, "extract")
    latest = store.get_run(e3)
    assert latest.previous_run == e2 and latest.code_hash
    assert [ch.what for ch in latest.changes] == ["code"]  # same output bytes, new code
    assert [(ch.what, ch.name) for ch in store.get_run(e2).changes] == [("output", "data/raw.csv")]
    assert store.get_run(e1).previous_run == "" and store.get_run(e1).changes == ()


def test_migration_0070_carries_name_flags_over_to_the_latest_version(store, tmp_settings, work):
    with sdk_into(store, tmp_settings, work):
        extract, _clean, _report = three_steps()
        extract("id,amount\n1,10\n")
        settle("data/raw.csv")
        extract("id,amount\n1,11\n")
    e1, e2 = run_ids(store, "extract")
    # flags as 0.1 wrote them: one row per name
    store.command("legacy_flag", f"INSERT INTO `{store.database}`.mltrace_flags (Pointer, Flagged, Version) "
                  "VALUES ('data/raw.csv', 1, now64(9)), ('ghost', 1, now64(9))")
    (m,) = [m for m in schema.load_migrations(store.database) if m.version == 70]
    for stmt in m.statements:
        store.command("rerun_0070", stmt)
    got = {(f.pointer, f.run) for f in store.flagged_outputs()}
    assert got == {("data/raw.csv", e2), ("ghost", "")}
    assert store.get_run(e2).outputs[0].flagged and not store.get_run(e1).outputs[0].flagged
