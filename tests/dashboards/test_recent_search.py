"""The Recent table's filters search every run, not the newest few hundred (issue 17).

This module's store holds the UI pipeline plus, older than all of it, one run of a component
``legacy`` (owner zed, tag rare, failed), one of ``odd one`` (an owner with quotes and SQL)
and then NEWER runs of ``noise`` (owner ops) that none
of the filters below match: the match sits behind more than 500 newer runs.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

import pytest
from dash_client import PageClient, texts

# the query tests' run builder (plain OTel spans with explicit times): tests/ is on sys.path
from store.query_helpers import Runs

NEWER = 520
NASTY = "zed'; DROP TABLE mltrace_runs; -- \"q\" {owner:String} %s \\'"


@pytest.fixture(scope="module")
def crowded(ui_store, filled):
    r = Runs()
    old = r.run("legacy", [], ["legacy/out.csv"], at=0, owner="zed", tags=["rare"], error="boom")
    odd = r.run("odd one", [], ["legacy/odd.csv"], at=5, owner=NASTY, tags=["odd"])
    noise = [r.run("noise", [], [f"noise/{i}.csv"], at=100 + i, owner="ops", tags=["ops"])
             for i in range(NEWER)]
    r.flush(ui_store)
    return {"old": old, "odd": odd, "noise": noise[::-1]}


@pytest.fixture(scope="module")
def pages(ui_settings, ui_store, crowded):
    from mltrace_otel.dashboards.app import create_app

    return PageClient(create_app(ui_settings, ui_store))


def _shown(pages: PageClient, url: str, among: set[str]) -> list[str]:
    return [t for t in texts(pages.page(url)["page"]) if t in among]


def _prop_of(tree, element_id: str, prop: str):
    """A prop of the element with this id in a rendered tree (None when absent)."""
    if isinstance(tree, list):
        return next((v for v in (_prop_of(x, element_id, prop) for x in tree) if v is not None), None)
    if isinstance(tree, dict):
        props = tree.get("props", {})
        if props.get("id") == element_id:
            return props.get(prop)
        return _prop_of(props.get("children"), element_id, prop)
    return None


def test_a_filter_finds_a_match_behind_more_than_500_newer_runs(pages, ui_store, crowded):
    every = {crowded["old"], crowded["odd"], *crowded["noise"]}
    for query in ("owner=zed", "tag=rare", "status=failed&component=legacy",
                  "status=failed&until=2026-01-02", "component=legacy&owner=zed"):
        out = pages.page(f"/recent?{query}")["page"]
        assert _shown(pages, f"/recent?{query}", every) == [crowded["old"]], query
        assert "1 shown matching the filters" in " ".join(texts(out)), query
        assert _prop_of(out, "older", "href") is None  # nothing older matches
    assert _shown(pages, "/recent?until=2026-01-01T00:01", every) == [crowded["odd"], crowded["old"]]
    # the page no longer says that filters look through only the newest runs
    assert not any("newest 500" in t for t in texts(pages.page("/recent?owner=zed")["page"]))


def test_older_runs_pages_through_every_match_once(pages, crowded):
    every = set(crowded["noise"])
    url = "/recent?" + urlencode({"owner": "ops", "limit": 150})
    seen: list[str] = []
    for _ in range(10):
        out = pages.page(url)["page"]
        seen += [t for t in texts(out) if t in every]
        href = _prop_of(out, "older", "href")
        if href is None:
            break
        assert "owner=ops" in href  # the filter stays on the next page
        url = href
    assert seen == crowded["noise"]  # newest first, each once, all NEWER of them


def test_a_user_string_with_quotes_and_sql_is_only_a_value(pages, ui_store, crowded):
    every = {crowded["old"], crowded["odd"], *crowded["noise"]}
    assert _shown(pages, "/recent?owner=" + quote(NASTY, safe=""), every) == [crowded["odd"]]
    out = pages.page("/recent?owner=" + quote("zed'; --", safe=""))["page"]
    assert "No runs match these filters." in texts(out)
    assert ui_store.recent_page(1, owner="zed").runs[0].id == crowded["old"]  # the store is intact


@pytest.mark.browser
def test_filtering_in_the_browser_shows_the_old_match(browser, ui_url, crowded, screenshot):
    from test_browser import _pick, _table_rows, _wait, open_page

    open_page(browser, ui_url, "/recent", "Recent runs")
    _pick(browser, "rf-owner", "zed")
    _wait(browser, lambda d: "owner=zed" in d.current_url
          and [r[2] for r in (_table_rows(d) or [])] == [crowded["old"]])
    row = _table_rows(browser)[0]
    assert row[1] == "legacy" and row[4] == "failed" and row[6] == "zed"
    screenshot(browser, "recent_filter_finds_old_match")
    open_page(browser, ui_url, "/recent?component=noise&limit=500", "Recent runs")
    _wait(browser, lambda d: [r[2] for r in (_table_rows(d) or [])] == crowded["noise"][:500])
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "older").click()
    _wait(browser, lambda d: [r[2] for r in (_table_rows(d) or [])] == crowded["noise"][500:])
    assert not browser.find_elements(By.ID, "older")
