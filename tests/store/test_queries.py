"""Runs, ids, history, recent, inspect, components, tags, pointers (issue 3 item 4)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from query_helpers import BASE, Runs

from mltrace_otel.errors import AmbiguousRunId, NotFound


def test_run_id_prefixes(store):
    r = Runs()
    a = r.run("c", [], ["x"], span_id=0xABCD000000000001)
    b = r.run("c", [], ["y"], span_id=0xABCD000000000002)
    r.flush(store)
    assert store.resolve_run_id("abcd000000000001") == a
    assert store.resolve_run_id("abcd000000000002"[:16]) == b
    with pytest.raises(AmbiguousRunId) as e:
        store.get_run("abcd")
    assert sorted(e.value.candidates) == sorted([a, b])
    with pytest.raises(NotFound):
        store.get_run("abc")  # shorter than 4
    with pytest.raises(NotFound):
        store.get_run("zzzz")  # not hex
    with pytest.raises(NotFound):
        store.get_run("ffff")
    assert store.get_run("ABCD000000000002").id == b  # case does not matter


def test_a_prefix_matching_more_runs_than_listed_says_so(store):
    """An ambiguous prefix lists at most 50 candidates; with more, the message says "more than
    50", not a count that is only the cap."""
    r = Runs()
    for k in range(60):
        r.run("c", [], [f"o{k}"], span_id=0xBEEF000000000000 + k)
    for k in range(3):
        r.run("c", [], [f"p{k}"], span_id=0xCAFE000000000000 + k)
    r.flush(store)
    for prefix, count, more in (("beef", 50, True), ("cafe", 3, False)):
        with pytest.raises(AmbiguousRunId) as e:
            store.get_run(prefix)
        assert len(e.value.candidates) == count and e.value.more is more
        assert f"matches {'more than ' if more else ''}{count} runs" in e.value.message


def test_inspect_has_code_notes_tests_and_exception(store):
    r = Runs()
    rid = r.run("train", ["d.csv"], ["m.pkl"], notes="run-time note", code="def train(): pass",
                owner="ann", error="boom")
    r.flush(store)
    run = store.get_run(rid[:6])
    assert run.code_snapshot == "def train(): pass"
    assert run.notes == "run-time note" and run.owner == "ann"
    assert run.failed and run.exception == "ValueError: boom" and run.status_message == "boom"
    assert store.set_notes(rid[:6], "later note") == "later note"
    assert store.get_run(rid).notes == "later note"
    assert store.set_notes(rid, "latest note") == "latest note"
    assert store.get_run(rid).notes == "latest note"
    assert store.recent(1)[0].code_snapshot == ""  # lists stay light


def test_recent_pages_and_history_ranges(store):
    r = Runs()
    ids = [r.run("a" if i % 2 else "b", [], [f"o{i}"], at=3600 * i) for i in range(12)]
    r.flush(store)
    newest = list(reversed(ids))
    assert [x.id for x in store.recent(5)] == newest[:5]
    assert [x.id for x in store.recent(5, before=newest[4][:8])] == newest[5:10]
    assert [x.id for x in store.recent(50, before=newest[10])] == newest[11:]
    assert store.recent(0) == []
    a_runs = [i for n, i in enumerate(ids) if n % 2]
    assert [x.id for x in store.history("a")] == list(reversed(a_runs))
    assert [x.id for x in store.history("a", limit=2)] == list(reversed(a_runs))[:2]
    since, until = BASE + timedelta(hours=3), BASE + timedelta(hours=7)
    assert [x.id for x in store.history("a", since=since, until=until)] == [ids[7], ids[5], ids[3]]
    assert [x.id for x in store.history("a", since=since.replace(tzinfo=None),
                                        until=until.isoformat())] == [ids[7], ids[5], ids[3]]
    assert store.history("nobody") == []


