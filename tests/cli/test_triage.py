"""Issue 14 at the terminal: the 3-step pipeline of plain file paths through the real SDK, then
``stale`` (inherited staleness marked, ``--direct``), ``trace`` (versions on edges), ``inspect``
(changes since the previous run), ``flag --run`` and a scoped ``review`` with its why column."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cli_helpers import invoke, log_with_sdk, ok_json

from mltrace_otel.settings import Settings


def _settle(*paths: str) -> None:
    from mltrace_otel.sdk import files

    deadline = time.monotonic() + 5
    while any(files._racy(os.stat(p)) for p in paths):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _pipeline() -> None:
    """extract → data/raw.csv → clean → data/clean.csv → report → report.txt, then extract
    again with new data, and a clean run that fails on a negative amount (after writing)."""
    import mltrace_otel as mltrace

    @mltrace.register("extract", outputs=["data/raw.csv"])
    def extract(rows: str) -> None:
        Path("data/raw.csv").write_text(rows)

    @mltrace.Component("clean", tags=["etl"]).run(input_vars=["src"], output_vars=["dest"])
    def clean(src: str) -> str:
        text = Path(src).read_text()
        dest = "data/clean.csv"
        Path(dest).write_text(text)
        if "-" in text:
            raise ValueError("negative amount")
        return dest

    @mltrace.register("report", inputs=["data/clean.csv"], outputs=["report.txt"])
    def report() -> None:
        Path("report.txt").write_text(Path("data/clean.csv").read_text().upper())

    extract("id,amount\n1,10\n")
    clean("data/raw.csv")
    report()
    _settle("data/raw.csv", "data/clean.csv", "report.txt")
    extract("id,amount\n1,-10\n")
    with pytest.raises(ValueError):
        clean("data/raw.csv")
    report()
    _settle("data/raw.csv")
    extract("id,amount\n1,12\n")


@pytest.fixture
def triage(fresh: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    monkeypatch.chdir(work)
    log_with_sdk(fresh, _pipeline)
    return fresh


def _ids(s: Settings, component: str) -> list[str]:
    return [r["id"] for r in reversed(ok_json(invoke(s, "history", component, "--json")))]


def test_stale_marks_inherited_staleness_and_direct_filters_it(triage: Settings) -> None:
    s = triage
    e1, e2, e3 = _ids(s, "extract")
    c1, c2 = _ids(s, "clean")
    r1, r2 = _ids(s, "report")
    runs = {r["component"]: r for r in ok_json(invoke(s, "stale", "--json"))}
    assert set(runs) == {"clean", "report"}
    assert [x["kind"] for x in runs["clean"]["stale_reasons"]] == ["newer_upstream"]
    assert runs["clean"]["stale"] == [f"extract (ID {e2}) has a newer run now (ID {e3})."]
    kinds = [(x["kind"], x["inherited"]) for x in runs["report"]["stale_reasons"]]
    assert kinds == [("upstream_failed", False), ("upstream_stale", True)]
    assert runs["report"]["stale"][0] == f"clean (ID {c2}) failed: ValueError: negative amount."
    assert runs["report"]["stale"][1] == (
        f"report (ID {r2}) read data/clean.csv from clean (ID {c2}), which is stale: "
        f"extract (ID {e2}) has a newer run now (ID {e3}).")
    human = invoke(s, "stale").stdout
    assert "↳ inherited: report" in human and "⚠ clean (ID" in human
    direct = ok_json(invoke(s, "stale", "--direct", "--json"))
    assert {r["component"] for r in direct} == {"clean", "report"}
    assert all(not x["inherited"] for r in direct for x in r["stale_reasons"])
    assert r1 and c1 and e1


def test_trace_shows_versions_on_edges_and_inspect_shows_changes(triage: Settings) -> None:
    s = triage
    lin = ok_json(invoke(s, "trace", "report.txt", "--json"))
    versions = {e["pointer"]: e["version"] for e in lin["edges"]}
    assert len(versions["data/clean.csv"]) == 32 and len(versions["data/raw.csv"]) == 32
    human = invoke(s, "trace", "report.txt").stdout
    assert f"data/clean.csv @{versions['data/clean.csv'][:8]}" in human
    assert "clean (ID" in human and "failed: ValueError: negative amount." in human
    c1, c2 = _ids(s, "clean")
    run = ok_json(invoke(s, "inspect", c2, "--json"))
    assert run["previous_run"] == c1
    assert {(c["what"], c["name"]) for c in run["changes"]} >= {("input", "data/raw.csv")}
    human = invoke(s, "inspect", c2[:8]).stdout
    assert "changed since the previous run" in human and "input data/raw.csv" in human


def test_review_points_at_the_failed_clean_run_and_can_be_scoped(triage: Settings) -> None:
    s = triage
    _c1, c2 = _ids(s, "clean")
    r1, _r2 = _ids(s, "report")
    assert ok_json(invoke(s, "flag", "report.txt", "--json"))["versions"][0]["run"] == _r2
    rv = ok_json(invoke(s, "review", "--json"))
    top = rv["entries"][0]
    assert top["run"]["id"] == c2 and top["why"][0] == "failed: ValueError: negative amount"
    human = invoke(s, "review").stdout
    assert "Start with clean" in human and "failed: ValueError: negative amount" in human
    assert "100% · 1/1" in human
    only = ok_json(invoke(s, "review", "--component", "extract", "--json"))
    assert [e["run"]["component"] for e in only["entries"]] == ["extract"]
    assert only["scope"] == {"component": "extract"}
    assert ok_json(invoke(s, "review", "--tag", "etl", "--json"))["entries"][0]["run"]["id"] == c2
    assert ok_json(invoke(s, "review", "--since", "1h", "--json"))["entries"]
    # the older report's output is not flagged; flag it by run
    assert not ok_json(invoke(s, "inspect", r1, "--json"))["outputs"][0]["flagged"]
    assert ok_json(invoke(s, "flag", "report.txt", "--run", r1[:8], "--json"))["versions"][0]["run"] == r1
    assert ok_json(invoke(s, "inspect", r1, "--json"))["outputs"][0]["flagged"]
    assert len(ok_json(invoke(s, "review", "--json"))["flagged"]) == 2


def test_flag_bad_input_is_one_line_or_a_report(triage: Settings) -> None:
    s = triage
    for args in (["flag", "report.txt", "--run", "ffffffff"], ["flag", "report.txt", "--run", "zz"],
                 ["unflag", "report.txt", "--run", "ffffffff"],
                 ["flag", "report.txt", "--run", _ids(s, "extract")[0]]):
        result = invoke(s, *args)
        assert result.exit_code == 1, args
        assert len([ln for ln in result.stderr.splitlines() if ln.startswith("error:")]) == 1
    # a name runs only read, never wrote: flagged by name, reported, not fatal
    with_reader = invoke(s, "flag", "data/never.csv")
    assert with_reader.exit_code == 1  # never read or written: a typo, refused as before
    out = invoke(s, "review", "--component", "nope")
    assert out.exit_code == 1 and "nope" in out.stderr
