"""The SDK's spans, through the spool, are what the store expects: runs read back whole."""

# ruff: noqa: F841 - the decorated functions' locals are read by the SDK

from __future__ import annotations

import pandas as pd
import pytest

import mltrace_otel as mltrace
from mltrace_otel.sdk import export
from mltrace_otel.sdk.git import process_git_info


def test_runs_logged_by_the_sdk_read_back_from_the_store(tmp_settings, store):
    export.configure(settings=tmp_settings)

    class Positive(mltrace.Test):
        def testPositive(self, total):
            if total <= 0:
                raise ValueError("total must be positive")

    clean = mltrace.Component("clean", owner="plumber", tags=["etl"])
    score = mltrace.Component("score", owner="ana", afterTests=[Positive])

    @clean.run(inputs=["raw.csv"], output_kwargs={"dest": "df"})
    def do_clean():
        df = pd.DataFrame({"a": [1, 2]})
        dest = "clean.pq"

    @score.run(inputs=["clean.pq"], output_vars=["out"])
    def do_score(k):
        total = k
        out = "scores.csv"

    do_clean()
    do_score(3)
    with pytest.raises(ValueError, match="total must be positive"):
        do_score(-1)
    cr = mltrace.ComponentRun("report", notes="weekly")
    cr.set_start_timestamp()
    cr.add_input("scores.csv")
    cr.set_upstream("clean")
    cr.set_end_timestamp()
    report_id = mltrace.log_component_run(cr)

    assert mltrace.flush()
    assert store.drain_spool() >= 1
    assert store.count_runs() == 4

    report = store.get_run(report_id)
    assert (report.component, report.notes, report.upstream) == ("report", "weekly", ("clean",))
    good, bad = store.history("score", limit=10)[::-1]
    assert good.status != "ERROR" and bad.status == "ERROR"
    assert [(t.method, t.phase, t.passed) for t in bad.tests] == [("testPositive", "after", False)]
    assert "total must be positive" in bad.tests[0].message
    assert [p.name for p in good.inputs] == ["clean.pq"] and good.inputs[0].type == "DATA"
    (c,) = store.history("clean", limit=1)
    assert c.owner == "plumber" and c.tags == ("etl",)
    assert c.outputs[0].name == "clean.pq" and len(c.outputs[0].version) == 32
    assert c.git_hash == (process_git_info()[0] or "")
    lineage = store.trace("scores.csv")
    assert {n.run.component for n in lineage.nodes} >= {"score", "clean"}
