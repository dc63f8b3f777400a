"""Tables fit the terminal and no cell splits a word (issue 17): recent, history, stale, review
and components at COLUMNS=80 and 120 on a store with long absolute paths, a long name with no
separator and a long component name. Every token of every rendered cell is checked against the
strings it came from: a whole word, a path cut after a separator, or a name shortened in the
middle with ``…``; headers are whole. Also the CLI's other issue-17 frictions: missing
arguments, help placeholders, ok/failed in --json, near-match hints for unknown outputs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Pipeline, invoke, log_pipeline, log_with_sdk, ok_json, settings_for
from rich.cells import cell_len

from mltrace_otel.cli.fit import Cell, Item, layout, shorten_middle, split_name
from mltrace_otel.cli.render import coverage_short, format_duration, format_time, short_id

LONG_DIR = "/home/analyst/projects/wine-quality/data/processed/"
REPORT = LONG_DIR + "report.txt"
RAW = "/home/analyst/projects/wine-quality/data/raw/wine_quality_red_2026_11_28.csv"
FLAT = "a_very_long_single_segment_output_name_without_any_separator_at_all_v2.parquet"
LONG_COMPONENT = "feature_engineering_for_the_quarterly_wine_quality_report"
HEADERS = {"run", "component", "start", "duration", "status", "inputs", "outputs", "#", "coverage",
           "why", "owner", "tags", "runs", "last run", "description"}
BOX = "│┃"


def _log_long_names() -> None:
    from mltrace_otel.sdk.component import Component

    comp = Component(name=LONG_COMPONENT, owner="analytics-and-reporting-team",
                     description="Builds the quarterly report from the processed wine-quality data, "
                                 "one page per region", tags=["reporting", "quarterly-wine-quality"])

    @comp.run(inputs=[RAW, "raw.csv"], outputs=[REPORT, FLAT])
    def report() -> None:
        pass

    report()


@pytest.fixture(scope="module")
def wide(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """The CLI tests' pipeline plus a run with long names, two outputs flagged."""
    from mltrace_otel.store import open_store

    settings = settings_for(store_dir, tmp_path_factory.mktemp("fit") / "mltrace")
    preds: list[str] = []
    log_with_sdk(settings, lambda: (preds.extend(log_pipeline()), _log_long_names()))
    store = open_store(settings)
    try:
        assert store.count_runs() == 9
        store.flag_output(REPORT)
        store.flag_output("pred-1")
        yield Pipeline(settings, store, preds)
    finally:
        try:
            store.command("drop_test_database", f"DROP DATABASE IF EXISTS `{store.database}`")
        finally:
            store.close()


