"""Hand-built runs with times a span cannot carry (before 1970, after 2262-04-11) are clamped
per run with one warning each; the valid runs batched with them land, in the spool and
through a real collector (issue 13: a 1900 start failed its whole export batch)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sdk_helpers import spooled_spans

import mltrace_otel as mltrace
from mltrace_otel.collector.server import Collector
from mltrace_otel.sdk import export
from mltrace_otel.sdk.exporters import MAX_TIME_NS
from mltrace_otel.settings import Settings
from tests.collector.conftest import collector_settings, stored_runs
from tests.collector.live import LIVE

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
OK_START = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def _log_three_runs() -> dict[str, str]:
    """{component: run id} of three runs logged in one export batch: a valid one, one starting
    in 1900, one in the year 3000."""
    ids = {}
    for name, start, end in (
        ("ok_run", OK_START, OK_START + timedelta(minutes=5)),
        ("old_run", datetime(1900, 1, 1), OK_START),  # naive: taken as UTC
        ("future_run", datetime(3000, 1, 1, tzinfo=timezone.utc),
         datetime(3000, 1, 1, 1, tzinfo=timezone.utc)),
    ):
        cr = mltrace.ComponentRun(name, start_timestamp=start, end_timestamp=end,
                                  inputs=[f"in/{name}.csv"], outputs=[f"out/{name}.csv"])
        ids[name] = mltrace.log_component_run(cr)
    return ids


def _clamp_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "mltrace_otel.sdk" and r.levelno == logging.WARNING and "outside" in r.getMessage()]


def _assert_warned_once_per_bad_run(caplog: pytest.LogCaptureFixture) -> None:
    warned = _clamp_warnings(caplog)
    assert len(warned) == 2, warned
    old = next(m for m in warned if "'old_run'" in m)
    future = next(m for m in warned if "'future_run'" in m)
    assert "1900-01-01" in old and "1970-01-01T00:00:00Z" in old  # the bad time, and what was kept
    assert "3000-01-01" in future and "2262-04-11" in future
    assert not any("'ok_run'" in m for m in warned)


def test_runs_outside_the_span_time_range_are_clamped_and_their_batch_reaches_the_spool(
        sdk_settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    export.configure(settings=sdk_settings)  # background batches: the three share one
    caplog.set_level(logging.WARNING, logger="mltrace_otel.sdk")
    ids = _log_three_runs()
    assert mltrace.flush()

    stats = mltrace.delivery_stats()
    assert (stats.spooled, stats.dropped) == (3, 0), stats
    spooled = spooled_spans(sdk_settings.spool_dir)
    assert set(spooled) == set(ids.values())
    _assert_warned_once_per_bad_run(caplog)


def test_runs_outside_the_span_time_range_land_in_the_store_with_clamped_times(
        tmp_settings: Settings, store: Any, caplog: pytest.LogCaptureFixture) -> None:
    export.configure(settings=tmp_settings)
    caplog.set_level(logging.WARNING, logger="mltrace_otel.sdk")
    ids = _log_three_runs()
    assert mltrace.flush()
    assert store.drain_spool() == 3

    ok, old, future = (store.get_run(ids[n]) for n in ("ok_run", "old_run", "future_run"))
    assert ok.start == OK_START
    assert old.start == EPOCH and old.end == OK_START  # start clamped, end kept
    assert [p.name for p in old.inputs] == ["in/old_run.csv"]
    assert [p.name for p in old.outputs] == ["out/old_run.csv"]
    max_time = EPOCH + timedelta(microseconds=MAX_TIME_NS // 1000)
    assert future.start >= max_time - timedelta(seconds=1) and future.end >= future.start
    assert [p.name for p in future.outputs] == ["out/future_run.csv"]
    _assert_warned_once_per_bad_run(caplog)


def test_runs_outside_the_span_time_range_land_through_a_real_collector(
        tmp_settings: Settings, store: Any, caplog: pytest.LogCaptureFixture) -> None:
    with Collector(collector_settings(tmp_settings), store, drain_every_s=0) as c:
        LIVE.append(c)  # stored_runs flushes it first
        try:
            endpoint = f"http://{c.addresses.host}:{c.addresses.http_port}"
            export.configure(settings=tmp_settings.replace(otlp_endpoint=endpoint, export="otlp"))
            caplog.set_level(logging.WARNING, logger="mltrace_otel.sdk")
            ids = _log_three_runs()
            assert mltrace.flush()
            stats = mltrace.delivery_stats()
            assert (stats.exported, stats.spooled, stats.dropped) == (3, 0, 0), stats
            assert stored_runs(store, list(ids.values())) == {v: k for k, v in ids.items()}
        finally:
            LIVE.remove(c)
    _assert_warned_once_per_bad_run(caplog)


def test_a_span_with_unencodable_times_is_dropped_alone(sdk_settings: Settings) -> None:
    """Defence in depth: a span that reaches the exporter with a pre-1970 time (not through
    log_component_run, which clamps) is dropped and counted; its batch is delivered."""
    export.configure(settings=sdk_settings)
    tracer = export.tracer()
    good = tracer.start_span("good", attributes={"mltrace.component.name": "good"})
    good.end()
    bad = tracer.start_span("bad", attributes={"mltrace.component.name": "bad"}, start_time=-5)
    with pytest.warns(RuntimeWarning, match="outside 1970-2262"):
        bad.end(end_time=10)
        assert mltrace.flush()
    stats = mltrace.delivery_stats()
    assert (stats.spooled, stats.dropped) == (1, 1), stats
    assert [s["name"] for s in spooled_spans(sdk_settings.spool_dir).values()] == ["good"]
