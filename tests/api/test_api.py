"""mltrace's query functions, end to end: runs logged with the SDK, read back through the API."""

from __future__ import annotations

import pytest

import mltrace_otel as mltrace
from mltrace_otel import api
from mltrace_otel.errors import AmbiguousRunId, NotFound
from mltrace_otel.sdk import config, export


@pytest.fixture
def env(tmp_settings):
    """The SDK spools runs for tmp_settings' store; the API opens that store."""
    export.reset()
    config.clear_overrides()
    export.configure(settings=tmp_settings.replace(export="spool"), sync=True)
    yield tmp_settings
    try:
        store = api._store
        if store is not None:
            store.command("drop_test_database", f"DROP DATABASE IF EXISTS `{store.database}`")
    finally:
        api.close()
        export.reset()
        config.clear_overrides()


def _pipeline():
    ingest = mltrace.Component("ingest", owner="ann", description="reads raw", tags=["etl"])
    train = mltrace.Component("train", owner="bob", tags=["ml"])

    @ingest.run(inputs=["raw.csv"], outputs=["clean.csv"])
    def do_ingest():
        return 1

    @train.run(inputs=["clean.csv"], outputs=["model.pkl"])
    def do_train():
        return 2

    do_ingest()
    do_train()


def test_backtrace_history_recent_inspect(env):
    _pipeline()
    trace = mltrace.backtrace("model.pkl")
    assert [(d, cr.component_name) for d, cr in trace] == [(0, "train"), (1, "ingest")]
    train_run = trace[0][1]
    assert train_run.dependencies == ["ingest"]  # mltrace gives dependency component names
    assert [p.name for p in train_run.inputs] == ["clean.csv"]
    assert train_run.outputs[0].pointer_type == mltrace.PointerTypeEnum.MODEL
    assert len(train_run.id) == 16 and train_run.start_timestamp <= train_run.end_timestamp

    ids = mltrace.get_recent_run_ids()
    assert ids == [train_run.id, trace[1][1].id]
    assert mltrace.get_recent_run_ids(5, ids[0][:6]) == [ids[1]]
    hist = mltrace.get_history("ingest")
    assert [h.id for h in hist] == [ids[1]]

    info = mltrace.get_component_run_information(ids[0][:5])
    assert info.id == ids[0]
    assert "do_train" in (info.code_snapshot or "")
    assert mltrace.add_notes_to_component_run(ids[0][:6], "looks off") == "looks off"
    assert mltrace.get_component_run_information(ids[0]).notes == "looks off"
    with pytest.raises(NotFound):
        mltrace.get_component_run_information("ffffffffffffffff")


def test_web_trace_has_mltraces_shape(env):
    _pipeline()
    [tree] = mltrace.web_trace("model.pkl")
    assert tree["id"].startswith("componentrun_") and tree["label"] == "train"
    assert tree["hasCaret"] is True and tree["isExpanded"] is True and tree["stale"] == []
    out, dep = tree["childNodes"]
    assert out == {"id": "iopointer_model.pkl", "label": "model.pkl", "hasCaret": False,
                   "parent": tree["id"], "icon": "function"}
    assert dep["label"] == "ingest" and dep["childNodes"][0]["id"] == "iopointer_clean.csv"


def test_components_tags_flags_review_and_clean(env):
    _pipeline()
    assert [c.name for c in mltrace.get_components()] == ["ingest", "train"]
    assert [c.name for c in mltrace.get_components(owner="bob")] == ["train"]
    assert [c.name for c in mltrace.get_components_with_tag("etl")] == ["ingest"]
    mltrace.tag_component("train", ["prod"])
    assert mltrace.get_all_tags() == ["etl", "ml", "prod"]
    c = mltrace.get_component_information("train")
    assert (c.name, c.owner, sorted(c.tags)) == ("train", "bob", ["ml", "prod"])
    with pytest.raises(NotFound):
        mltrace.tag_component("nope", ["x"])
    mltrace.create_component("score", "scores", "cy", ["ml"])
    assert mltrace.get_components_with_owner("cy")[0].description == "scores"

    assert mltrace.flag_output_id("model.pkl") is True
    assert mltrace.get_io_pointer("model.pkl").flag is True
    flagged, ranked = mltrace.review_flagged_outputs()
    assert flagged == ["model.pkl"]
    assert [(cr.component_name, n) for cr, n in ranked] == [("train", 1), ("ingest", 1)]
    assert mltrace.unflag_output_id("model.pkl") is False
    mltrace.flag_output_id("model.pkl")
    mltrace.unflag_all()
    assert mltrace.review_flagged_outputs() == ([], [])

    mltrace.clean_db()
    assert mltrace.get_recent_run_ids() == []