# --- the checker ------------------------------------------------------------------------------
def _strings(data: Any) -> Iterator[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for v in data.values():
            yield from _strings(v)
    elif isinstance(data, list):
        for v in data:
            yield from _strings(v)


def _runs(data: Any) -> Iterator[dict[str, Any]]:
    if isinstance(data, dict):
        if "trace_id" in data and "start" in data:
            yield data
        for v in data.values():
            yield from _runs(v)
    elif isinstance(data, list):
        for v in data:
            yield from _runs(v)


def _sources(data: Any) -> list[str]:
    """Every string a table may show for ``data`` (the command's --json): the JSON's strings and
    what the table formats from it (short ids, local times, durations, statuses, coverage)."""
    from datetime import datetime

    out = list(_strings(data)) + ["ok", "failed", "stale", "stale (inherited)", "—", "-", "⚑", "⚠",
                                  "↳ inherited:", "stale:"]
    for r in _runs(data):
        start, end = datetime.fromisoformat(r["start"]), datetime.fromisoformat(r["end"])
        out += [short_id(r["id"]), format_time(start), format_duration((end - start).total_seconds())]
    if isinstance(data, dict) and "entries" in data:
        n = len(data["flagged"])
        out += [coverage_short(e["count"], n) for e in data["entries"]] + [str(i) for i in range(1, 50)]
    if isinstance(data, list):
        for c in data:
            if "last_run" in c:
                out += [str(c["runs"]), format_time(datetime.fromisoformat(c["last_run"]))
                        if c["last_run"] else "-"]
    return out


def _allowed(sources: list[str]) -> tuple[set[str], list[str]]:
    """(whole tokens a cell may show, the units a shortened token may come from)."""
    words: set[str] = set()
    units: list[str] = []
    for s in sources:
        for w in s.split():
            units.append(w)
            parts = re.findall(r"[^/\\]*[/\\]+|[^/\\]+$", w)
            for i in range(len(parts)):  # a name cut after separators: any run of its parts
                for j in range(i + 1, len(parts) + 1):
                    words.add("".join(parts[i:j]))
                    units.append("".join(parts[i:j]))
    words |= {w.rstrip(",") for w in words}
    return words, units


def _shortened_ok(token: str, units: list[str]) -> bool:
    head, _, tail = token.partition("…")
    return any(len(u) > len(token) - 1 and u.startswith(head) and u.endswith(tail) for u in units)


def check_no_split_word(output: str, data: Any, width: int) -> int:
    """Assert every cell token of every table in ``output`` is whole; the number of cells seen."""
    words, units = _allowed(_sources(data))
    seen = 0
    for line in output.splitlines():
        assert cell_len(line) <= width, f"wider than {width}: {line!r}"
        if not line or line[0] not in BOX:
            continue
        cells = re.split(f"[{BOX}]", line)[1:-1]
        header = line[0] == "┃"
        for cell in cells:
            text = cell.strip()
            if not text:
                continue
            seen += 1
            if header:
                assert text in HEADERS, f"header cut: {text!r} in {line!r}"
                continue
            for token in text.split():
                bare = token.rstrip(",")
                if token in words or bare in words:
                    continue
                if "…" in bare and _shortened_ok(bare, units):
                    continue
                raise AssertionError(f"a cell splits a word: {token!r} in {line!r}")
    return seen


COMMANDS = [("recent", "-n", "20"), ("history", LONG_COMPONENT), ("history", "train"), ("stale",),
            ("review",), ("components",)]


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a[:2]) for a in COMMANDS])
def test_no_cell_splits_a_word(wide: Pipeline, args: tuple[str, ...], columns: int) -> None:
    s = wide.settings
    data = ok_json(invoke(s, *args, "--json"))
    result = invoke(s, *args, env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    assert check_no_split_word(result.stdout, data, columns) > 5, result.stdout


def test_narrow_tables_drop_low_value_columns_and_keep_the_names(wide: Pipeline) -> None:
    s = wide.settings
    narrow = invoke(s, "recent", "-n", "20", env={"COLUMNS": "80"}).stdout
    wide_out = invoke(s, "recent", "-n", "20", env={"COLUMNS": "120"}).stdout
    head80 = next(ln for ln in narrow.splitlines() if ln.startswith("┃"))
    head120 = next(ln for ln in wide_out.splitlines() if ln.startswith("┃"))
    assert "duration" not in head80 and "duration" in head120  # the first to go
    for name in ("run", "component", "status", "outputs"):
        assert f" {name} " in head80
    # a long path wraps after its separators, a flat long name is shortened in the middle
    assert "report.txt ⚑" in wide_out and "/home/analyst/" in wide_out
    assert "…" in narrow and FLAT not in narrow
    lines = narrow.splitlines()
    assert any("report.txt" in ln for ln in lines)


def test_layout_units() -> None:
    assert split_name(RAW, 30) == ["/home/analyst/projects/", "wine-quality/data/raw/",
                                   "wine_quality_re…2026_11_28.csv"]
    assert split_name("data/raw.csv", 30) == ["data/raw.csv"]
    assert shorten_middle("wine_features_f94a_v3.csv", 12) == "wine_f…3.csv"
    assert cell_len(shorten_middle("数据文件名称很长的数据文件.csv", 10)) <= 10
    text = layout(Cell.names([Item("pred-1", tail=((" ⚑", "red"),)), Item("pred-2"), Item("pred-3")]), 16)
    assert text.plain.split("\n") == ["pred-1 ⚑,", "pred-2, pred-3"]
    assert layout(Cell.words("was run 45 days ago."), 8).plain.split("\n") == ["was run", "45 days", "ago."]


TREES = [("trace", REPORT), ("trace", FLAT), ("impact", RAW), ("impact", "raw.csv")]


@pytest.mark.parametrize("columns", [60, 80])
@pytest.mark.parametrize("args", TREES, ids=[" ".join(a) for a in TREES])
def test_no_tree_line_splits_a_word(wide: Pipeline, args: tuple[str, ...], columns: int) -> None:
    """trace and impact trees: every token at COLUMNS=80 (and 60) is a whole token of the same
    tree drawn with room for everything, a path cut after a separator, or a name shortened in
    the middle with ``…``; no line is wider than the terminal."""
    s = wide.settings
    unbounded = invoke(s, *args, env={"COLUMNS": "3000"})
    assert unbounded.exit_code == 0, unbounded.output
    words, units = _allowed(unbounded.stdout.splitlines())
    result = invoke(s, *args, env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) > len(unbounded.stdout.splitlines())  # it did wrap
    for line in lines:
        assert cell_len(line) <= columns, f"wider than {columns}: {line!r}"
        for token in line.split():
            bare = token.rstrip(",")
            if token in words or bare in words or ("…" in bare and _shortened_ok(bare, units)):
                continue
            raise AssertionError(f"a tree line splits a word: {token!r} in {line!r}")


# --- the other frictions ----------------------------------------------------------------------
def test_json_status_is_ok_or_failed_with_the_otel_code_beside(wide: Pipeline) -> None:
    runs = ok_json(invoke(wide.settings, "recent", "-n", "20", "--json"))
    assert {r["status"] for r in runs} == {"ok", "failed"}
    for r in runs:
        assert r["otel_status"] in ("OK", "ERROR", "UNSET")
        assert (r["status"] == "failed") == (r["otel_status"] == "ERROR")
    traced = ok_json(invoke(wide.settings, "trace", "model_bad.pkl", "--json"))
    assert [n["run"]["status"] for n in traced["nodes"]][0] == "failed"  # nested runs too
    from mltrace_otel.store.models import Lineage, Run

    assert Run.from_json(runs[0]) == wide.store.recent(1)[0]
    assert Lineage.from_json(traced).to_json() == traced


@pytest.mark.parametrize("args", [("inspect",), ("impact",), ("trace",), ("history",), ("tag",),
                                  ("flag",), ("notes", "abcd"), ("unflag",)])
def test_a_missing_argument_is_one_error_line_and_exit_1(tmp_settings, args: tuple[str, ...]) -> None:  # noqa: ANN001
    result = invoke(tmp_settings, *args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: missing argument "), result.stderr
    assert lines[1].startswith("hint: usage: mltrace "), result.stderr
    assert "╭" not in result.output and "Traceback" not in result.output


def test_help_has_no_bool_placeholders_or_braces() -> None:
    from typer.main import get_command

    from mltrace_otel.cli.app import app

    for name in [None, *get_command(app).commands]:
        out = invoke(None, *([name] if name else []), "--help").stdout
        assert "<bool>" not in out and "<str>" not in out and "{" not in out, (name, out)



def test_the_command_list_shows_each_summary_as_one_sentence() -> None:
    """`mltrace --help` lists each command with its docstring's first paragraph, wrapped only by
    the terminal's width: the docstring's own line breaks used to cut sentences there
    ("(the run that" / "wrote it last)")."""
    from typer.main import get_command

    from mltrace_otel.cli.app import app

    out = invoke(None, "--help", env={"COLUMNS": "400"}).stdout
    for name, command in get_command(app).commands.items():
        first = " ".join((command.help or "").strip().split("\n\n")[0].split())
        line = next((ln for ln in out.splitlines() if ln.strip("│ ").startswith(f"{name} ")), "")
        assert first and first in line, (name, first, line)

def test_unknown_output_suggests_near_matches(wide: Pipeline) -> None:
    s = wide.settings
    for args in (("trace", "report.txt"), ("impact", "report.txt"), ("flag", "report.txt"),
                 ("trace", "old/dir/report.txt")):
        result = invoke(s, *args)
        assert result.exit_code == 1, result.output
        err = result.stderr
        assert "no run read or wrote" in err and f"did you mean {REPORT!r}?" in err, (args, err)
    err = invoke(s, "trace", "nothing-like-it.bin").stderr
    assert "did you mean" not in err and "mltrace recent" in err


def test_demo_try_next_is_not_hard_wrapped_when_piped(fresh) -> None:  # noqa: ANN001
    result = invoke(fresh, "demo", env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    tries = out.split("Try next:", 1)[1].strip("\n").splitlines()
    assert all(ln.startswith("  mltrace") for ln in tries), tries  # one line each: nothing wrapped
    assert any("what the flagged predictions have in common" in ln for ln in tries)
    assert json.loads(invoke(fresh, "recent", "--json").stdout)
