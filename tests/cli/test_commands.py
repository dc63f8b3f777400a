"""Every query command of the real CLI against a store filled by the SDK: --json equals what
the store returns, and the human output shows what a user needs to see."""

from __future__ import annotations

import json
import re

import pytest
from cli_helpers import Pipeline, invoke, log_with_sdk, ok_json

from mltrace_otel.settings import Settings


def _run_id(p: Pipeline, component: str, failed: bool | None = None) -> str:
    runs = [r for r in p.store.history(component, 20) if failed is None or r.failed == failed]
    assert runs, component
    return runs[0].id


def _error(result) -> str:  # noqa: ANN001
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stderr.lstrip().startswith("error: "), result.output
    return result.stderr


# --- runs ------------------------------------------------------------------------------------
def test_recent_json_matches_the_store_and_pages(pipeline: Pipeline) -> None:
    s, store = pipeline.settings, pipeline.store
    data = ok_json(invoke(s, "recent", "-n", "20", "--json"))
    assert data == [r.to_json() for r in store.recent(20)]
    assert len(data) == 8 and len({r["id"] for r in data}) == 8
    assert all(len(r["id"]) == 16 for r in data)
    page = ok_json(invoke(s, "recent", "-n", "3", "--before", data[2]["id"][:8], "--json"))
    assert [r["id"] for r in page] == [r["id"] for r in data[3:6]]


def test_recent_human_output(pipeline: Pipeline) -> None:
    result = invoke(pipeline.settings, "recent", "-n", "20")
    assert result.exit_code == 0, result.output
    failed = _run_id(pipeline, "train", failed=True)
    for r in pipeline.store.recent(20):
        assert r.id[:8] in result.stdout
        assert r.id not in result.stdout  # ids are shortened in human output
    assert "failed" in result.stdout and failed[:8] in result.stdout
    assert "1m 35s" in result.stdout  # the backdated ingest lasted 95 s
    zone = pipeline.store.recent(1)[0].start.astimezone().strftime("%Z")
    assert zone in result.stdout


def test_history_with_window(pipeline: Pipeline) -> None:
    s, store = pipeline.settings, pipeline.store
    data = ok_json(invoke(s, "history", "train", "--json"))
    assert data == [r.to_json() for r in store.history("train", 10)]
    assert sorted(r["status"] for r in data) == ["failed", "ok"]  # issue 17: as the table says
    assert sorted(r["otel_status"] == "ERROR" for r in data) == [False, True]
    assert ok_json(invoke(s, "history", "ingest", "--since", "7d", "--json")) == []
    old = ok_json(invoke(s, "history", "ingest", "--until", "30d", "--json"))
    assert [r["component"] for r in old] == ["ingest"] and old[0]["duration_s"] == 95
    assert len(ok_json(invoke(s, "history", "ingest", "--since", "2000-01-01", "--json"))) == 1
    result = invoke(s, "history", "ingest", "--since", "7d")
    assert result.exit_code == 0 and "no runs in that window" in result.stdout


def test_inspect(pipeline: Pipeline) -> None:
    s, store = pipeline.settings, pipeline.store
    rid = _run_id(pipeline, "train", failed=True)
    data = ok_json(invoke(s, "inspect", rid[:6], "--json"))
    assert data == store.get_run(rid).to_json()
    assert data["id"] == rid and data["status"] == "failed" and data["otel_status"] == "ERROR"
    assert [t["passed"] for t in data["tests"]] == [False]
    human = invoke(s, "inspect", rid[:6]).stdout
    assert rid in human and "FAILED" in human and "testAccuracy" in human
    assert "accuracy = quality" in human  # the code snapshot
    assert "carol" in human and "model_bad.pkl" in human


def test_tag(pipeline: Pipeline) -> None:
    s, store = pipeline.settings, pipeline.store
    data = ok_json(invoke(s, "tag", "etl", "--json"))
    expected = {r.id for c in store.components(tag="etl") for r in store.history(c.name, 10)}
    assert {r["id"] for r in data} == expected and expected
    assert {r["component"] for r in data} == {"clean", "join"}
    assert [r["start"] for r in data] == sorted((r["start"] for r in data), reverse=True)
    assert "nosuchtag" in _error(invoke(s, "tag", "nosuchtag"))