def test_ambiguous_prefix_lists_candidates(env):
    _pipeline()
    ids = mltrace.get_recent_run_ids()
    common = 0
    while ids[0][: common + 1] == ids[1][: common + 1]:
        common += 1
    if common >= 4:  # random ids rarely share 4 characters; then the prefix is ambiguous
        with pytest.raises(AmbiguousRunId):
            mltrace.get_component_run_information(ids[0][:common])
    with pytest.raises(NotFound):
        mltrace.get_component_run_information("abc")  # shorter than 4


def test_set_db_uri_reopens_the_store(env, tmp_path):
    _pipeline()
    assert len(mltrace.get_recent_run_ids()) == 2
    first = api._store
    other = env.resolved_store_url.replace(env.database, env.database + "_b")
    mltrace.set_db_uri(other)
    try:
        assert api._store is first
        assert mltrace.get_recent_run_ids() == []  # a different database: nothing logged there
        assert api._store is not first
    finally:
        api._store.command("drop", f"DROP DATABASE IF EXISTS `{env.database}_b`")
        config.clear_overrides()


def test_sdk_logged_twelve_diamonds_backtrace_to_37_runs_and_review(env):
    """The must-show pipeline logged through the SDK (ComponentRun + log_component_run)."""
    from datetime import datetime, timedelta, timezone

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    k = [0]

    def log(name, ins, outs):
        k[0] += 1
        cr = mltrace.ComponentRun(name, start_timestamp=t0 + timedelta(seconds=10 * k[0]),
                                  end_timestamp=t0 + timedelta(seconds=10 * k[0] + 1))
        cr.add_inputs(ins)
        cr.add_outputs(outs)
        mltrace.log_component_run(cr)

    log("src", ["raw"], ["d0"])
    for i in range(12):
        log("left", [f"d{i}"], [f"d{i}_l"])
        log("right", [f"d{i}"], [f"d{i}_r"])
        log("join", [f"d{i}_l", f"d{i}_r"], [f"d{i + 1}"])
    trace = mltrace.backtrace("d12")
    assert len(trace) == 37 and len({cr.id for _, cr in trace}) == 37
    assert trace[0][0] == 0 and trace[-1][0] == 24 and trace[-1][1].component_name == "src"
    tree = mltrace.web_trace("d12")[0]

    def count(node):
        return (node["id"].startswith("componentrun_") and node["isExpanded"]) + sum(
            count(c) for c in node.get("childNodes", []))

    assert count(tree) == 37  # each run expanded once, not once per path
    mltrace.flag_output_id("d12")
    mltrace.flag_output_id("d11")
    flagged, ranked = mltrace.review_flagged_outputs()
    assert flagged == ["d11", "d12"]
    assert [n for _, n in ranked].count(2) == 34 and [n for _, n in ranked].count(1) == 3


def test_sdk_logged_staleness_messages(env):
    from datetime import datetime, timedelta, timezone

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def log(name, ins, outs, at):
        cr = mltrace.ComponentRun(name, start_timestamp=t0 + timedelta(seconds=at),
                                  end_timestamp=t0 + timedelta(seconds=at + 1))
        cr.add_inputs(ins)
        cr.add_outputs(outs)
        mltrace.log_component_run(cr)

    log("component_1", [], ["features"], 10)
    log("component_1", [], ["other"], 20)
    log("component_2", ["features"], ["preds"], 30)
    log("component_3", ["features"], ["late"], 40 * 86400)
    runs = {cr.component_name: cr for cr in (mltrace.get_history(c, 1)[0] for c in
                                            ("component_1", "component_2", "component_3"))}
    first = mltrace.get_history("component_1", 5)[-1].id
    assert runs["component_2"].stale == [
        f"component_1 (ID {first}) has 1 fresher run that began before this component run started."]
    assert f"component_1 (ID {first}) was run 39 days ago." in runs["component_3"].stale
    assert runs["component_2"].dependencies == ["component_1"]


