"""Lineage on runs written as plain OTel spans: trace, dependencies and impact (issue 3)."""

from __future__ import annotations

import random

import pytest
from query_helpers import Runs, diamonds

from mltrace_otel.errors import NotFound
from mltrace_otel.store import lineage


@pytest.fixture(params=["every", "windowed"])
def cap(request, monkeypatch):
    """Candidates read unwindowed (the usual path), or forced through the per-pointer windows."""
    if request.param == "windowed":
        monkeypatch.setattr(lineage, "EVERY_CAP", 1)


@pytest.fixture(params=["ingest", "contrib"])
def write(request, contrib_insert):
    """Write spans through our ingest, or as otelcol-contrib would (no mltrace code)."""
    return (lambda store, runs: runs.flush(store)) if request.param == "ingest" else \
        (lambda store, runs: runs.flush(store, contrib=contrib_insert))


def test_twelve_diamonds_trace_to_exactly_37_runs(store, write):
    r = Runs()
    out, ids = diamonds(r, 12)
    write(store, r)
    lin = store.trace(out)
    assert len(lin.nodes) == 37
    assert sorted(n.run.id for n in lin.nodes) == sorted(ids)
    depth = {n.run.id: n.depth for n in lin.nodes}
    assert depth[ids[-1]] == 0 and depth[ids[0]] == 24
    assert [n.depth for n in lin.nodes] == sorted(n.depth for n in lin.nodes)
    # each join depends on both branches of its diamond
    join = next(n.run for n in lin.nodes if n.depth == 0)
    assert set(join.dependencies) == {ids[-3], ids[-2]}


def test_linear_chain_of_ten_traces_to_ten_levels_in_order(store, write):
    r = Runs()
    ids = [r.run(f"step{i}", [f"p{i - 1}"] if i else ["raw"], [f"p{i}"]) for i in range(10)]
    write(store, r)
    lin = store.trace("p9")
    assert [(n.depth, n.run.id) for n in lin.nodes] == [(9 - i, ids[i]) for i in reversed(range(10))]
    assert [n.run.component for n in lin.nodes] == [f"step{i}" for i in reversed(range(10))]
    assert {(e.producer, e.consumer, e.pointer) for e in lin.edges} == {
        (ids[i - 1], ids[i], f"p{i - 1}") for i in range(1, 10)}


def test_rerunning_the_same_computation_traces_to_the_latest_run_only(store, write):
    r = Runs()
    last = None
    for _ in range(10):
        a = r.run("clean", ["raw.csv"], ["clean.csv"])
        b = r.run("train", ["clean.csv"], ["model.pkl"])
        last = (a, b)
    write(store, r)
    lin = store.trace("model.pkl")
    assert [(n.depth, n.run.id) for n in lin.nodes] == [(0, last[1]), (1, last[0])]


def test_cycle_through_two_pointers_terminates_producer_before_consumer(store, write):
    r = Runs()
    a1 = r.run("A", ["p1"], ["p2"])
    b1 = r.run("B", ["p2"], ["p1"])
    a2 = r.run("A", ["p1"], ["p2"])
    b2 = r.run("B", ["p2"], ["p1"])
    a3 = r.run("A", ["p1"], ["p2"])
    write(store, r)
    lin = store.trace("p2")
    # latest writer of p2 is a3; its p1 came from b2, whose p2 came from a2, ... back to a1,
    # whose p1 no earlier run wrote: mltrace's "latest run that output it" at each step.
    assert [(n.depth, n.run.id) for n in lin.nodes] == [(0, a3), (1, b2), (2, a2), (3, b1), (4, a1)]
    assert store.get_run(a1).dependencies == ()


def test_version_matched_dependency_picks_the_run_that_wrote_that_version(store, write, cap):
    r = Runs()
    w1 = r.run("writer", [], ["table"], out_versions=["v1"])
    w2 = r.run("writer", [], ["table"], out_versions=["v2"])
    old_reader = r.run("reader", ["table"], ["report_a"], in_versions=["v1"])
    new_reader = r.run("reader", ["table"], ["report_b"], in_versions=["v2"])
    unversioned = r.run("reader", ["table"], ["report_c"])
    write(store, r)
    assert store.get_run(old_reader).dependencies == (w1,)
    assert store.get_run(new_reader).dependencies == (w2,)
    assert store.get_run(unversioned).dependencies == (w2,)  # no fingerprint: latest writer
    assert [n.run.id for n in store.trace("report_a").nodes] == [old_reader, w1]


def test_a_run_that_reads_and_rewrites_a_pointer_is_not_its_own_dependency(store, write):
    r = Runs()
    first = r.run("init", [], ["state.json"])
    upd = r.run("update", ["state.json"], ["state.json"])
    write(store, r)
    assert store.get_run(upd).dependencies == (first,)
    assert [(n.depth, n.run.id) for n in store.trace("state.json").nodes] == [(0, upd), (1, first)]


def test_producer_is_the_latest_writer_started_no_later_than_the_consumer(store, write, cap):
    r = Runs()
    writers = [r.run("w", [], ["hot"], at=10 * i + 10) for i in range(20)]
    early = r.run("early", ["hot"], ["e"], at=35)  # writers at 10, 20, 30 exist
    late = r.run("late", ["hot"], ["l"], at=500)
    write(store, r)
    # both consumers resolved together (one frontier) although 17 newer writers sit between
    runs = {x.id: x for x in store.get_runs([early, late])}
    assert runs[early].dependencies == (writers[2],)
    assert runs[late].dependencies == (writers[-1],)


