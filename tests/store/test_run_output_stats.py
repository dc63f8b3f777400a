"""metrics_queries.run_output_stats: the output-stats events of chosen runs of one component
(the history page's output charts), logged through the real SDK; user strings are bound."""

from __future__ import annotations

from mltrace_otel.sdk import export
from mltrace_otel.sdk.component import Component
from mltrace_otel.sdk.stats import Sketch
from mltrace_otel.store import metrics_queries as mq

NAME = "eval 'it'; DROP TABLE x -- \\"


def test_run_output_stats_reads_chosen_runs_of_one_component(store, tmp_settings):
    export.configure(settings=tmp_settings.replace(export="spool"))
    try:
        c = Component(name=NAME, owner="t")
        other = Component(name="other", owner="t")

        @c.run(outputs=["metrics/accuracy"])
        def evaluate(acc: float) -> float:
            return acc

        @other.run(outputs=["metrics/accuracy"])
        def evaluate_other(acc: float) -> float:
            return acc

        for acc in (0.5, 0.75, 0.875):
            evaluate(acc)
        evaluate_other(0.25)
        assert export.flush()
    finally:
        export.reset()
    store.drain_spool()
    runs = store.history(NAME, 10)  # newest first
    assert len(runs) == 3
    lo = int(min(r.start for r in runs).timestamp() * 1e9) - 10**9
    hi = int(max(r.start for r in runs).timestamp() * 1e9) + 10**9
    rows = [r for r in mq.run_output_stats(store, NAME, [r.id for r in runs], lo, hi)
            if r.output == "metrics/accuracy"]
    assert [r.run_id for r in rows] == [r.id for r in reversed(runs)]  # oldest first
    assert [r.mean for r in rows] == [0.5, 0.75, 0.875]
    assert all(r.component == NAME and r.count == 1 and r.min == r.max == r.mean for r in rows)
    assert Sketch.from_json(rows[0].sketch).count == 1
    # only the runs asked for, and never another component's
    assert [r.mean for r in mq.run_output_stats(store, NAME, [runs[0].id], lo, hi)
            if r.output == "metrics/accuracy"] == [0.875]
    other_id = store.history("other", 1)[0].id
    assert mq.run_output_stats(store, NAME, [other_id], lo, hi) == []
    assert mq.run_output_stats(store, NAME, [], lo, hi) == []
