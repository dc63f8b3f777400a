"""mltrace 0.17's return shapes (issue 16): ``get_history``, ``get_recent_run_ids``,
``backtrace`` and ``web_trace`` give what 0.17 gave (read from its source: ComponentRuns with
the code snapshot as text, pointers usable as objects and as 0.17's dicts, dependencies as
component names, newest first; the UI's nested dict tree), on a real embedded store."""

from __future__ import annotations

import json
import pickle
from datetime import datetime, timedelta, timezone

import pytest

import mltrace_otel as mltrace
from mltrace_otel import api
from mltrace_otel.errors import NotFound
from mltrace_otel.sdk import config, export

T0 = datetime(2026, 3, 1, 12, 0, 0)  # naive UTC, as mltrace's users pass it
SNAPSHOT = "def extract():\n    return read_db()\n"


@pytest.fixture
def env(tmp_settings):
    export.reset()
    config.clear_overrides()
    export.configure(settings=tmp_settings.replace(export="spool"), sync=True)
    yield tmp_settings
    try:
        if api._store is not None:
            api._store.command("drop_test_database", f"DROP DATABASE IF EXISTS `{api._store.database}`")
    finally:
        api.close()
        export.reset()
        config.clear_overrides()


def _log(component: str, start: datetime, inputs=(), outputs=(), code: str | None = None) -> str:
    cr = mltrace.ComponentRun(component, start_timestamp=start, end_timestamp=start + timedelta(seconds=5),
                              code_snapshot=code)
    cr.add_inputs(list(inputs))
    cr.add_outputs(list(outputs))
    return mltrace.log_component_run(cr)


def _pipeline() -> dict[str, str]:
    """extract (by hand, with a snapshot) → clean, train (decorated) → a second extract with no
    snapshot; run ids by name."""
    ids = {"extract": _log("extract", T0, outputs=["raw.csv"], code=SNAPSHOT)}
    clean_c = mltrace.Component("clean", owner="ann")
    train_c = mltrace.Component("train", owner="bob")

    @clean_c.run(inputs=["raw.csv"], outputs=["clean.csv"])
    def clean():
        return 1

    @train_c.run(inputs=["clean.csv"], outputs=["model.pkl"])
    def train():
        return 2

    clean()
    train()
    ids["extract2"] = _log("extract", T0 + timedelta(days=1), outputs=["raw2.csv"])
    ids["clean"], ids["train"] = mltrace.get_recent_run_ids(2)[::-1]
    return ids


def _is_0_17_run(run) -> None:  # noqa: ANN001
    assert isinstance(run, mltrace.ComponentRun)
    assert isinstance(run.id, str) and isinstance(run.component_name, str)
    assert run.start_timestamp.tzinfo is None and run.end_timestamp.tzinfo is None
    assert isinstance(run.stale, list) and all(isinstance(s, str) for s in run.stale)
    assert isinstance(run.dependencies, list) and isinstance(run.notes, str)
    for p in [*run.inputs, *run.outputs]:  # 0.17 returned IOPointers (backtrace) and dicts (history)
        assert isinstance(p, mltrace.IOPointer)
        assert p["name"] == p.name and p["pointer_type"] is p.pointer_type and p["flag"] is p.flag
    d = run.to_dictionary()
    assert {"component_name", "notes", "start_timestamp", "end_timestamp", "inputs", "outputs",
            "git_hash", "git_tags", "code_snapshot", "id", "stale", "dependencies"} <= d.keys()
    assert d["code_snapshot"] == run.code_snapshot


def test_get_history_returns_full_runs_with_code_snapshot(env):
    ids = _pipeline()
    hist = mltrace.get_history("extract")
    assert [r.id for r in hist] == [ids["extract2"], ids["extract"]]  # newest first
    for r in hist:
        _is_0_17_run(r)
    assert hist[1].code_snapshot == SNAPSHOT  # as logged (0.17 decoded its bytes to str)
    assert hist[0].code_snapshot is None  # logged without one
    assert hist[1].start_timestamp == T0 and hist[1].outputs[0]["name"] == "raw.csv"

    (train,) = mltrace.get_history("train")
    _is_0_17_run(train)
    assert "def train():" in train.code_snapshot and "@train_c.run" in train.code_snapshot
    assert train.dependencies == ["clean"] and train.git_hash  # component names, as in 0.17

    # limit and date bounds: datetimes (naive = UTC), ISO strings, None and the defaults
    assert [r.id for r in mltrace.get_history("extract", 1)] == [ids["extract2"]]
    assert [r.id for r in mltrace.get_history("extract", 10, T0, T0 + timedelta(hours=1))] == [ids["extract"]]
    assert [r.id for r in mltrace.get_history("extract", 10, "2026-03-02", None)] == [ids["extract2"]]
    aware = (T0 + timedelta(hours=2)).replace(tzinfo=timezone.utc)
    assert [r.id for r in mltrace.get_history("extract", 10, None, aware)] == [ids["extract"]]
    assert mltrace.get_history("nobody") == []


