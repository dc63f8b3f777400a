"""Human formatting: durations as people say them, local times with the zone, short ids."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from rich.console import Console

from mltrace_otel.cli.render import coverage_line, format_duration, format_time, lineage_tree, short_id
from mltrace_otel.store.models import Lineage, LineageEdge, LineageNode, Run, TestResult


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "250ms"),
        (0.0004, "0ms"),
        (2.5, "2.5s"),
        (3.0, "3s"),
        (42.4, "42s"),
        (90, "1m 30s"),
        (120, "2m"),
        (3600, "1h"),
        (3725, "1h 2m 5s"),
        (3605, "1h 0m 5s"),
        (93600, "1d 2h"),
        (-1, "0ms"),
    ],
)
def test_durations_read_as_people_say_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_times_show_in_local_time_with_the_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        dt = datetime(2026, 11, 28, 7, 5, 2, tzinfo=timezone.utc)
        assert format_time(dt) == "2026-11-28 08:05:02 CET"
        assert format_time(dt.replace(tzinfo=None)) == "2026-11-28 08:05:02 CET"  # naive = UTC
        assert format_time(datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)) == "2026-07-01 14:00:00 CEST"
        assert format_time(None) == "-"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_short_ids_and_mltrace_coverage_wording() -> None:
    assert short_id("3f2a9c1d0b7e4a55") == "3f2a9c1d"
    assert coverage_line(3, 0.75) == (
        "This component has 75% coverage: it was used 3 time(s) in producing the flagged outputs")
    assert coverage_line(1, 1 / 3).startswith("This component has 33.3% coverage")


def _run(i: int, component: str = "step", **kw) -> Run:  # noqa: ANN003
    start = datetime(2026, 11, 28, 7, 0, tzinfo=timezone.utc) + timedelta(seconds=i)
    return Run(id=f"{i + 0xa0000000:08x}{i:08x}", trace_id="0" * 32, component=component, start=start,
               end=start + timedelta(seconds=90), **kw)


def _render(tree) -> str:  # noqa: ANN001
    console = Console(width=200, record=True, color_system=None)
    console.print(tree)
    return console.export_text()


def test_tree_expands_each_run_once_and_marks_failures_and_staleness() -> None:
    # diamond: out ← join(3) ← a(1), b(2) ← src(0)
    src, a, b = _run(0, "src", stale=("src (ID x) was run 45 days ago.",)), _run(1, "a"), _run(2, "b")
    join = _run(3, "join", status="ERROR", status_message="boom",
                tests=(TestResult("t", "testX", "after", False, "AssertionError: no"),))
    lineage = Lineage(
        root="out.csv", direction="trace",
        nodes=(LineageNode(0, join), LineageNode(1, b), LineageNode(1, a), LineageNode(2, src)),
        edges=(LineageEdge(b.id, join.id, "b.csv"), LineageEdge(a.id, join.id, "a.csv"),
               LineageEdge(src.id, a.id, "src.csv"), LineageEdge(src.id, b.id, "src.csv")))
    text = _render(lineage_tree(lineage))
    assert text.count(f"src  {src.id[:8]}  2026") == 1 and text.count("(shown above)") == 1
    assert "✗ failed: boom" in text and "✗ test t.testX failed: AssertionError: no" in text
    assert "⚠ src (ID x) was run 45 days ago." in text
    assert "1m 30s" in text and "b.csv ← b" in text


def test_a_very_long_chain_renders_without_recursion_and_says_what_it_cut() -> None:
    runs = [_run(i) for i in range(3000)]  # run i+1 read what run i wrote
    lineage = Lineage(
        root="model_2999", direction="trace",
        nodes=tuple(LineageNode(2999 - i, r) for i, r in enumerate(runs)),
        edges=tuple(LineageEdge(runs[i].id, runs[i + 1].id, f"model_{i}") for i in range(2999)))
    text = _render(lineage_tree(lineage, max_depth=40))
    assert "… 2960 more run(s) deeper than 40 levels" in text


def test_a_run_stale_only_through_its_upstream_says_so_in_every_table() -> None:
    """The status column says "stale" for a direct cause and "stale (inherited)" when only a run
    upstream is stale, as the UI does: review's why column (direct evidence only) then shows
    "—" beside a status that says why."""
    from mltrace_otel.cli.render import review_table, runs_table
    from mltrace_otel.store.models import Review, ReviewEntry, StaleReason

    t = datetime(2026, 11, 28, tzinfo=timezone.utc)
    inherited = StaleReason(kind="upstream_stale", message="clean (ID ab12) is stale", run="ab12",
                            component="clean", inherited=True)
    direct = StaleReason(kind="upstream_failed", message="clean (ID ab12) failed.", run="ab12",
                         component="clean")
    upstream_only = Run(id="1" * 16, trace_id="t", component="report", start=t, end=t,
                        stale=(inherited.message,), stale_reasons=(inherited,))
    own = Run(id="2" * 16, trace_id="t", component="report", start=t, end=t,
              stale=(direct.message, inherited.message), stale_reasons=(direct, inherited))

    def text(table: object) -> str:
        console = Console(width=200, record=True)
        console.print(table)
        return console.export_text()

    runs = text(runs_table([upstream_only, own], width=200)).splitlines()
    (row1,), (row2,) = ([line for line in runs if rid in line] for rid in ("1111", "2222"))
    assert "stale (inherited)" in row1
    assert "stale" in row2 and "inherited" not in row2
    review = text(review_table(Review(flagged=("report.txt",), entries=(
        ReviewEntry(run=upstream_only, count=1, coverage=1.0, why=()),)), width=200))
    (row,) = [line for line in review.splitlines() if "1111" in line]
    assert "stale (inherited)" in row and "—" in row