def test_set_upstream_resolves_to_the_components_latest_run_before(store, write):
    r = Runs()
    e1 = r.run("etl", [], [], at=10)
    e2 = r.run("etl", [], [], at=20)
    r.run("etl", [], [], at=40)  # after the run: not its dependency
    t = r.run("train", [], ["m.pkl"], upstream=["etl"], at=30)
    write(store, r)
    assert e1 != e2
    assert store.get_run(t).dependencies == (e2,)
    assert [n.run.id for n in store.trace("m.pkl").nodes] == [t, e2]


def test_trace_of_an_unknown_output_is_not_found(store):
    with pytest.raises(NotFound, match="no run wrote 'nothing'"):
        store.trace("nothing")


def _reference_trace(runs: list[dict], output: str) -> dict[str, int]:
    """mltrace's semantics, the slow obvious way: {run id: depth}."""
    def producer(ptr: str, before: float, not_id: str | None) -> dict | None:
        cands = [x for x in runs if ptr in x["outputs"] and x["at"] <= before and x["id"] != not_id]
        return max(cands, key=lambda x: (x["at"], x["id"])) if cands else None

    root = producer(output, float("inf"), None)
    depth = {root["id"]: 0}
    frontier = [root]
    while frontier:
        nxt = []
        for run in frontier:
            for p in dict.fromkeys(run["inputs"]):
                prod = producer(p, run["at"], run["id"])
                if prod and prod["id"] not in depth:
                    depth[prod["id"]] = depth[run["id"]] + 1
                    nxt.append(prod)
        frontier = nxt
    return depth


def test_thousand_run_fan_in_fan_out_pipeline_matches_a_reference_walk(store, cap):
    rnd = random.Random(7)
    r = Runs()
    pointers = [f"src{i}" for i in range(20)]
    runs = []
    for i in range(1000):
        inputs = rnd.sample(pointers, k=min(len(pointers), rnd.randint(1, 4)))
        # mostly new outputs, sometimes rewrite an existing pointer (fan-in on one name)
        outputs = [f"o{i}_{j}" for j in range(rnd.randint(1, 2))]
        if rnd.random() < 0.2:
            outputs.append(rnd.choice(pointers))
        at = 10.0 * (i + 1)
        rid = r.run(f"c{i % 37}", inputs, outputs, at=at)
        runs.append({"id": rid, "inputs": inputs, "outputs": outputs, "at": at})
        pointers += [o for o in outputs if o not in pointers]
        pointers = pointers[-60:]  # recent pointers: long chains, wide fan-out
    r.flush(store)
    for output in (runs[-1]["outputs"][0], runs[500]["outputs"][0], runs[-7]["outputs"][0]):
        expected = _reference_trace(runs, output)
        lin = store.trace(output)
        got = {n.run.id: n.depth for n in lin.nodes}
        assert got == expected
        assert len(lin.nodes) > 50


def test_impact_from_a_run_and_from_an_output(store, write):
    r = Runs()
    src = r.run("src", [], ["raw"])
    left = r.run("left", ["raw"], ["l"])
    right = r.run("right", ["raw"], ["r"])
    join = r.run("join", ["l", "r"], ["out"])
    other = r.run("other", ["unrelated"], ["x"])
    write(store, r)
    lin = store.impact(src[:6])
    assert lin.direction == "impact" and lin.root == src
    assert {n.run.id: n.depth for n in lin.nodes} == {src: 0, left: 1, right: 1, join: 2}
    assert set(lin.outputs) == {"raw", "l", "r", "out"}
    from_ptr = store.impact("raw")
    assert {n.run.id: n.depth for n in from_ptr.nodes} == {left: 0, right: 0, join: 1}
    assert other not in {n.run.id for n in from_ptr.nodes}
    with pytest.raises(NotFound):
        store.impact("never-seen")


def test_edges_come_in_the_nodes_order_call_after_call(store):
    # readers written one insert each (one part each), so the store may return their rows in
    # any order: the answer's edges follow its nodes (consumer, then producer), every time
    r = Runs()
    src = r.run("src", [], ["raw"])
    r.flush(store)
    for i in range(8):
        r.run(f"reader{i}", ["raw"], [f"out{i}"])
        r.flush(store)
    for lin in (store.impact(src), store.trace_run(store.recent(1)[0].id)):
        at = {n.run.id: i for i, n in enumerate(lin.nodes)}
        keys = [(at[e.consumer], at[e.producer], e.pointer) for e in lin.edges]
        assert keys == sorted(keys) and len(keys) == len(lin.nodes) - 1
    first = store.impact(src)
    assert all(store.impact(src).edges == first.edges for _ in range(5))


def test_trace_run_starts_at_the_run(store):
    r = Runs()
    out, ids = diamonds(r, 2)
    r.flush(store)
    lin = store.trace_run(ids[3][:8])
    assert lin.root == ids[3]
    assert {n.run.id: n.depth for n in lin.nodes} == {ids[3]: 0, ids[1]: 1, ids[2]: 1, ids[0]: 2}


def test_version_windows_are_asked_again_for_older_consumers(store, write, cap):
    r = Runs()
    writers = [r.run("w", [], ["table"], out_versions=["same"], at=10 * i + 10) for i in range(12)]
    r.run("w", [], ["table"], out_versions=["other"], at=1000)
    early = r.run("early", ["table"], ["e"], in_versions=["same"], at=35)
    late = r.run("late", ["table"], ["l"], in_versions=["same"], at=2000)
    write(store, r)
    runs = {x.id: x for x in store.get_runs([early, late])}
    assert runs[early].dependencies == (writers[2],)
    assert runs[late].dependencies == (writers[-1],)  # the newer "other" version is not it
