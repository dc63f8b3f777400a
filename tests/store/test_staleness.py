"""Staleness at query time: mltrace's two rules with its exact wording, plus newer-upstream."""

from __future__ import annotations

from query_helpers import DAY_S, Runs


def test_fresher_run_message_in_the_right_run(store):
    r = Runs()
    a = r.run("component_1", [], ["features"], at=10)
    r.run("component_1", [], ["other"], at=20)  # a fresher run of component_1, before the reader
    reader = r.run("component_2", ["features"], ["preds"], at=30)
    r.flush(store)
    run = store.get_run(reader)
    assert run.dependencies == (a,)
    assert run.stale == (f"component_1 (ID {a}) has 1 fresher run that began before this "
                         "component run started.",)
    assert store.get_run(a).stale == ()


def test_fresher_runs_plural(store):
    r = Runs()
    a = r.run("component_1", [], ["features"], at=10)
    r.run("component_1", [], ["x"], at=11)
    r.run("component_1", [], ["y"], at=12)
    reader = r.run("component_2", ["features"], ["preds"], at=30)
    r.flush(store)
    assert store.get_run(reader).stale == (
        f"component_1 (ID {a}) has 2 fresher runs that began before this component run started.",)


def test_old_input_message_uses_the_runs_own_threshold(store):
    r = Runs()
    a = r.run("component_1", [], ["features"], at=0)
    old = r.run("component_2", ["features"], ["p1"], at=40 * DAY_S + 5)  # default 30 days
    tight = r.run("component_3", ["features"], ["p2"], at=2 * DAY_S + 5, threshold_s=DAY_S)
    loose = r.run("component_4", ["features"], ["p3"], at=2 * DAY_S + 6)
    r.flush(store)
    runs = {x.id: x for x in store.get_runs([old, tight, loose])}
    assert runs[old].stale == (f"component_1 (ID {a}) was run 40 days ago.",)
    assert runs[tight].stale == (f"component_1 (ID {a}) was run 2 days ago.",)
    assert runs[loose].stale == ()


def test_newer_upstream_run_now_makes_a_run_stale_later(store):
    r = Runs()
    a = r.run("component_1", [], ["features"], at=10)
    reader = r.run("component_2", ["features"], ["preds"], at=20)
    r.flush(store)
    assert store.get_run(reader).stale == ()  # fresh when it ran ...
    b = r.run("component_1", [], ["features"], at=30)
    r.flush(store)
    # ... stale now: computed at query time, never frozen at log time
    assert store.get_run(reader).stale == (f"component_1 (ID {a}) has a newer run now (ID {b}).",)
    assert [x.id for x in store.stale_runs()] == [reader]
    assert store.stale_runs("component_1") == []


def test_staleness_shows_in_traces_and_history(store):
    r = Runs()
    a = r.run("component_1", [], ["features"], at=10)
    r.run("component_1", [], ["other"], at=20)
    reader = r.run("component_2", ["features"], ["preds"], at=30)
    r.flush(store)
    node = store.trace("preds").nodes[0].run
    assert node.id == reader and len(node.stale) == 1 and a in node.stale[0]
    assert store.history("component_2")[0].stale == node.stale


def test_old_input_message_in_hours_under_a_one_hour_threshold(store):
    r = Runs()
    a = r.run("component_1", [], ["features"], at=0)
    hourly = r.run("component_2", ["features"], ["p1"], at=2 * 3600 + 5, threshold_s=3600)
    one = r.run("component_3", ["features"], ["p2"], at=3600 + 5, threshold_s=1800)
    r.flush(store)
    runs = {x.id: x for x in store.get_runs([hourly, one])}
    assert runs[hourly].stale == (f"component_1 (ID {a}) was run 2 hours ago.",)
    assert runs[one].stale == (f"component_1 (ID {a}) was run 1 hour ago.",)  # singular


def test_old_input_message_in_minutes_under_a_90_second_threshold(store):
    r = Runs()
    a = r.run("component_1", [], ["features"], at=0)
    five = r.run("component_2", ["features"], ["p1"], at=5 * 60, threshold_s=90)
    one = r.run("component_3", ["features"], ["p2"], at=100, threshold_s=90)
    fresh = r.run("component_4", ["features"], ["p3"], at=80, threshold_s=90)
    r.flush(store)
    runs = {x.id: x for x in store.get_runs([five, one, fresh])}
    assert runs[five].stale == (f"component_1 (ID {a}) was run 5 minutes ago.",)
    assert runs[one].stale == (f"component_1 (ID {a}) was run 1 minute ago.",)
    assert runs[fresh].stale == ()


def test_age_message_units_and_the_day_wording_kept():
    from mltrace_otel.store.staleness import age_message

    assert age_message("c", "ab", 45, 30) == "c (ID ab) was run 45 seconds ago."
    assert age_message("c", "ab", 3 * DAY_S + 7200, 3600) == "c (ID ab) was run 3 days ago."
    assert age_message("c", "ab", DAY_S + 60, 3600) == "c (ID ab) was run 1 day ago."
    # a threshold of a day or more: mltrace's exact wording, whole days, "days" always
    assert age_message("c", "ab", 1.5 * DAY_S, DAY_S) == "c (ID ab) was run 1 days ago."
    assert age_message("c", "ab", 40 * DAY_S + 5, 30 * DAY_S) == "c (ID ab) was run 40 days ago."
