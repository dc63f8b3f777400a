"""The lineage graph's layout: every edge points right, each run once, labels stay literal."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mltrace_otel.dashboards.graph import layered_layout, lineage_figure
from mltrace_otel.store.models import Lineage, LineageEdge, LineageNode, Run

T = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _run(i: int, component: str, status: str = "OK", stale: tuple[str, ...] = ()) -> Run:
    return Run(id=f"{i:016x}", trace_id="0" * 32, component=component, start=T + timedelta(minutes=i),
               end=T + timedelta(minutes=i, seconds=5), status=status, stale=stale)


def test_skip_edges_and_diamonds_lay_out_left_to_right_each_run_once():
    # a → b → d, a → c → d, a → d (the walk reached d's producers at mixed depths)
    a, b, c, d = _run(1, "a"), _run(2, "b"), _run(3, "c", status="ERROR"), _run(4, "<script>d</script>")
    lineage = Lineage(root="out", direction="trace",
                      nodes=(LineageNode(0, d), LineageNode(1, b), LineageNode(1, c), LineageNode(1, a)),
                      edges=(LineageEdge(a.id, b.id, "p1"), LineageEdge(a.id, c.id, "p1"),
                             LineageEdge(b.id, d.id, "p2"), LineageEdge(c.id, d.id, "p3"),
                             LineageEdge(a.id, d.id, "p1")))
    xy = layered_layout(lineage)
    assert set(xy) == {a.id, b.id, c.id, d.id}
    assert xy[a.id][0] < xy[b.id][0] < xy[d.id][0] and xy[c.id][0] == xy[b.id][0]
    assert xy[b.id][1] != xy[c.id][1]
    fig = lineage_figure(lineage)
    nodes = [t for t in fig["data"] if t.get("name") in ("ok", "failed")]  # the runs
    ids = [i for t in nodes for i in t["customdata"]]
    assert sorted(ids) == sorted([a.id, b.id, c.id, d.id])
    failed = next(t for t in nodes if t["name"] == "failed")
    assert failed["customdata"] == [c.id]
    labels = " ".join(x for t in nodes for x in t["text"])
    assert "<script>" not in labels and "&lt;script&gt;d&lt;/script&gt;" in labels


def test_a_cycle_falls_back_on_the_walks_depths():
    a, b = _run(1, "a", stale=("old input",)), _run(2, "b")
    lineage = Lineage(root="x", direction="trace", nodes=(LineageNode(0, b), LineageNode(1, a)),
                      edges=(LineageEdge(a.id, b.id, "p"), LineageEdge(b.id, a.id, "q")))
    xy = layered_layout(lineage)
    assert xy[a.id][0] < xy[b.id][0]
    fig = lineage_figure(lineage)
    assert any(t.get("name") == "stale" for t in fig["data"])  # the stale ring has a legend entry


def test_edges_carry_pointer_names_and_versions_and_the_output_is_a_node():
    a, b = _run(1, "a"), _run(2, "b")
    long = "warehouse/exports/2026/01/very_long_partition_name_v17.parquet"
    lineage = Lineage(root="models/<m>.pkl", direction="trace", nodes=(LineageNode(0, b), LineageNode(1, a)),
                      edges=(LineageEdge(a.id, b.id, "p1", "0123456789abcdef"),
                             LineageEdge(a.id, b.id, long)))
    fig = lineage_figure(lineage)
    labels = next(t for t in fig["data"] if t.get("name") == "pointer names")
    text = labels["text"]
    assert "p1 @01234567" in text[0] and "…" in text[0] and long not in text[0]  # shortened
    assert long in labels["hovertext"][0]  # whole in the hover
    kinds = {tuple(d[:3]) for d in labels["customdata"]}
    assert ("edge", a.id, b.id) in kinds and ("edge", b.id, "") in kinds  # b → the output
    out = next(t for t in fig["data"] if t.get("name") == "output")
    assert out["customdata"] == [["output", "models/<m>.pkl"]]
    assert out["text"] == ["models/&lt;m&gt;.pkl"]  # literal, never markup
    xy = layered_layout(lineage)
    assert out["x"][0] > xy[b.id][0]  # right of its producer
    # a walk from a run has no output node
    from_run = Lineage(root=b.id[:6], direction="trace", nodes=lineage.nodes, edges=lineage.edges)
    assert not any(t.get("name") == "output" for t in lineage_figure(from_run)["data"])
