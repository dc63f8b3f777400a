"""Every user string round-trips and reaches SQL only as a bound parameter."""

from __future__ import annotations

import pytest
from query_helpers import Runs

NASTY = [
    "it's \"quoted\"",
    "back\\slash\\\\ and \\' escaped",
    "'; DROP TABLE otel_traces; --",
    "{p:String} {{db}} $1 %s ?",
    "ünïcödé ✓ 数据 🚀",
    "tab\tnew\nline\x00nul",
    "x" * 10_240,
]


@pytest.mark.parametrize("name", NASTY, ids=range(len(NASTY)))
def test_user_strings_round_trip(store, name):
    r = Runs()
    comp = "c " + name[:200]
    src = r.run(comp, [name + "-in"], [name], owner=name, tags=[name[:100]])
    dst = r.run("consumer", [name], ["out " + name])
    r.flush(store)

    lin = store.trace("out " + name)
    assert [(n.depth, n.run.id) for n in lin.nodes] == [(0, dst), (1, src)]
    assert lin.nodes[1].run.outputs[0].name == name
    assert lin.edges[0].pointer == name
    assert [x.id for x in store.history(comp)] == [src]
    assert store.component(comp).owner == name
    assert store.tags() == [name[:100]]
    assert store.components(tag=name[:100])[0].name == comp

    assert store.flag(name) is True
    assert store.flagged() == [name]
    rv = store.review()
    assert rv.flagged == (name,) and [e.run.id for e in rv.entries] == [src]
    assert store.set_notes(src, name) == name
    assert store.get_run(src).notes == name
    store.tag_component(comp, [name])
    assert name in store.component(comp).tags
    assert store.pointer(name).producers == (src,)
    assert [n.run.id for n in store.impact(name).nodes] == [dst]
    assert store.unflag(name) is False and store.flagged() == []

    # the table the classic injection names is intact
    assert store.query("check", "SELECT count() FROM otel_traces")[0][0] == 2


def test_no_user_value_is_spliced_into_sql(store, monkeypatch):
    """Wrap Store.query / command: the SQL text never contains the user's string."""
    marker = "'; DROP TABLE otel_traces; -- MARK"
    seen: list[str] = []
    orig_q, orig_c = store.query, store.command

    def q(name, sql, params=None):  # noqa: ANN001
        seen.append(sql)
        return orig_q(name, sql, params)

    def c(name, sql, params=None):  # noqa: ANN001
        seen.append(sql)
        return orig_c(name, sql, params)

    monkeypatch.setattr(store, "query", q)
    monkeypatch.setattr(store, "command", c)
    r = Runs()
    rid = r.run(marker, [marker], [marker + "2"], owner=marker)
    r.flush(store)
    store.trace(marker + "2")
    store.history(marker)
    store.flag(marker)
    store.review()
    store.set_notes(rid, marker)
    store.create_component(marker, marker, marker, [marker])
    store.tag_component(marker, [marker])
    store.pointer(marker)
    store.impact(marker)
    store.components(owner=marker, tag=marker)
    store.unflag_all()
    # issue 14's queries: versioned flags, scoped review, stale, inspect with changes
    store.flag(marker + "2", rid[:8])
    store.review(since="2026-01-01", component=marker, tag=marker)
    store.stale_runs(marker)
    store.stale_runs(direct=True)
    store.get_run(rid)
    store.trace_run(rid)
    store.unflag(marker + "2", rid)
    assert seen and not [s for s in seen if "MARK" in s]
