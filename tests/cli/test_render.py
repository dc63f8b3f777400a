"""Human formatting: durations as people say them, local times with the zone, short ids."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from mltrace_otel.cli.render import coverage_line, format_duration, format_time, short_id


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