# --- lineage ---------------------------------------------------------------------------------
def test_trace_json_and_tree(pipeline: Pipeline) -> None:
    s, store = pipeline.settings, pipeline.store
    data = ok_json(invoke(s, "trace", "pred-2", "--json"))
    assert data == store.trace("pred-2").to_json()
    comps = [n["run"]["component"] for n in data["nodes"]]
    assert sorted(comps) == sorted(["predict", "train", "join", "feat_a", "feat_b", "clean", "ingest"])
    tree = invoke(s, "trace", "pred-2").stdout
    clean_id = _run_id(pipeline, "clean")
    # the diamond: clean is expanded once and referenced once
    assert tree.count(f"clean  {clean_id[:8]}  (shown above)") == 1
    assert len(re.findall(rf"clean  {clean_id[:8]}  \d{{4}}-", tree)) == 1
    assert "was run 40 days ago" in tree  # staleness warning inline
    assert "pred-2" in tree and "model.pkl ←" in tree


def test_trace_a_run(pipeline: Pipeline) -> None:
    s, store = pipeline.settings, pipeline.store
    rid = _run_id(pipeline, "train", failed=True)
    data = ok_json(invoke(s, "trace", "--run", rid[:5], "--json"))
    assert data == store.trace_run(rid).to_json()
    assert data["nodes"][0]["depth"] == 0 and data["nodes"][0]["run"]["id"] == rid
    tree = invoke(s, "trace", "--run", rid[:5]).stdout
    assert "✗ failed" in tree and "test accuracy.testAccuracy failed" in tree


def test_trace_of_an_input_no_run_wrote_is_not_an_error(pipeline: Pipeline) -> None:
    s = pipeline.settings
    result = invoke(s, "trace", "rules.yaml")
    assert result.exit_code == 0, result.output
    assert "No run produced 'rules.yaml'" in result.stdout and "read by 1 run(s)" in result.stdout
    assert ok_json(invoke(s, "trace", "rules.yaml", "--json"))["nodes"] == []


def test_impact(pipeline: Pipeline) -> None:
    s, store = pipeline.settings, pipeline.store
    data = ok_json(invoke(s, "impact", "clean.csv", "--json"))
    assert data == store.impact("clean.csv").to_json()
    assert {"pred-1", "pred-2", "pred-3", "features.csv"} <= set(data["outputs"])
    rid = _run_id(pipeline, "join")
    by_run = ok_json(invoke(s, "impact", rid[:6], "--json"))
    assert by_run == store.impact(rid).to_json()
    human = invoke(s, "impact", "clean.csv").stdout
    assert "output(s) affected" in human and "pred-3" in human


def test_stale(pipeline: Pipeline) -> None:
    s, store = pipeline.settings, pipeline.store
    data = ok_json(invoke(s, "stale", "--json"))
    assert data == [r.to_json() for r in store.stale_runs(None, 100)]
    clean = [r for r in data if r["component"] == "clean"]
    assert clean and any("was run 40 days ago" in m for m in clean[0]["stale"])
    only = ok_json(invoke(s, "stale", "--component", "clean", "--json"))
    assert only == [r.to_json() for r in store.stale_runs("clean", 100)]
    assert {r["component"] for r in only} == {"clean"}
    human = invoke(s, "stale").stdout
    assert "was run 40 days ago" in human
    assert "nosuch" in _error(invoke(s, "stale", "--component", "nosuch"))


