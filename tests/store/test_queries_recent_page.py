"""recent_page: the newest runs matching filters, searched across the whole store, in pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from query_helpers import BASE, Runs

from mltrace_otel.errors import ConfigError, NotFound

NEWER = 520  # more than a page of the UI's old look-through window (500 runs)


@pytest.fixture
def crowded(store):
    """One old run of each kind of interest, then NEWER newer runs none of the filters match."""
    r = Runs()
    ids = {
        "old_failed": r.run("target", [], ["t.csv"], at=0, owner="zed", tags=["rare"], error="boom"),
        "old_ok": r.run("target", [], ["t2.csv"], at=10, owner="yan", tags=["other"]),
    }
    noise = [r.run("noise", [], [f"n{i}.csv"], at=100 + i, owner="ops", tags=["ops"]) for i in range(NEWER)]
    r.flush(store)
    return ids, noise


def test_filters_find_an_old_match_behind_many_newer_runs(store, crowded):
    ids, noise = crowded
    for where, want in [({"owner": "zed"}, [ids["old_failed"]]),
                        ({"status": "failed"}, [ids["old_failed"]]),
                        ({"tag": "rare"}, [ids["old_failed"]]),
                        ({"component": "target"}, [ids["old_ok"], ids["old_failed"]]),
                        ({"component": "target", "status": "ok"}, [ids["old_ok"]]),
                        ({"until": BASE + timedelta(seconds=50)}, [ids["old_ok"], ids["old_failed"]]),
                        ({"since": BASE + timedelta(seconds=5),
                          "until": (BASE + timedelta(seconds=50)).isoformat()}, [ids["old_ok"]]),
                        ({"owner": "nobody"}, [])]:
        page = store.recent_page(10, **where)
        assert [r.id for r in page.runs] == want, where
        assert not page.more
    page = store.recent_page(3, status="ok")
    assert [r.id for r in page.runs] == noise[::-1][:3] and page.more
    assert all(not r.failed for r in page.runs)


def test_a_tag_given_to_the_component_later_counts_for_its_earlier_runs(store, crowded):
    ids, _noise = crowded
    assert store.recent_page(10, tag="late").runs == ()
    store.tag_component("target", ["late"])
    assert [r.id for r in store.recent_page(10, tag="late").runs] == [ids["old_ok"], ids["old_failed"]]


def test_pages_return_each_matching_run_once_in_order(store, crowded):
    ids, noise = crowded
    every = [*noise[::-1], ids["old_ok"]]
    seen: list[str] = []
    before = None
    while True:
        page = store.recent_page(97, before, status="ok")
        seen += [r.id for r in page.runs]
        if not page.more:
            break
        before = page.runs[-1].id[:10]  # a prefix works too
    assert seen == every
    # the last page knows it is the last
    assert store.recent_page(1, ids["old_ok"], status="ok") == store.recent_page(1, ids["old_failed"])
    assert store.recent_page(1, ids["old_failed"]).runs == ()
    # a cursor that does not match the filter still pages past it
    assert [r.id for r in store.recent_page(5, noise[0], component="target").runs] == [
        ids["old_ok"], ids["old_failed"]]


def test_no_filter_is_recent_with_more(store, crowded):
    _ids, noise = crowded
    page = store.recent_page(4)
    assert list(page.runs) == store.recent(4) and page.more
    assert [r.id for r in store.recent_page(2, noise[-3]).runs] == [noise[-4], noise[-5]]


def test_equal_starts_page_by_id(store):
    r = Runs()
    same = sorted((r.run("tie", [], [f"o{i}"], at=5, owner="o") for i in range(7)), reverse=True)
    r.flush(store)
    seen, before = [], None
    while True:
        page = store.recent_page(3, before, owner="o")
        seen += [x.id for x in page.runs]
        if not page.more:
            break
        before = page.runs[-1].id
    assert seen == same


def test_stale_status_searches_past_the_newest_runs(store):
    r = Runs()
    r.run("extract", [], ["raw.csv"], at=0)
    stale = r.run("use", ["raw.csv"], ["used.csv"], at=40 * 86400)  # its input is 40 days old
    fresh = [r.run("beat", [], [f"b{i}"], at=41 * 86400 + i) for i in range(250)]
    r.flush(store)
    page = store.recent_page(5, status="stale")
    assert [x.id for x in page.runs] == [stale] and not page.more
    assert page.runs[0].stale
    assert store.recent_page(5, fresh[10], status="stale", component="use").runs[0].id == stale


def test_a_stale_search_stops_after_a_bound_and_pages_on_from_there(store, monkeypatch):
    """With few stale runs, one page looks at STALE_SCAN runs, then says where to go on, so a
    page never reads the whole store; following next_before still finds every stale run."""
    from mltrace_otel.store import queries

    r = Runs()
    r.run("extract", [], ["raw.csv"], at=0)
    stale = r.run("use", ["raw.csv"], ["used.csv"], at=40 * 86400)
    fresh = [r.run("beat", [], [f"b{i}"], at=41 * 86400 + i) for i in range(600)]
    r.flush(store)
    monkeypatch.setattr(queries, "STALE_SCAN", 250)
    page = store.recent_page(5, status="stale")
    assert page.runs == () and page.more
    assert page.next_before in fresh  # the last run looked at, not a stale one
    pages = [page]
    while pages[-1].more:
        pages.append(store.recent_page(5, pages[-1].next_before, status="stale"))
    assert [x.id for p in pages for x in p.runs] == [stale]
    assert 2 < len(pages) < 6


def test_user_strings_are_bound_parameters(store, monkeypatch):
    nasty = "o'; DROP TABLE mltrace_runs; -- \"q\" {x:String} \\' %s"
    r = Runs()
    mine = r.run("c " + nasty, [], ["x"], owner=nasty, tags=[nasty])
    other = r.run("plain", [], ["y"], owner="o")
    r.flush(store)
    texts: list[str] = []
    query = store.query
    monkeypatch.setattr(store, "query", lambda name, sql, params=None, **kw: (
        texts.append(sql), query(name, sql, params, **kw))[1])
    for where in ({"owner": nasty}, {"tag": nasty}, {"component": "c " + nasty}):
        assert [x.id for x in store.recent_page(5, **where).runs] == [mine], where
        assert [x.id for x in store.recent_page(5, mine, status="stale", **where).runs] == []
    assert texts and not any("DROP" in t for t in texts)  # the value never reached the SQL text
    monkeypatch.undo()
    assert store.recent_page(5, owner="o'").runs == ()
    assert [x.id for x in store.recent_page(5).runs] == [other, mine]  # the table is intact


def test_bad_arguments(store, crowded):
    with pytest.raises(ConfigError, match="status 'broken' is not one of ok, failed, stale"):
        store.recent_page(5, status="broken")
    with pytest.raises(NotFound):
        store.recent_page(5, "ffffffffffffffff", owner="zed")
    assert store.recent_page(0, owner="zed").runs == ()


def test_bounds_past_the_stores_range_do_not_wrap_around(store, crowded):
    """DateTime64(9) ends in 2262: a later bound is the end, an earlier one the beginning (a
    wrapped-around nanosecond count used to turn 'since 2299' into 'everything')."""
    from datetime import datetime, timezone

    ids, noise = crowded
    assert store.recent_page(5, since="2299-12-31").runs == ()
    assert store.history("target", 5, since="2299-12-31") == []
    far = datetime(2300, 1, 1, tzinfo=timezone.utc)
    assert [r.id for r in store.recent_page(2, until=far).runs] == noise[::-1][:2]
    assert [r.id for r in store.history("target", 5, since=datetime(1600, 1, 1))] == [
        ids["old_ok"], ids["old_failed"]]


def test_many_runs_starting_at_the_same_instant_page_completely(store):
    """A backfill logs many runs with one start time (ComponentRun(start_timestamp=...)). The
    queries order by start alone and cut at a row count, so ties at the cut must not lose runs:
    every page holds the next runs by (start, id), and paging reaches every run once."""
    r = Runs()
    tied = sorted((r.run("backfill", [], [f"b{i}"], at=5, owner="etl") for i in range(30)), reverse=True)
    r.flush(store)
    for ask in (lambda before: store.recent_page(2, before, owner="etl"),
                lambda before: store.recent_page(2, before)):
        seen, before = [], None
        while True:
            page = ask(before)
            seen += [x.id for x in page.runs]
            if not page.more:
                break
            before = page.next_before
        assert seen == tied
    assert [x.id for x in store.history("backfill", 3)] == tied[:3]
    assert [x.id for x in store.recent(3)] == tied[:3]
    assert [x.id for x in store.recent(4, tied[1])] == tied[2:6]
