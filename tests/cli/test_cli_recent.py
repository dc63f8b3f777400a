"""``mltrace recent`` with --component/--status/--owner/--tag/--since/--until: the filters search
every run in the store, and the "more:" line pages through the matches.

The store holds one old run of ``legacy`` (owner zed, tag rare, failed), one of ``odd one``
whose owner is a string of quotes and SQL, then NEWER runs of ``noise`` that the filters do not
match (plain OTel spans with explicit times, built by the query tests' helper), whose ids share
their first 12 characters (so a short id in the "more:" line would be ambiguous).
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from cli_helpers import invoke, ok_json, settings_for

# the query tests' run builder: tests/ is on sys.path
from store.query_helpers import Runs

from mltrace_otel.settings import Settings

NEWER = 520
NASTY = "zed'; DROP TABLE mltrace_runs; -- \"q\" {owner:String} %s \\'"


@pytest.fixture(scope="module")
def crowded(store_dir, tmp_path_factory) -> Any:
    from mltrace_otel.store import open_store

    settings = settings_for(store_dir, tmp_path_factory.mktemp("cli_recent") / "mltrace")
    r = Runs()
    ids = {"old": r.run("legacy", [], ["legacy/out.csv"], at=0, owner="zed", tags=["rare"], error="boom"),
           "odd": r.run("odd one", [], ["odd.csv"], at=5, owner=NASTY, tags=["odd"]),
           "noise": [r.run("noise", [], [f"noise/{i}.csv"], at=100 + i, owner="ops",
                           span_id=0xABCDEF0123450000 + i) for i in range(NEWER)][::-1]}
    store = open_store(settings)
    try:
        r.flush(store)
    finally:
        store.close()
    yield settings, ids
    store = open_store(settings)
    try:
        store.command("drop_test_database", f"DROP DATABASE IF EXISTS `{store.database}`")
    finally:
        store.close()


def _ids(settings: Settings, *args: str) -> list[str]:
    return [r["id"] for r in ok_json(invoke(settings, "recent", *args, "--json"))]


def test_each_filter_finds_the_old_match_behind_newer_runs(crowded) -> None:
    s, ids = crowded
    for args in (["--owner", "zed"], ["--tag", "rare"], ["--status", "failed"], ["-c", "legacy"],
                 ["--component", "legacy", "--status", "FAILED"], ["--until", "2026-01-01T00:00:03+00:00"]):
        assert _ids(s, *args) == [ids["old"]], args
    window = ("--since", "2026-01-01T00:00:03+00:00", "--until", "2026-01-01T00:01:00+00:00")
    assert _ids(s, *window) == [ids["odd"]]
    shown = invoke(s, "recent", "--owner", "zed")
    assert shown.exit_code == 0 and ids["old"][:8] in shown.stdout and "legacy" in shown.stdout
    assert "failed" in shown.stdout and "more:" not in shown.stdout
    assert _ids(s, "-n", "3") == ids["noise"][:3]  # no filter: the newest runs, as before


def test_the_more_line_pages_through_every_match_once(crowded) -> None:
    s, ids = crowded
    seen: list[str] = []
    args = ["recent", "-c", "noise", "--status", "ok", "-n", "200"]
    for _ in range(5):
        seen += _ids(s, *args[1:])
        out = invoke(s, *args).stdout
        more = [line for line in out.splitlines() if line.startswith("more: ")]
        if not more:
            break
        typed = shlex.split(more[0].removeprefix("more: "))[1:]  # the command it prints, as typed
        assert typed[:2] == ["--store", s.resolved_store_url]  # the same store as this command's
        args = typed[2:]
        assert args[:7] == ["recent", "-n", "200", "-c", "noise", "--status", "ok"]
    assert seen == ids["noise"]


def test_quotes_and_sql_in_a_filter_are_only_a_value(crowded) -> None:
    s, ids = crowded
    assert _ids(s, "--owner", NASTY) == [ids["odd"]]
    assert _ids(s, "--owner", "zed' OR '1'='1") == []
    none = invoke(s, "recent", "--tag", "') OR 1 --")
    assert none.exit_code == 0 and "No runs match these filters." in none.stdout
    assert len(_ids(s, "-n", "1000")) == NEWER + 2  # nothing was dropped


def test_a_date_alone_as_until_means_through_that_day(crowded) -> None:
    """Every run here started in the first minutes of 2026-01-01 (UTC): ``--until 2026-01-01``
    includes them all, as in the UI and the API (it once meant that day's first instant, so it
    held only the run at exactly midnight), whatever the local zone within a day of UTC."""
    s, ids = crowded
    assert len(_ids(s, "--until", "2026-01-01", "-n", "1000")) == NEWER + 2
    assert _ids(s, "--until", "2025-12-30") == []
    assert _ids(s, "--owner", NASTY, "--until", "2026-01-01") == [ids["odd"]]


def test_bad_filter_values_are_one_error_line(crowded) -> None:
    s, _ids_ = crowded
    bad = invoke(s, "recent", "--status", "broken")
    assert bad.exit_code == 1 and "error: --status 'broken' is not one of ok, failed, stale" in bad.stderr
    when = invoke(s, "recent", "--since", "last week")
    assert when.exit_code == 1 and "--since 'last week' is not a date" in when.stderr


def test_the_more_line_is_one_line_at_80_columns(crowded) -> None:
    """A command to copy and run: never wrapped, whatever the terminal's width."""
    s, _ids_ = crowded
    out = invoke(s, "recent", "-n", "2", "-c", "noise", "--owner", "ops", "--status", "ok",
                 "--since", "2020-01-01", env={"COLUMNS": "80"}).stdout
    (more,) = [line for line in out.splitlines() if line.startswith("more: ")]
    assert len(more) > 80 and "--before " in more and "--since 2020-01-01" in more
    assert "--store " in more


def test_dates_beyond_the_stores_range_mean_everything_or_nothing(crowded) -> None:
    """The store's times end in 2262 (nanoseconds in an Int64): a later --since matches nothing,
    a later --until or an earlier --since everything; a date Python cannot hold is an error."""
    s, ids = crowded
    every = len(ids["noise"]) + 2
    assert _ids(s, "--since", "2299-12-31") == []
    assert len(_ids(s, "--until", "2300-01-01", "-n", "1000")) == every
    assert len(_ids(s, "--since", "1600-01-01", "-n", "1000")) == every
    for value in ("1000000d", "0001-01-01"):
        bad = invoke(s, "recent", "--since", value)
        assert bad.exit_code == 1 and f"--since '{value}' is not a date" in bad.stderr, value
