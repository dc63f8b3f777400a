"""Review: runs common to the flagged outputs' traces, ranked by coverage (mltrace's scenario)."""

from __future__ import annotations

from query_helpers import Runs, diamonds


def _mltrace_scenario(store):
    """Two shared upstream runs feed four runs, each writing one flagged output."""
    r = Runs()
    etl = r.run("etl", ["raw"], ["clean"])
    feats = r.run("featurize", ["clean"], ["features"])
    preds = [r.run("predict", ["features"], [f"pred_{i}"]) for i in range(4)]
    r.run("unrelated", ["raw"], ["other"])
    r.flush(store)
    for i in range(4):
        store.flag(f"pred_{i}")
    return etl, feats, preds


def test_review_counts_as_in_mltraces_flagged_outputs_scenario(store):
    etl, feats, preds = _mltrace_scenario(store)
    rv = store.review()
    assert rv.flagged == tuple(f"pred_{i}" for i in range(4))
    assert rv.unproduced == ()
    got = [(e.run.id, e.count, e.coverage) for e in rv.entries]
    # count desc, then newest first: the two shared runs (4) then the four predictions (1)
    assert got == [(feats, 4, 1.0), (etl, 4, 1.0)] + [(p, 1, 0.25) for p in reversed(preds)]
    assert store.review(limit=3).entries[-1].run.id == preds[-1]


def test_a_flagged_id_no_run_wrote_is_reported_not_fatal(store):
    etl, feats, preds = _mltrace_scenario(store)
    store.flag("never-written")
    rv = store.review()
    assert rv.unproduced == ("never-written",)
    assert [(e.run.id, e.count, e.coverage) for e in rv.entries][:2] == [(feats, 4, 0.8), (etl, 4, 0.8)]


def test_review_walks_shared_diamonds_once_and_counts_each_output_once(store):
    r = Runs()
    out, ids = diamonds(r, 6)
    tails = [r.run("tail", [out], [f"t{i}"]) for i in range(3)]
    r.flush(store)
    for i in range(3):
        store.flag(f"t{i}")
    rv = store.review()
    counts = {e.run.id: e.count for e in rv.entries}
    assert {i: counts[i] for i in ids} == {i: 3 for i in ids}  # every diamond run: all 3 outputs
    assert {t: counts[t] for t in tails} == {t: 1 for t in tails}
    assert len(rv.entries) == len(ids) + 3


def test_unflag_and_unflag_all(store):
    _mltrace_scenario(store)
    assert store.unflag("pred_0") is False
    assert store.flagged() == ["pred_1", "pred_2", "pred_3"]
    assert store.unflag_all() == 3
    assert store.flagged() == [] and store.review().entries == ()
