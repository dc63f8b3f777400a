"""History and recent read their runs in one read of mltrace_lineage (migration 0020): runs that
wrote nothing are there too, windows guessed from an earlier answer or covered by recent's page
never change an answer, and a pointer named '' is not fed by runs that wrote nothing."""

from __future__ import annotations

from query_helpers import Runs


def _fresher(component: str, dep: str, k: int) -> str:
    word = "run" if k == 1 else "runs"
    return (f"{component} (ID {dep}) has {k} fresher {word} that began before this component "
            "run started.")


def test_runs_that_wrote_nothing_are_in_history_recent_and_inspect(store):
    r = Runs()
    a = r.run("load", [], ["raw"], at=10)
    check = r.run("check", ["raw"], [], at=20, notes="looked fine")  # reads, writes nothing
    lone = r.run("check", [], [], at=30)  # neither reads nor writes
    r.flush(store)
    assert [x.id for x in store.history("check", 10)] == [lone, check]
    assert [x.id for x in store.recent(10)] == [lone, check, a]
    run = store.get_run(check)
    assert run.dependencies == (a,) and run.notes == "looked fine" and run.outputs == ()
    assert store.get_runs([lone, check])[1].inputs[0].name == "raw"
    assert [x.id for x in store.history("check", 1)] == [lone]
    assert [(n.depth, n.run.id) for n in store.trace_run(check).nodes] == [(0, check), (1, a)]
    assert [n.run.id for n in store.impact(check).nodes] == [check]
    b = r.run("load", [], ["raw"], at=40)  # check's input is superseded now
    r.flush(store)
    assert [x.id for x in store.stale_runs("check")] == []  # its latest run read nothing
    assert store.get_run(check).stale == (f"load (ID {a}) has a newer run now (ID {b}).",)


def test_a_pointer_named_empty_is_not_fed_by_runs_that_wrote_nothing(store):
    r = Runs()
    r.run("quiet", [], [], at=10)  # stored in mltrace_lineage under Pointer ''
    reader = r.run("odd", [""], ["out"], at=20)
    r.flush(store)
    assert store.get_run(reader).dependencies == ()
    writer = r.run("writes_empty", [], [""], at=30)
    late = r.run("odd", [""], ["out2"], at=40)
    r.flush(store)
    assert store.get_run(late).dependencies == (writer,)


def test_history_answers_stay_exact_when_the_guessed_windows_miss(store):
    r = Runs()
    a = r.run("prep", [], ["features"], at=10)
    r.run("prep", [], ["other"], at=12)
    train = r.run("train", ["features"], ["model"], at=20)
    r.flush(store)
    expected = (_fresher("prep", a, 1),)
    assert store.history("train", 5)[0].stale == expected  # learns: train <- prep, gap 10 s
    assert store.history("train", 5)[0].stale == expected  # the guess holds the window

    # A dependency much older than the gap learnt, and one on a new component: both windows
    # fall outside the guess, and the answer is still exact.
    b = r.run("prep", [], ["features2"], at=100)
    r.run("prep", [], ["x"], at=150)
    r.run("prep", [], ["y"], at=160)
    c = r.run("label", [], ["labels"], at=170)
    r.run("label", [], ["z"], at=180)
    train2 = r.run("train", ["features2", "labels"], ["model2"], at=500)
    r.flush(store)
    for _ in range(2):  # first with the old guess, then with the one learnt from it
        runs = store.history("train", 5)
        assert [x.id for x in runs] == [train2, train]
        assert set(runs[0].stale) == {_fresher("prep", b, 2), _fresher("label", c, 1)}
        assert runs[1].stale == expected


def test_recent_counts_fresher_runs_inside_and_beyond_its_page(store):
    r = Runs()
    old = r.run("prep", [], ["features"], at=10)
    r.run("prep", [], ["a"], at=20)  # before the page: read by the staleness query
    r.run("prep", [], ["b"], at=30)
    train = r.run("train", ["features"], ["model"], at=40)
    dep = r.run("prep", [], ["f2"], at=50)
    c = r.run("prep", [], ["c"], at=60)  # inside the page: counted from the page's rows
    score = r.run("score", ["f2"], ["s"], at=70)
    r.flush(store)
    runs = {x.id: x for x in store.recent(4)}
    assert list(runs) == [score, c, dep, train]
    assert runs[score].stale == (_fresher("prep", dep, 1),)
    assert runs[train].stale == (_fresher("prep", old, 2),)
    assert [x.stale for x in store.recent(20) if x.id in (score, train)] == [
        (_fresher("prep", dep, 1),), (_fresher("prep", old, 2),)]


def test_history_pages_runs_with_many_outputs_and_delivered_twice(store):
    """A run has one lineage row per output, and a run delivered twice has its rows twice until
    a merge: history still returns the newest distinct runs, each once, in order."""
    r = Runs()
    wide = [r.run("wide", [], [f"part-{k}.parquet" for k in range(40)], at=10 + i) for i in range(5)]
    spans = list(r.exporter.get_finished_spans())
    store.insert_spans(spans[:3])  # a retried export: those runs' rows twice until a merge
    store.insert_spans(spans)
    assert [x.id for x in store.history("wide", 3)] == wide[::-1][:3]
    assert [x.id for x in store.history("wide", 10)] == wide[::-1]
    assert len(store.history("wide", 1)[0].outputs) == 40
