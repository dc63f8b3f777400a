"""Control characters in user strings never reach the terminal raw (issue 13, item 5).

A store holds runs whose component name, owner, description, tags, inputs, outputs, notes, test
name and message, exception and code snapshot carry a screen clear (``ESC [2J``), a window
title (``ESC ]0;title BEL``), a one-byte C1 CSI (U+009B), a right-to-left override (U+202E)
and rich markup (``[bold red]x[/]``). Every command's stdout (and the error lines on stderr)
must hold none of those characters raw and must show each escaped (``\\x1b[2J``), markup
included, so the user still sees the name; ``--json`` stays JSON that round-trips the data.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cli_helpers import invoke, log_with_sdk, settings_for

from mltrace_otel.cli.render import clean, escape, json_safe
from mltrace_otel.settings import Settings

BAD = "<\x1b[2J|\x1b]0;title\x07|\x9b31m|\u202e|[bold red]x[/]>"
"""Everything a hostile (or just broken) name can carry."""

SHOWN = r"<\x1b[2J|\x1b]0;title\x07|\x9b31m|\u202e|[bold red]x[/]>"
"""How BAD must be shown: each control character as a Python escape, the markup as typed."""

Bad = tuple[Settings, dict[str, str]]
"""The ``bad`` fixture: settings on the store, run ids by step."""

RAW = ("\x1b", "\x07", "\x9b", "\u202e")
"""Characters that must never be written."""

WIDE = {"COLUMNS": "3000"}  # no folding: every name is on one line, so it can be searched for

NAMES = {
    "ingest": f"ingest{BAD}", "clean": f"clean{BAD}", "boom": f"boom{BAD}",
    "raw": f"raw{BAD}.csv", "out": f"out{BAD}.csv", "boom_out": f"boom{BAD}.pkl",
    "owner": f"owner{BAD}", "desc": f"desc{BAD}", "tag": f"tag{BAD}", "test": f"test{BAD}",
}


def _log_bad_pipeline() -> None:
    """ingest (40 days ago, notes) → raw → clean (a failing test) → out → boom (raises)."""
    from mltrace_otel.sdk.component import Component
    from mltrace_otel.sdk.run import ComponentRun, log_component_run
    from mltrace_otel.sdk.testing import Test

    class BadTest(Test):
        def __init__(self) -> None:
            super().__init__(name=NAMES["test"])

        def testRows(self) -> None:
            raise AssertionError(f"message{BAD}")

    start = datetime.now(timezone.utc) - timedelta(days=40)
    cr = ComponentRun(NAMES["ingest"], notes=f"notes{BAD}\nsecond line", start_timestamp=start,
                      end_timestamp=start + timedelta(seconds=5), code_snapshot=f"x = '{BAD}'\n")
    cr.add_output(NAMES["raw"])
    log_component_run(cr)

    clean_c = Component(name=NAMES["clean"], owner=NAMES["owner"], description=NAMES["desc"],
                        tags=[NAMES["tag"]], afterTests=[BadTest])
    boom_c = Component(name=NAMES["boom"], owner=NAMES["owner"], tags=[NAMES["tag"]])

    @clean_c.run(inputs=[NAMES["raw"]], outputs=[NAMES["out"]])
    def clean_fn() -> None:
        pass

    @boom_c.run(inputs=[NAMES["out"]], outputs=[NAMES["boom_out"]])
    def boom_fn() -> None:
        raise ValueError(f"exception{BAD}")

    with pytest.raises(AssertionError):
        clean_fn()
    with pytest.raises(ValueError):
        boom_fn()


@pytest.fixture(scope="module")
def bad(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bad]:
    """Settings on a store holding the bad pipeline; its run ids by step; ``out`` flagged."""
    from mltrace_otel.store import open_store

    settings = settings_for(store_dir, tmp_path_factory.mktemp("ctl") / "mltrace")
    log_with_sdk(settings, _log_bad_pipeline)
    store = open_store(settings)
    try:
        assert store.count_runs() == 3
        ids = {step: store.history(NAMES[step], 1)[0].id for step in ("ingest", "clean", "boom")}
        store.flag(NAMES["out"])
        yield settings, ids
    finally:
        try:
            store.command("drop_test_database", f"DROP DATABASE IF EXISTS `{store.database}`")
        finally:
            store.close()


def assert_safe(text: str) -> None:
    """No control or bidi character the terminal would act on, in decoded output."""
    for ch in RAW:
        assert ch not in text, f"raw {ch!r} in output:\n{text}"


def _ok(settings: Settings, *args: str, env: dict[str, str | None] | None = None) -> str:
    result = invoke(settings, *args, env={**WIDE, **(env or {})})
    assert result.exit_code == 0, result.output
    assert_safe(result.stdout)
    assert_safe(result.stderr)
    return result.stdout


# --- the escaping function -------------------------------------------------------------------
def test_clean_shows_every_control_and_bidi_character_escaped() -> None:
    assert clean(BAD) == SHOWN
    assert clean("a\tb\nc\rd\x00\x7f\x85") == r"a\tb\nc\rd\x00\x7f\x85"
    assert clean("\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u200e\u200f\u061c") == (
        r"\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
    assert clean("café ✓ 日本 C:\\path") == "café ✓ 日本 C:\\path"  # printable text is unchanged


def test_clean_multiline_keeps_lines_and_tabs_only() -> None:
    assert clean("a\r\n\tb\x1b[2J\rc", multiline=True) == "a\n\tb\\x1b[2J\\rc"


def test_escape_also_escapes_rich_markup() -> None:
    from rich.console import Console

    console = Console(width=200, no_color=True, highlight=False)
    with console.capture() as cap:
        console.print(f"[bold]{escape(BAD)}[/bold]")
    assert cap.get().strip() == SHOWN


def test_json_safe_escapes_what_json_dumps_leaves_raw_and_round_trips() -> None:
    data = {"name": BAD + "\x7f\x85é", "list": [BAD]}
    text = json_safe(json.dumps(data, indent=2, ensure_ascii=False))
    assert_safe(text)
    assert "\x7f" not in text and "\x85" not in text
    assert "é" in text  # readable non-ASCII stays
    assert json.loads(text) == data


# --- every command ---------------------------------------------------------------------------
def test_recent_history_and_tag(bad: Bad) -> None:
    s, _ = bad
    out = _ok(s, "recent")
    for key in ("ingest", "clean", "boom", "raw", "out", "boom_out"):
        assert NAMES[key].replace(BAD, SHOWN) in out, key
    out = _ok(s, "history", NAMES["clean"])
    assert f"History of clean{SHOWN}" in out and f"out{SHOWN}.csv" in out
    out = _ok(s, "tag", NAMES["tag"])
    assert f"Runs tagged tag{SHOWN}" in out and f"boom{SHOWN}" in out


def test_inspect_shows_every_field_escaped(bad: Bad) -> None:
    s, ids = bad
    out = _ok(s, "inspect", ids["clean"])
    for text in (f"clean{SHOWN}", f"owner{SHOWN}", f"desc{SHOWN}", f"tag{SHOWN}", f"raw{SHOWN}.csv",
                 f"out{SHOWN}.csv", f"test{SHOWN}", f"message{SHOWN}",
                 f"stale: ingest{SHOWN} (ID {ids['ingest']}) was run 40 days ago."):
        assert text in out, text
    out = _ok(s, "inspect", ids["boom"])
    assert f"exception{SHOWN}" in out
    out = _ok(s, "inspect", ids["ingest"])
    assert f"notes{SHOWN}" in out and "second line" in out  # notes keep their lines
    assert f"x = '{SHOWN}'" in out  # the code snapshot


def test_inspect_on_a_terminal_writes_only_its_own_styles(bad: Bad) -> None:
    """With colours forced (as on a terminal), the only escape sequences are rich's SGR styles."""
    s, ids = bad
    result = invoke(s, "inspect", ids["clean"], env={**WIDE, "NO_COLOR": None, "TERM": "xterm-256color",
                                                     "FORCE_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert "\x1b[" in result.stdout  # styled: the check below is not vacuous
    unstyled = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    assert_safe(unstyled)
    assert f"owner{SHOWN}" in unstyled


def test_components_and_tags(bad: Bad) -> None:
    s, _ = bad
    out = _ok(s, "components")
    for text in (f"clean{SHOWN}", f"owner{SHOWN}", f"tag{SHOWN}", f"desc{SHOWN}", f"boom{SHOWN}"):
        assert text in out, text
    assert _ok(s, "tags").strip() == f"tag{SHOWN}"
    out = _ok(s, "components", "--owner", NAMES["owner"], "--tag", NAMES["tag"])
    assert f"clean{SHOWN}" in out


def test_trace_and_impact(bad: Bad) -> None:
    s, ids = bad
    out = _ok(s, "trace", NAMES["boom_out"])
    for text in (f"boom{SHOWN}.pkl", f"out{SHOWN}.csv", f"clean{SHOWN}", f"ingest{SHOWN}",
                 f"failed: ValueError: exception{SHOWN}",
                 f"test test{SHOWN}.testRows failed: AssertionError: message{SHOWN}",
                 f"ingest{SHOWN} (ID {ids['ingest']}) was run 40 days ago."):
        assert text in out, out
    assert f"clean{SHOWN}" in _ok(s, "trace", "--run", ids["boom"])
    out = _ok(s, "impact", NAMES["raw"])
    for text in (f"raw{SHOWN}.csv", f"clean{SHOWN}", f"boom{SHOWN}", f"writes out{SHOWN}.csv",
                 "2 output(s) affected: "):
        assert text in out, out


def test_stale_review_and_flag(bad: Bad) -> None:
    s, ids = bad
    out = _ok(s, "stale")
    assert f"clean{SHOWN}" in out and f"ingest{SHOWN} (ID {ids['ingest']}) was run 40 days ago." in out
    out = _ok(s, "review")
    for text in (f"flagged output(s): out{SHOWN}.csv", f"clean{SHOWN}", f"ingest{SHOWN}",
                 f"Start with clean{SHOWN}"):
        assert text in out, text
    assert "1 output(s)" in _ok(s, "flag", NAMES["out"])
    assert "1 output(s)" in _ok(s, "unflag", NAMES["boom_out"])  # an output never flagged
    _ok(s, "flag", NAMES["out"])


def test_notes_set_from_the_command_line(bad: Bad) -> None:
    s, ids = bad
    _ok(s, "notes", ids["boom"], f"typed{BAD}")
    assert f"typed{SHOWN}" in _ok(s, "inspect", ids["boom"])


def test_error_and_friendly_messages_quoting_user_input(bad: Bad) -> None:
    s, _ = bad
    for args in (("history", f"nope{BAD}"), ("trace", f"nope{BAD}"), ("flag", f"nope{BAD}"),
                 ("impact", f"nope{BAD}"), ("tag", f"nope{BAD}"), ("inspect", "ab\x1b[2J")):
        result = invoke(s, *args, env=WIDE)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith("error: "), result.stderr
        assert_safe(result.stderr)
        assert_safe(result.stdout)
        assert "\\x1b" in result.stderr, result.stderr  # the user can still see what was looked up
    # zero results quote the input too (exit 0)
    out = _ok(s, "history", NAMES["clean"], "--until", "2000-01-01")
    assert f"clean{SHOWN} has no runs" in out, out


def test_json_is_json_and_writes_no_raw_control_character(bad: Bad) -> None:
    s, ids = bad
    for args in (("recent",), ("inspect", ids["clean"]), ("components",), ("tags",),
                 ("trace", NAMES["boom_out"]), ("impact", NAMES["raw"]), ("stale",), ("review",),
                 ("history", NAMES["clean"]), ("flag", NAMES["out"])):
        result = invoke(s, *args, "--json")
        assert result.exit_code == 0, result.output
        assert_safe(result.stdout)
        json.loads(result.stdout)
    run = json.loads(invoke(s, "inspect", ids["clean"], "--json").stdout)
    assert run["component"] == NAMES["clean"] and run["owner"] == NAMES["owner"]  # data unchanged
    assert run["tags"] == [NAMES["tag"]] and run["tests"][0]["name"] == NAMES["test"]


# --- a real process, stdout through a pipe ---------------------------------------------------
def test_a_real_mltrace_process_writes_no_control_character_to_a_pipe(tmp_path: Path) -> None:
    """``python -m mltrace_otel.cli.app`` on its own embedded store (MLTRACE_DIR), stdout read as
    bytes through a pipe, as ``mltrace recent | less`` would see it."""
    mltrace_dir = tmp_path / "mltrace"
    mltrace_dir.mkdir()
    log_with_sdk(Settings.from_env({}, mltrace_dir=mltrace_dir), _log_bad_pipeline)  # into the spool
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLTRACE_", "OTEL_", "NO_COLOR"))}
    env.update(MLTRACE_DIR=str(mltrace_dir), COLUMNS="3000", PYTHONIOENCODING="utf-8")

    def mltrace(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", *args], env=env,
                              capture_output=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        assert b"\x1b" not in proc.stdout and b"\x07" not in proc.stdout, proc.stdout
        assert b"\x1b" not in proc.stderr, proc.stderr
        text = proc.stdout.decode("utf-8")  # strict: the bytes are valid UTF-8
        assert_safe(text)
        return text

    out = mltrace("recent")  # opens the embedded store, drains the spool
    assert f"clean{SHOWN}" in out and f"out{SHOWN}.csv" in out
    data = json.loads(mltrace("recent", "--json"))
    assert {r["component"] for r in data} == {NAMES["ingest"], NAMES["clean"], NAMES["boom"]}