def test_duplicate_deliveries_are_one_run(store):
    r = Runs()
    a = r.run("c", [], ["x"])
    b = r.run("d", ["x"], ["y"])
    spans = list(r.exporter.get_finished_spans())
    store.insert_spans(spans)
    store.insert_spans(spans)  # a retry without a dedup token: duplicate rows until a merge
    assert store.count_runs() == 2
    assert [x.id for x in store.recent(10)] == [b, a]
    assert [n.run.id for n in store.trace("y").nodes] == [b, a]
    assert store.get_run(b).dependencies == (a,)
    store.insert_spans(spans[:1])  # run a once more, in a block of its own (not dropped as a
    # repeated block): merged, the tables collapse the copies, their projections keep them (0051)
    for table in ("mltrace_runs", "mltrace_lineage"):
        store.command("test_merge", f"OPTIMIZE TABLE {table} FINAL")
    dup = store.query("test_projection_rows", "SELECT RunId FROM mltrace_lineage WHERE Component = 'c' "
                      "ORDER BY Component, Start SETTINGS force_optimize_projection_name = "
                      "'lineage_by_component'")
    assert len(dup) >= 2 and set(dup) == {(a,)}
    assert store.count_runs() == 2
    assert [x.id for x in store.recent(10)] == [b, a]
    assert [x.id for x in store.history("c")] == [a]
    assert [n.run.id for n in store.trace("y").nodes] == [b, a]


def test_components_owner_tags_and_pointer(store):
    r = Runs()
    r.run("ingest", ["raw"], ["clean.csv"], owner="ann", tags=["etl"])
    t = r.run("train", ["clean.csv"], ["model.pkl"], owner="bob", tags=["ml"])
    r.flush(store)
    assert [c.name for c in store.components()] == ["ingest", "train"]
    assert [c.name for c in store.components(owner="ann")] == ["ingest"]
    assert [c.name for c in store.components(tag="ml")] == ["train"]
    assert store.components(owner="ann", tag="ml") == []
    store.tag_component("ingest", ["prod", "etl"])
    assert store.component("ingest").tags == ("etl", "prod")
    assert store.tags() == ["etl", "ml", "prod"]
    with pytest.raises(NotFound):
        store.tag_component("nobody", ["x"])
    with pytest.raises(NotFound):
        store.component("nobody")
    made = store.create_component("serve", "serves it", "cy", ["api"])
    assert (made.name, made.owner, made.description, made.tags, made.runs) == ("serve", "cy",
                                                                              "serves it", ("api",), 0)
    info = store.component("train")
    assert info.runs == 1 and info.owner == "bob"
    p = store.pointer("clean.csv")
    assert p.producers and p.consumers == (t,) and not p.flagged
    store.flag("model.pkl")
    assert store.pointer("model.pkl").flagged
    assert store.get_run(t).outputs[0].flagged
    with pytest.raises(NotFound):
        store.pointer("nothing")


def test_near_pointers_by_suffix_and_basename(store):
    """Issue 17: an unknown output's NotFound suggests the names it is probably short for."""
    from mltrace_otel.store import queries

    r = Runs()
    r.run("report", ["/data/in/raw.csv"], ["/data/out/report.txt"], at=0)
    r.run("report", ["C:\\work\\raw.csv"], ["/data/out/old_report.txt"], at=60)
    r.run("other", ["report.txt.bak"], ["it's; DROP TABLE x"], at=120)
    r.flush(store)
    assert queries.near_pointers(store, "report.txt") == ["/data/out/old_report.txt", "/data/out/report.txt"]
    assert queries.near_pointers(store, "out/report.txt") == ["/data/out/report.txt"]
    assert queries.near_pointers(store, "elsewhere/report.txt") == ["/data/out/report.txt"]  # basename
    assert queries.near_pointers(store, "raw.csv") == ["C:\\work\\raw.csv", "/data/in/raw.csv"]
    assert queries.near_pointers(store, "/data/out/report.txt") == []  # itself is no suggestion
    assert queries.near_pointers(store, "'s; DROP TABLE x") == ["it's; DROP TABLE x"]  # bound, not spliced
    assert queries.near_pointers(store, "") == [] and queries.near_pointers(store, "nothing.bin") == []
    with pytest.raises(NotFound) as e:
        store.pointer("report.txt")
    assert e.value.hint == "did you mean one of '/data/out/old_report.txt', '/data/out/report.txt'?"
    with pytest.raises(NotFound) as e:
        store.impact("out/report.txt")
    assert e.value.hint == "did you mean '/data/out/report.txt'?"
    with pytest.raises(NotFound) as e:
        store.pointer("nothing.bin")
    assert "did you mean" not in (e.value.hint or "")