def test_versions_causes_and_review_through_the_api(env, tmp_path, monkeypatch):
    """Issue 14 through mltrace's functions: plain file paths get versions, a new upstream
    version makes both downstream runs stale (inherited named), flags bind to versions, and the
    review's first entry is the failed run, with why."""
    import time
    from pathlib import Path

    from mltrace_otel.sdk import files

    monkeypatch.chdir(tmp_path)

    @mltrace.register("extract", outputs=["raw.csv"])
    def extract(rows: str) -> None:
        Path("raw.csv").write_text(rows)

    @mltrace.register("clean", inputs=["raw.csv"], outputs=["clean.csv"])
    def clean() -> None:
        text = Path("raw.csv").read_text()
        Path("clean.csv").write_text(text)
        if "-" in text:
            raise ValueError("negative amount")

    @mltrace.register("report", inputs=["clean.csv"], outputs=["report.txt"])
    def report() -> None:
        Path("report.txt").write_text(Path("clean.csv").read_text().upper())

    def settle() -> None:
        while any(files._racy(Path(p).stat()) for p in ("raw.csv", "clean.csv", "report.txt")
                  if Path(p).exists()):
            time.sleep(0.02)

    extract("a\n1\n")
    clean()
    report()
    settle()
    extract("a\n2\n")
    stale = {cr.component_name: cr for cr in mltrace.get_stale_runs()}
    assert set(stale) == {"clean", "report"}
    assert "which is stale: extract (ID" in stale["report"].stale[0]
    assert [cr.component_name for cr in api.get_stale_runs(direct=True)] == ["clean"]
    assert [r["kind"] for r in api.stale_reasons(stale["report"].id)] == ["upstream_stale"]

    old_report = stale["report"].id
    settle()
    extract("a\n-3\n")
    with pytest.raises(ValueError):
        clean()
    report()
    assert mltrace.flag_output_id("report.txt") is True
    rv = api.review()
    assert rv.entries[0].run.component == "clean"
    assert rv.entries[0].why[0] == "failed: ValueError: negative amount"
    flagged, ranked = mltrace.review_flagged_outputs()
    assert flagged == ["report.txt"] and ranked[0][0].component_name == "clean" and ranked[0][1] == 1
    assert not mltrace.get_component_run_information(old_report).outputs[0].flag
    assert api.flag_output_version("report.txt", old_report[:8]) is True
    assert mltrace.get_component_run_information(old_report).outputs[0].flag
    assert len(api.review(component="report").entries) == 2
    assert mltrace.unflag_output_id("report.txt") is False
    assert mltrace.review_flagged_outputs() == ([], [])


def test_query_functions_return_naive_utc_and_the_cli_takes_mltrace_forms(env) -> None:
    """mltrace 0.17 returned naive UTC datetimes (``datetime.utcnow() - run.start_timestamp`` works)
    and its CLI took ``--address HOST`` and ``unflag --output_id ID``; both still work."""
    from datetime import datetime as dt

    from typer.testing import CliRunner

    from mltrace_otel.cli.app import app

    mltrace.register("naive", outputs=["naive.out"])(lambda: None)()
    (run,) = mltrace.get_history("naive")
    assert run.start_timestamp.tzinfo is None and run.end_timestamp.tzinfo is None
    assert 0 <= (dt.utcnow() - run.start_timestamp).total_seconds() < 3600
    assert mltrace.get_component_run_information(run.id).start_timestamp == run.start_timestamp
    api.close()  # the CLI below opens the store itself
    url = env.resolved_store_url
    runner = CliRunner()
    r = runner.invoke(app, ["--store", url, "flag", "naive.out"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["--store", url, "unflag", "--output_id", "naive.out", "--json"])
    assert r.exit_code == 0 and "naive.out" in r.output, r.output
    r = runner.invoke(app, ["--address", "127.0.0.1", "recent"])  # nothing listens on 8123 here
    assert r.exit_code == 1 and "127.0.0.1:8123" in r.output, r.output