# --- components ------------------------------------------------------------------------------
def test_components_and_tags(pipeline: Pipeline) -> None:
    s, store = pipeline.settings, pipeline.store
    assert ok_json(invoke(s, "components", "--json")) == [c.to_json() for c in store.components()]
    bob = ok_json(invoke(s, "components", "--owner", "bob", "--json"))
    assert {c["name"] for c in bob} == {"feat_a", "feat_b", "join"}
    etl = ok_json(invoke(s, "components", "--tag", "etl", "--json"))
    assert etl == [c.to_json() for c in store.components(tag="etl")]
    assert ok_json(invoke(s, "components", "--owner", "nobody", "--json")) == []
    assert invoke(s, "components", "--owner", "nobody").exit_code == 0
    assert ok_json(invoke(s, "tags", "--json")) == store.tags()
    assert {"etl", "features", "model", "serving"} <= set(store.tags())
    human = invoke(s, "components").stdout
    assert "carol" in human and "fits the model" in human
    assert "serving" in invoke(s, "tags").stdout


# --- flags, review, notes --------------------------------------------------------------------
def test_flag_review_unflag(pipeline: Pipeline) -> None:
    s, store = pipeline.settings, pipeline.store
    flagged = ok_json(invoke(s, "flag", "pred-1", "pred-2", "--json"))
    predict = _run_id(pipeline, "predict")
    versions = [{"pointer": p, "run": predict, "version": ""} for p in ("pred-1", "pred-2")]
    assert flagged == {"flagged": ["pred-1", "pred-2"], "versions": versions}
    try:
        assert store.flagged() == ["pred-1", "pred-2"]
        review = ok_json(invoke(s, "review", "--json"))
        assert review == store.review().to_json()
        assert review["flagged"] == ["pred-1", "pred-2"]
        top = review["entries"][0]
        assert top["count"] == 2 and top["coverage"] == 1.0
        assert top["coverage_text"] == ("This component has 100% coverage: it was used 2 time(s) in "
                                        "producing the flagged outputs")
        human = invoke(s, "review").stdout
        assert "100% · 2/2" in human  # the short figure; the sentence stays in --json
        assert len(ok_json(invoke(s, "review", "-n", "1", "--json"))["entries"]) == 1
        # an unknown name: nothing is flagged at all
        err = _error(invoke(s, "flag", "pred-3", "no-such-output"))
        assert "no-such-output" in err and store.flagged() == ["pred-1", "pred-2"]
        assert ok_json(invoke(s, "unflag", "pred-1", "--json"))["unflagged"] == ["pred-1"]
        assert store.flagged() == ["pred-2"]
        assert ok_json(invoke(s, "unflag", "--all", "--json"))["unflagged"] == ["pred-2"]
        assert store.flagged() == []
        assert "Nothing is flagged" in invoke(s, "review").stdout
    finally:
        store.unflag_all()


def test_review_reports_a_flagged_input_no_run_produced(pipeline: Pipeline) -> None:
    s, store = pipeline.settings, pipeline.store
    try:
        invoke(s, "flag", "rules.yaml", "pred-3")
        review = ok_json(invoke(s, "review", "--json"))
        assert review["unproduced"] == ["rules.yaml"] and review == store.review().to_json()
        human = invoke(s, "review")
        assert human.exit_code == 0 and "no run produced" in human.stdout and "rules.yaml" in human.stdout
    finally:
        store.unflag_all()


def test_notes(pipeline: Pipeline) -> None:
    s, store = pipeline.settings, pipeline.store
    rid = _run_id(pipeline, "feat_a")
    out = ok_json(invoke(s, "notes", rid[:7], "checked by dana: ok", "--json"))
    assert out == {"run": rid, "notes": "checked by dana: ok"}
    assert store.get_run(rid).notes == "checked by dana: ok"
    assert "checked by dana" in invoke(s, "inspect", rid).stdout


# --- errors on real data ---------------------------------------------------------------------
def test_unknown_ids_outputs_components(pipeline: Pipeline) -> None:
    s = pipeline.settings
    for args, name in ((["inspect", "ffffffffff"], "ffffffffff"), (["trace", "nope.csv"], "nope.csv"),
                       (["trace", "--run", "ffffffff"], "ffffffff"), (["impact", "nope.csv"], "nope.csv"),
                       (["history", "nope"], "nope"), (["notes", "ffffffff", "x"], "ffffffff"),
                       (["unflag", "nope.csv"], "nope.csv"),
                       (["recent", "--before", "ffffffff"], "ffffffff")):
        err = _error(invoke(s, *args))
        assert name in err, args
        assert len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1