def test_code_snapshot_is_read_when_first_asked_for(env):
    _pipeline()
    hist = mltrace.get_history("extract")
    api.close()  # the snapshot is read on access (the store reopened then), not by the list
    assert hist[1].code_snapshot == SNAPSHOT
    assert SNAPSHOT.splitlines()[0] in repr(hist[1])
    copy = pickle.loads(pickle.dumps(hist[1]))  # pickles as a plain ComponentRun, snapshot kept
    assert type(copy) is mltrace.ComponentRun and copy.code_snapshot == SNAPSHOT and copy == hist[1]
    hist[0].code_snapshot = "set by the user"  # the setter wins over the store
    assert hist[0].code_snapshot == "set by the user"


def test_get_recent_run_ids_newest_first_and_pages(env):
    ids = _pipeline()
    assert mltrace.get_recent_run_ids() == mltrace.get_recent_run_ids(5)
    every = mltrace.get_recent_run_ids(10)
    assert all(isinstance(i, str) and len(i) == 16 for i in every)
    # newest first by start: clean and train ran now, the extracts are backdated
    assert every == [ids["train"], ids["clean"], ids["extract2"], ids["extract"]]
    assert mltrace.get_recent_run_ids(2, every[1]) == every[2:4]  # the runs after last_run_id
    assert mltrace.get_recent_run_ids(5, every[-1]) == []
    assert mltrace.get_recent_run_ids(0) == []


def test_backtrace_pairs_depth_with_full_runs(env):
    ids = _pipeline()
    trace = mltrace.backtrace("model.pkl")
    assert all(isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], int) for t in trace)
    assert [(d, r.id) for d, r in trace] == [(0, ids["train"]), (1, ids["clean"]), (2, ids["extract"])]
    for _d, r in trace:
        _is_0_17_run(r)
    assert "def train():" in trace[0][1].code_snapshot and trace[2][1].code_snapshot == SNAPSHOT
    assert [r.dependencies for _d, r in trace] == [["clean"], ["extract"], []]
    assert trace[0][1].outputs[0].pointer_type == mltrace.PointerTypeEnum.MODEL


def test_web_trace_is_the_ui_tree_of_the_latest_producer(env):
    ids = _pipeline()
    trees = mltrace.web_trace("model.pkl")
    assert isinstance(trees, list) and len(trees) == 1
    json.dumps(trees)  # plain data, as the 0.17 UI received it
    (tree,) = trees
    keys = {"id", "label", "hasCaret", "isExpanded", "stale", "childNodes"}
    assert set(tree) == keys
    assert (tree["id"], tree["label"], tree["hasCaret"], tree["isExpanded"]) == (
        f"componentrun_{ids['train']}", "train", True, True)
    assert tree["stale"] and all(isinstance(s, str) for s in tree["stale"])  # messages (from extract)
    model, clean = tree["childNodes"]  # the run's outputs (sorted by name), then its producers
    assert model == {"id": "iopointer_model.pkl", "label": "model.pkl", "hasCaret": False,
                     "parent": tree["id"], "icon": "function"}
    assert set(clean) == keys and clean["id"] == f"componentrun_{ids['clean']}"
    out, extract = clean["childNodes"]
    assert out == {"id": "iopointer_clean.csv", "label": "clean.csv", "hasCaret": False,
                   "parent": clean["id"], "icon": "database"}
    assert extract["label"] == "extract" and extract["childNodes"][0]["label"] == "raw.csv"
    assert extract["childNodes"][1:] == []
    with pytest.raises(NotFound):
        mltrace.web_trace("nobody wrote this")
