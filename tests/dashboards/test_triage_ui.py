"""Issue 14 in the UI: the review table's status and stale columns agree with the store (and so
with the CLI), each entry shows its why, the stale page marks inherited staleness and filters it,
trace edges carry versions."""

from __future__ import annotations

from typing import Any

import pytest
import ui_pipeline as P
from dash_client import PageClient, texts


@pytest.fixture(scope="module")
def pages(ui_settings, ui_store, filled):
    from mltrace_otel.dashboards.app import create_app

    return PageClient(create_app(ui_settings, ui_store))


def _find(tree: Any, element_id: str) -> Any:
    if isinstance(tree, list):
        for x in tree:
            found = _find(x, element_id)
            if found is not None:
                return found
    elif isinstance(tree, dict):
        props = tree.get("props", {})
        if props.get("id") == element_id:
            return tree
        return _find(props.get("children"), element_id)
    return None


def _rows(table: Any) -> list[list[str]]:
    """Each body row of a table as the texts of its cells."""
    body = table["props"]["children"][1]["props"]["children"]
    return [[" ".join(texts(td)) for td in tr["props"]["children"]] for tr in body
            if "card-slot" not in tr["props"].get("className", "")]  # a row's card opens below it


def test_review_table_status_stale_and_why_agree_with_the_store(pages, ui_store, filled):
    ui_store.flag(P.PREDICTIONS[0])
    try:
        review = ui_store.review()
        page = pages.page("/review")["page"]
        rows = _rows(_find(page, "review-table"))
        assert len(rows) == len(review.entries)
        # split failed: first among equal counts, with its why
        assert review.entries[0].run.id == filled.ids["split"]
        assert review.entries[0].why[0] == "failed: ValueError: label column is empty"
        for row, e in zip(rows, review.entries, strict=True):
            number, coverage, _component, run, _start, status, stale, why = row
            assert e.run.id in run
            assert coverage == f"{100 * e.coverage:.0f}% · {e.count}/1"
            assert status == ("failed" if e.run.failed else "ok")  # the CLI's words
            if not e.run.stale:
                assert stale == ""
            elif e.run.stale_direct:
                assert stale == "⚠ stale"
            else:
                assert stale == "⚠ stale (inherited)"
            assert all(w in why for w in e.why) and (e.why or why == "—")
        by_id = {e.run.id: r for e, r in zip(review.entries, rows, strict=True)}
        assert by_id[filled.ids["train"]][6] == "⚠ stale"  # read the failed split's output
        assert by_id[filled.ids["predict0"]][6] == "⚠ stale (inherited)"
        assert not _find(page, f"card-review-{review.entries[0].run.id}")  # cards open on demand
    finally:
        ui_store.unflag_all()


def test_stale_page_marks_inherited_and_filters_to_direct_causes(pages, ui_store, filled):
    every = " ".join(texts(pages.page("/stale")["page"]))
    assert "inherited: " in every
    assert filled.ids["predict2"] in {r.id for r in ui_store.stale_runs()}  # the latest predict
    direct = texts(pages.page("/stale?direct=1")["page"])
    assert any("(direct causes)" in t for t in direct)
    assert not any(t == "inherited: " for t in direct)
    assert {r.id for r in ui_store.stale_runs(direct=True)} == {
        r.id for r in ui_store.stale_runs() if r.stale_direct}


def test_review_scope_from_the_url(pages, ui_store, filled):
    ui_store.flag(P.PREDICTIONS[0])
    try:
        page = pages.page("/review?component=split")["page"]
        rows = _rows(_find(page, "review-table"))
        assert len(rows) == 1 and filled.ids["split"] in rows[0][3]
        assert any("Only runs with component split." == t for t in texts(page))
    finally:
        ui_store.unflag_all()