def test_migrate(fresh: Settings) -> None:
    result = invoke(fresh, "migrate")
    assert result.exit_code == 0, result.output
    assert "schema is up to date" in result.stdout and fresh.database in result.stdout
    from mltrace_otel.store import open_store

    with open_store(fresh) as store:
        assert store.schema_version() >= 1
        store.command("drop", f"DROP DATABASE IF EXISTS `{store.database}`")


def test_console_script_is_installed() -> None:
    import shutil
    import subprocess

    exe = shutil.which("mltrace")
    if exe is None:
        pytest.skip("the mltrace console script is not on PATH")
    out = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("mltrace-otel "), out.stderr


def test_version(pipeline: Pipeline) -> None:
    from mltrace_otel import __version__

    assert ok_json(invoke(None, "version", "--json"))["mltrace_otel"] == __version__
    assert __version__ in invoke(None, "version").stdout


def test_clear_asks_first(fresh: Settings) -> None:
    from mltrace_otel.sdk.component import Component
    from mltrace_otel.store import open_store

    def body() -> None:
        @Component(name="c", owner="o").run(outputs=["x.csv"])
        def f() -> None:
            pass

        f()
        f()

    log_with_sdk(fresh, body)
    declined = invoke(fresh, "clear", input="n\n")
    assert declined.exit_code == 1 and "Delete all 2 run(s)" in declined.output
    with open_store(fresh) as store:
        assert store.count_runs() == 2
    assert ok_json(invoke(fresh, "clear", "--yes", "--json")) == {"cleared": True, "runs": 2}
    with open_store(fresh) as store:
        assert store.count_runs() == 0
        store.command("drop", f"DROP DATABASE IF EXISTS `{store.database}`")


def test_json_is_the_only_stdout(pipeline: Pipeline) -> None:
    """--json output parses as one JSON document for every query command (scripts rely on it)."""
    s = pipeline.settings
    rid = _run_id(pipeline, "predict")
    for args in (["recent"], ["history", "predict"], ["inspect", rid], ["trace", "pred-1"],
                 ["impact", "raw.csv"], ["tag", "model"], ["components"], ["tags"], ["review"],
                 ["stale"], ["version"]):
        result = invoke(s, *args, "--json")
        assert result.exit_code == 0, (args, result.output)
        json.loads(result.stdout)


@pytest.mark.parametrize("cmd", ["server", "collector", "ui", "migrate", "demo"])
def test_service_commands_have_help(cmd: str) -> None:
    result = invoke(None, cmd, "--help")
    assert result.exit_code == 0 and "Usage" in result.stdout


def test_names_with_markup_print_literally(fresh: Settings) -> None:
    """Component and pointer names are data, never rich markup."""
    from mltrace_otel.sdk.component import Component

    def body() -> None:
        @Component(name="[red]odd[/]", owner="[b]me", tags=["[x]"]).run(
            inputs=["in[1].csv"], outputs=["out[/bold].csv"])
        def f() -> None:
            pass

        f()

    log_with_sdk(fresh, body)
    rid = ok_json(invoke(fresh, "recent", "--json"))[0]["id"]
    for args in (["recent"], ["inspect", rid], ["impact", "in[1].csv"], ["tags"], ["tag", "[x]"]):
        result = invoke(fresh, *args)
        assert result.exit_code == 0, (args, result.output)
    assert "[red]odd[/]" in invoke(fresh, "history", "[red]odd[/]").stdout
    assert "out[/bold].csv" in invoke(fresh, "trace", "out[/bold].csv").stdout
    assert "[b]me" in invoke(fresh, "components").stdout
    invoke(fresh, "flag", "out[/bold].csv")
    assert "out[/bold].csv" in invoke(fresh, "review").stdout
    err = invoke(fresh, "history", "[nope]")
    assert err.exit_code == 1 and "[nope]" in err.stderr
