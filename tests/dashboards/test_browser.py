"""The triage UI in real headless Chromium, on a store filled with a real pipeline's spans.

Each test drives the page as a person would (typing commands, clicking links, nodes and
toggles) and checks what the page or the store shows afterwards. Screenshots of every page go
to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

import pytest
import ui_pipeline as P
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.browser


def _wait(driver, predicate, timeout: float = 15.0):
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
                         ).until(lambda d: predicate(d))


def _title(driver) -> str:
    els = driver.find_elements(By.ID, "page-title")
    try:
        return els[0].text if els else ""
    except Exception:  # re-rendered between find and read
        return ""


def _path(driver) -> str:
    return unquote(urlsplit(driver.current_url).path)


def open_page(driver, base: str, path: str, title_part: str) -> None:
    driver.get(base + path)
    _wait(driver, lambda d: title_part in _title(d))


def type_command(driver, text: str) -> None:
    bar = driver.find_element(By.ID, "cmd")
    bar.send_keys(Keys.CONTROL, "a")
    bar.send_keys(Keys.DELETE)
    bar.send_keys(text)
    bar.send_keys(Keys.ENTER)


def _settled(driver) -> None:
    """Wait until Dash has no callback in flight (plotly/markdown chunks loaded too)."""
    _wait(driver, lambda d: d.execute_script(
        "var graphs = document.querySelectorAll('#lineage-graph, #history-chart');"
        "for (var i = 0; i < graphs.length; i++) {"
        "  if (!graphs[i].querySelector('.main-svg')) { return false; } }"
        "return document.readyState === 'complete' && "
        "!document.querySelector('[data-dash-is-loading=\"true\"]');"))


COMMANDS = [
    # (command typed, URL path it leads to, text in the page title, screenshot name)
    ("recent", "/recent", "Recent runs", "recent"),
    ("recent 5", "/recent", "Recent runs", "recent_5"),
    ("history heartbeat", "/history/heartbeat", "History of heartbeat", "history"),
    ("inspect {train}", "/inspect/{train}", "Run {train}", "inspect"),
    (f'trace "{P.MODEL}"', f"/trace/{P.MODEL}", f"Trace of {P.MODEL}", "trace"),
    (f"impact {P.CLEAN}", f"/impact/{P.CLEAN}", f"Impact of {P.CLEAN}", "impact"),
    ("tag wine", "/tag/wine", "Components tagged wine", "tag"),
    ("review", "/review", "Review", "review"),
    ("stale", "/stale", "Stale runs", "stale"),
    ("components", "/components", "Components", "components"),
    ("help", "/help", "Commands", "help"),
]


@pytest.mark.parametrize("text,path,title,shot", COMMANDS, ids=[c[3] for c in COMMANDS])
def test_each_command_in_the_bar_opens_its_page(browser, ui_url, filled, screenshot, text, path, title,
                                                shot):
    ids = filled.ids
    text, path, title = (s.format(**ids) for s in (text, path, title))
    open_page(browser, ui_url, "/help", "Commands")
    type_command(browser, text)
    _wait(browser, lambda d: _path(d) == path and title in _title(d))
    _settled(browser)
    assert not browser.find_elements(By.ID, "page-error"), browser.find_element(By.ID, "page-error").text
    screenshot(browser, f"cmd_{shot}")


def test_bad_command_says_what_is_wrong(browser, ui_url, filled):
    open_page(browser, ui_url, "/recent", "Recent runs")
    type_command(browser, "tarce model.pkl")
    _wait(browser, lambda d: "unknown command 'tarce'" in d.find_element(By.ID, "cmd-error").text)
    assert _path(browser) == "/recent"


def test_pointer_link_opens_its_trace_and_reload_keeps_the_page(browser, ui_url, filled, screenshot):
    open_page(browser, ui_url, f"/inspect/{filled.ids['train'][:8]}", "Run ")
    links = [a for a in browser.find_elements(By.CSS_SELECTOR, ".io.inputs a.pointer")
             if a.text == P.FEATURES]
    assert links, "the train card lists its features input as a link"
    links[0].click()
    _wait(browser, lambda d: f"Trace of {P.FEATURES}" in _title(d))
    assert _path(browser) == f"/trace/{P.FEATURES}"
    assert browser.find_element(By.ID, "cmd").get_attribute("value") == f"trace '{P.FEATURES}'"
    shared = browser.current_url
    browser.refresh()
    _wait(browser, lambda d: f"Trace of {P.FEATURES}" in _title(d))
    assert browser.current_url == shared
    assert browser.title == f"trace '{P.FEATURES}' · mltrace"
    _wait(browser, lambda d: filled.ids["featuregen"] in d.find_element(By.ID, "selected-card").text)
    screenshot(browser, "trace_after_reload")


def _node_element(driver, run_id: str):
    """The SVG point of a run in the lineage graph."""
    where = driver.execute_script("""
        var gd = document.querySelector('#lineage-graph .js-plotly-plot');
        for (var t = 0; t < gd.data.length; t++) {
            var cd = gd.data[t].customdata || [];
            var i = cd.indexOf(arguments[0]);
            if (i >= 0 && (gd.data[t].name === 'ok' || gd.data[t].name === 'failed')) { return [t, i]; }
        }
        return null;""", run_id)
    assert where, f"run {run_id} is a node of the graph"
    traces = driver.find_elements(By.CSS_SELECTOR, "#lineage-graph g.scatterlayer g.trace")
    return traces[where[0]].find_elements(By.CSS_SELECTOR, "path.point")[where[1]]


def test_clicking_a_graph_node_opens_its_card(browser, ui_url, filled, screenshot):
    open_page(browser, ui_url, "/trace/" + quote(P.MODEL, safe=""), "Trace of")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#lineage-graph path.point"))
    card = browser.find_element(By.ID, "selected-card")
    assert filled.ids["train"] in card.text  # the trace starts at the model's producer

    def opened(d) -> bool:
        head = d.find_element(By.CSS_SELECTOR, "#selected-card .card-head a.run-id")
        return head.text == filled.ids["split"]

    for attempt in range(3):  # plotly may still be laying out when the first click lands
        node = _node_element(browser, filled.ids["split"])
        ActionChains(browser).move_to_element(node).pause(0.3).click().perform()
        try:
            _wait(browser, opened, timeout=4)
            break
        except TimeoutException:
            if attempt == 2:
                raise
    card_text = browser.find_element(By.ID, "selected-card").text
    assert "FAILED" in card_text and "label column is empty" in card_text
    # every run of the trace is drawn once: model <- train <- (featuregen, split) <- clean <- ingest
    n = browser.execute_script("""
        var gd = document.querySelector('#lineage-graph .js-plotly-plot'); var ids = [];
        gd.data.forEach(function (t) {
            if (t.name === 'ok' || t.name === 'failed') { ids = ids.concat(t.customdata); } });
        return ids.length;""")
    assert n == 5
    screenshot(browser, "trace_node_clicked")


def _flag_toggle(driver, pointer: str):
    for li in driver.find_elements(By.CSS_SELECTOR, ".io.outputs li, #flagged-list li"):
        if li.find_element(By.CSS_SELECTOR, "a.pointer").text == pointer:
            return li
    raise AssertionError(f"no flag toggle for {pointer}")


def test_flag_and_unflag_an_output_changes_the_review(browser, ui_url, ui_store, filled, screenshot):
    for i in (0, 1):
        open_page(browser, ui_url, f"/inspect/{filled.ids[f'predict{i}']}", "Run ")
        li = _flag_toggle(browser, P.PREDICTIONS[i])
        li.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
        _wait(browser, lambda d, li=li: "flagged" in li.text and "✓" in li.text)
    assert set(ui_store.flagged()) >= {P.PREDICTIONS[0], P.PREDICTIONS[1]}

    open_page(browser, ui_url, "/review", "Review")
    flagged = browser.find_element(By.ID, "flagged-list").text
    assert P.PREDICTIONS[0] in flagged and P.PREDICTIONS[1] in flagged
    table = browser.find_element(By.ID, "review-table").text
    train_row = next(r for r in table.splitlines() if filled.ids["train"] in r)
    assert "100%" in train_row and "2/2" in train_row
    screenshot(browser, "review_two_flagged")

    # coverage shows on the card when reached from review
    browser.find_element(By.CSS_SELECTOR, f"#review-table a[href*='{filled.ids['predict0']}']").click()
    _wait(browser, lambda d: f"Run {filled.ids['predict0']}" in _title(d))
    assert "coverage 50% (1/2 flagged)" in browser.find_element(By.CSS_SELECTOR, ".card").text

    # unflag one from the review page itself, then the other with the command bar
    open_page(browser, ui_url, "/review", "Review")
    li = _flag_toggle(browser, P.PREDICTIONS[0])
    li.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    _wait(browser, lambda d, li=li: "unflagged" in li.text)
    assert P.PREDICTIONS[0] not in ui_store.flagged()
    type_command(browser, f"unflag {P.PREDICTIONS[1]}")
    _wait(browser, lambda d: P.PREDICTIONS[1] not in d.find_element(By.ID, "flagged-list").text)
    assert "Nothing is flagged" in browser.find_element(By.ID, "flagged-list").text
    type_command(browser, f"flag {P.PREDICTIONS[2]}")
    _wait(browser, lambda d: P.PREDICTIONS[2] in d.find_element(By.ID, "flagged-list").text)
    assert ui_store.flagged() == [P.PREDICTIONS[2]]
    ui_store.unflag_all()


def test_edited_note_is_saved_in_the_store(browser, ui_url, ui_store, filled, screenshot):
    run_id = filled.ids["featuregen"]
    open_page(browser, ui_url, f"/inspect/{run_id}", "Run ")
    area = browser.find_element(By.CSS_SELECTOR, "textarea.notes")
    area.send_keys(Keys.CONTROL, "a")
    area.send_keys(Keys.DELETE)
    area.send_keys("features look skewed — check ü-batch <b>tomorrow</b>")
    browser.find_element(By.XPATH, "//button[text()='Save notes']").click()
    _wait(browser, lambda d: "saved" in d.find_element(By.CSS_SELECTOR, ".notes-box").text)
    assert ui_store.get_run(run_id).notes == "features look skewed — check ü-batch <b>tomorrow</b>"
    browser.refresh()
    _wait(browser, lambda d: "tomorrow" in d.find_element(By.CSS_SELECTOR, ".notes-view").text)
    assert "<b>tomorrow</b>" in browser.find_element(By.CSS_SELECTOR, ".notes-view").text
    screenshot(browser, "inspect_note_saved")


def test_script_in_notes_and_code_renders_as_text(browser, ui_url, filled, screenshot):
    open_page(browser, ui_url, f"/inspect/{filled.ids['clean']}", "Run ")
    _wait(browser, lambda d: "window.__pwned = 3" in d.find_element(By.CSS_SELECTOR, ".code").text)
    assert P.SCRIPT_NOTE in browser.find_element(By.CSS_SELECTOR, ".notes-view").text
    code = browser.find_element(By.CSS_SELECTOR, ".code").text
    assert "<script>window.__pwned = 3</script>" in code and "return out" in code
    assert browser.find_elements(By.CSS_SELECTOR, ".code [class*=hljs-]"), "code is highlighted"
    assert browser.execute_script("return window.__pwned === undefined")
    assert not browser.find_elements(By.CSS_SELECTOR, "main img")
    screenshot(browser, "inspect_script_literal")


def test_recent_pages_through_older_runs(browser, ui_url, filled):
    def shown(d) -> list[str]:
        return [r[2] for r in (_table_rows(d) or [])]

    open_page(browser, ui_url, "/recent?limit=10", "Recent runs")
    first = shown(browser)
    assert len(first) == 10
    browser.find_element(By.ID, "older").click()
    _wait(browser, lambda d: "before=" in d.current_url and shown(d) and shown(d)[0] not in first)
    second = shown(browser)
    assert len(second) == 10 and not set(first) & set(second)
    browser.refresh()
    _wait(browser, lambda d: shown(d) == second)
    assert "before=" in browser.current_url  # the filters' first render keeps the page
    # paging within a filter: the failed runs, two at a time
    open_page(browser, ui_url, "/recent?limit=2&status=failed", "Recent runs")
    seen: list[str] = []
    for _ in range(3):
        _wait(browser, lambda d, seen=tuple(seen): shown(d) and shown(d)[0] not in seen)
        seen += shown(browser)
        if len(seen) < 5:
            browser.find_element(By.ID, "older").click()
    assert len(seen) == len(set(seen)) == 5 and not browser.find_elements(By.ID, "older")


def test_history_chart_and_date_range(browser, ui_url, filled, screenshot):
    open_page(browser, ui_url, "/history/heartbeat", "History of heartbeat")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#history-chart path.point"))
    rows = browser.find_elements(By.CSS_SELECTOR, "table.runs tbody tr")
    assert len(rows) == 25
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.runs tbody tr.failed")) == 4
    screenshot(browser, "history")
    point = browser.find_elements(By.CSS_SELECTOR, "#history-chart g.scatterlayer g.trace path.point")[0]
    ActionChains(browser).move_to_element(point).pause(0.3).click().perform()
    _wait(browser, lambda d: _path(d).startswith("/inspect/") and "Run " in _title(d))
    assert "heartbeat" in browser.find_element(By.CSS_SELECTOR, ".card-head").text
    browser.back()
    _wait(browser, lambda d: "History of heartbeat" in _title(d)
          and d.find_elements(By.CSS_SELECTOR, "#history-chart path.point"))
    runs = browser.find_element(By.ID, "hist-limit")
    runs.send_keys(Keys.CONTROL, "a")
    runs.send_keys("5")
    browser.find_element(By.ID, "hist-apply").click()
    _wait(browser, lambda d: "limit=5" in d.current_url
          and len(d.find_elements(By.CSS_SELECTOR, "table.runs tbody tr")) == 5)
    open_page(browser, ui_url, "/history/heartbeat?since=2000-01-01&until=2000-12-31", "History of")
    _wait(browser, lambda d: "0 runs" in d.find_element(By.TAG_NAME, "main").text)
    assert browser.find_element(By.ID, "hist-since").get_attribute("value") == "2000-01-01"


def test_theme_toggle_persists_across_reloads(browser, ui_url, filled, screenshot):
    open_page(browser, ui_url, "/recent", "Recent runs")
    theme = browser.execute_script("return document.documentElement.getAttribute('data-theme')")
    browser.find_element(By.ID, "theme-toggle").click()
    other = "dark" if theme != "dark" else "light"
    _wait(browser, lambda d: d.execute_script(
        "return document.documentElement.getAttribute('data-theme')") == other)
    browser.refresh()
    _wait(browser, lambda d: "Recent runs" in _title(d))
    assert browser.execute_script("return document.documentElement.getAttribute('data-theme')") == other
    if other == "dark":
        screenshot(browser, "recent_dark")
        open_page(browser, ui_url, f"/inspect/{filled.ids['clean']}", "Run ")
        _settled(browser)
        screenshot(browser, "inspect_dark")
    browser.find_element(By.ID, "theme-toggle").click()
    _wait(browser, lambda d: d.execute_script(
        "return document.documentElement.getAttribute('data-theme')") == theme)


def _status(driver, path: str) -> int:
    """The HTTP status of a GET from the page itself (Chromium's fetch, same origin)."""
    return driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {cache: 'no-store'}).then(function (r) { done(r.status); },"
        " function () { done(-1); });", path)


def test_unknown_paths_answer_404_and_known_ones_200(browser, ui_url, filled, screenshot):
    open_page(browser, ui_url, "/nothing/here", "Commands")
    assert "No page at /nothing/here." in browser.find_element(By.ID, "page-error").text
    screenshot(browser, "unknown_path_404")
    for path in ("/metrics", "/nothing/here", "/favicon.ico", "/Recent", "/recentx/1"):
        assert _status(browser, path) == 404, path
    known = ["/", "/recent", "/recent?limit=3", "/history/heartbeat", f"/inspect/{filled.ids['train']}",
             "/trace/" + quote(P.MODEL, safe=""), "/impact/" + quote(P.CLEAN, safe=""), "/tag",
             "/tag/wine", "/review", "/stale", "/components", "/help", "/api/v1/recent",
             "/api/v1/version", "/_dash-layout", "/assets/style.css"]
    for path in known:
        assert _status(browser, path) == 200, path
    assert _status(browser, "/api/v1/nope") == 404  # the API's own JSON 404


def test_command_bar_shows_its_whole_text(browser, ui_url, filled, screenshot):
    open_page(browser, ui_url, "/impact/wine_raw_4970_v1.csv", "impact wine_raw_4970_v1.csv")
    m = browser.execute_script("""
        var e = document.getElementById('cmd'), cs = getComputedStyle(e);
        return {value: e.value, scroll: e.scrollHeight, client: e.clientHeight,
                font: parseFloat(cs.fontSize), line: parseFloat(cs.lineHeight),
                pad: parseFloat(cs.paddingTop) + parseFloat(cs.paddingBottom)};""")
    assert m["value"] == "impact wine_raw_4970_v1.csv"
    assert m["scroll"] <= m["client"], m  # nothing scrolled out of the box
    content = m["client"] - m["pad"]
    assert m["line"] >= 1.2 * m["font"], m  # room for descenders and underscores
    assert content >= m["line"], m
    screenshot(browser, "cmd_bar_underscores")


def _table_rows(driver, table_id: str = "runs-table") -> list[list[str]]:
    """The text of each cell of each run row of a table (card rows left out)."""
    return driver.execute_script("""
        var t = document.getElementById(arguments[0]); if (!t) { return null; }
        return Array.from(t.querySelectorAll('tbody tr.run-row')).map(function (tr) {
            return Array.from(tr.children).map(function (td) { return td.innerText.trim(); }); });""",
                                 table_id)


def _pick(driver, dropdown_id: str, value: str) -> None:
    """Choose ``value`` in a dcc.Dropdown, as a person does: open it, click the option."""
    driver.find_element(By.ID, dropdown_id).click()
    option = _wait(driver, lambda d: next(
        (o for o in d.find_elements(By.CSS_SELECTOR, ".dash-dropdown-options .dash-options-list-option")
         if o.text.strip() == value), None))
    option.click()


def test_recent_is_a_table_filtered_by_status_and_component(browser, ui_url, ui_store, filled, screenshot):
    every = ui_store.recent(200)
    open_page(browser, ui_url, "/recent", "Recent runs")
    rows = _table_rows(browser)
    assert len(rows) == 20 and not browser.find_elements(By.CSS_SELECTOR, "main .card")  # no cards
    assert [r[2] for r in rows] == [r.id for r in every[:20]]
    height = browser.execute_script("return document.getElementById('runs-table').offsetHeight")
    assert height < 700, height  # 20 runs in one screen
    screenshot(browser, "recent_table")

    # status: failed
    browser.find_element(By.XPATH, "//*[@id='rf-status']//label[normalize-space()='failed']").click()
    failed = [r.id for r in every if r.failed]
    _wait(browser, lambda d: "status=failed" in d.current_url
          and [r[2] for r in (_table_rows(d) or [])] == failed)
    assert {r[4] for r in _table_rows(browser)} == {"failed"} and len(failed) == 5  # split + 4 beats
    # and component: heartbeat
    _pick(browser, "rf-component", "heartbeat")
    beats = [r.id for r in every if r.failed and r.component == "heartbeat"]
    _wait(browser, lambda d: "component=heartbeat" in d.current_url
          and [r[2] for r in (_table_rows(d) or [])] == beats)
    assert {(r[1], r[4], r[6]) for r in _table_rows(browser)} == {("heartbeat", "failed", "ops")}
    screenshot(browser, "recent_filtered_failed_heartbeat")
    browser.refresh()  # the filter is in the URL
    _wait(browser, lambda d: [r[2] for r in (_table_rows(d) or [])] == beats)
    assert browser.find_element(By.ID, "rf-component").text.strip() == "heartbeat"

    # a click on a row opens its card below it, a second click closes it
    target = beats[1]
    row = browser.find_element(By.XPATH,
                               f"//tr[contains(@class,'run-row')][td[normalize-space()='{target}']]")
    row.find_elements(By.TAG_NAME, "td")[3].click()  # the duration cell (not a link)
    card = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#runs-table .card a.run-id"))
    assert card.text == target and _path(browser) == "/recent"
    assert "no answer in 5 s" in browser.find_element(By.CSS_SELECTOR, "#runs-table .card").text
    screenshot(browser, "recent_row_card_open")
    row.find_elements(By.TAG_NAME, "td")[3].click()
    _wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "#runs-table .card"))

    # owner, tag and a time range, from the URL
    open_page(browser, ui_url, "/recent?owner=bo", "Recent runs")
    _wait(browser, lambda d: {r[2] for r in (_table_rows(d) or [])}
          == {r.id for r in every if r.owner == "bo"})
    open_page(browser, ui_url, "/recent?tag=model", "Recent runs")
    _wait(browser, lambda d: [r[2] for r in (_table_rows(d) or [])] == [filled.ids["train"]])
    old = next(r for r in every if r.id == filled.ids["old_ingest"]).start
    until = (old.date()).isoformat()
    open_page(browser, ui_url, f"/recent?until={until}", "Recent runs")
    _wait(browser, lambda d: [r[2] for r in (_table_rows(d) or [])] == [filled.ids["old_ingest"]])
    assert browser.find_element(By.ID, "rf-until").get_attribute("value") == until
    open_page(browser, ui_url, "/recent?since=2000-01-01&until=2000-12-31", "Recent runs")
    _wait(browser, lambda d: "No runs match" in d.find_element(By.ID, "recent-empty").text)
    browser.find_element(By.ID, "rf-clear").click()
    _wait(browser, lambda d: _path(d) == "/recent" and len(_table_rows(d) or []) == 20)


def test_recent_table_sorts_by_a_column(browser, ui_url, ui_store, filled, screenshot):
    open_page(browser, ui_url, "/recent?limit=30", "Recent runs")
    before = _table_rows(browser)
    browser.find_element(By.ID, "sort-duration").click()
    _wait(browser, lambda d: "sort=duration" in d.current_url
          and "▼" in d.find_element(By.ID, "sort-duration").text)
    runs = {r.id: r for r in ui_store.recent(30)}
    order = [runs[r[2]].duration_s for r in _table_rows(browser)]
    assert order == sorted(order, reverse=True)
    assert {r[2] for r in _table_rows(browser)} == {r[2] for r in before}
    assert "limit=30" in browser.current_url
    browser.find_element(By.ID, "sort-component").click()
    _wait(browser, lambda d: "sort=component" in d.current_url
          and "▲" in d.find_element(By.ID, "sort-component").text)
    names = [r[1] for r in _table_rows(browser)]
    assert names == sorted(names) and len(names) == 30  # names read a-z first
    screenshot(browser, "recent_sorted_by_component")


def test_review_is_one_table_with_the_clis_status_and_stale_and_cards_on_demand(
        browser, ui_url, ui_store, filled, screenshot):
    for p in P.PREDICTIONS[:2]:
        ui_store.flag(p)
    try:
        as_json = ui_store.review().to_json()  # what `mltrace review --json` prints
        open_page(browser, ui_url, "/review", "Review")
        rows = _table_rows(browser, "review-table")
        assert not browser.find_elements(By.CSS_SELECTOR, "main .card")  # no card until asked
        assert len(rows) == len(as_json["entries"])
        for row, e in zip(rows, as_json["entries"], strict=True):
            run = e["run"]
            assert row[3] == run["id"]
            assert row[5] == ("failed" if run["status"] in ("ERROR", "failed") else "ok"), row
            assert bool(row[6]) == bool(run["stale"]) and (not row[6] or row[6].startswith("⚠ stale"))
            assert all(w in row[7] for w in e["why"]) and (e["why"] or row[7] == "—")
        assert {r[5] for r in rows} == {"ok", "failed"}  # split failed, the rest did not
        assert any(r[6] == "⚠ stale" for r in rows) and any(r[6] == "⚠ stale (inherited)" for r in rows)
        # the flagged outputs' checkboxes stand apart from their names
        li = _flag_toggle(browser, P.PREDICTIONS[0])
        name = li.find_element(By.CSS_SELECTOR, "a.pointer").rect
        box = li.find_element(By.CSS_SELECTOR, "input[type=checkbox]").rect
        assert box["x"] >= name["x"] + name["width"] + 8
        screenshot(browser, "review_table")

        split = filled.ids["split"]
        row = browser.find_element(By.XPATH,
                                   f"//*[@id='review-table']//tr[contains(@class,'run-row')][td[normalize-space()='{split}']]")
        row.find_elements(By.TAG_NAME, "td")[1].click()  # the coverage cell
        card = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#review-table .card"))
        assert split in card.find_element(By.CSS_SELECTOR, ".card-head").text
        text = card.text
        assert "coverage 100% (2/2 flagged)" in text and "Why it ranks here: failed: ValueError" in text
        screenshot(browser, "review_row_card_open")
    finally:
        ui_store.unflag_all()


def test_history_chart_series_units_and_iso_dates(browser, ui_url, ui_store, filled, screenshot):
    runs = ui_store.history("heartbeat", 100)
    open_page(browser, ui_url, "/history/heartbeat", "History of heartbeat")
    _settled(browser)
    chart = browser.execute_script("""
        var gd = document.querySelector('#history-chart .js-plotly-plot');
        return {series: gd.data.map(function (t) { return {name: t.name, type: t.type, y: t.y}; }),
                barmode: gd._fullLayout.barmode, ytitle: gd._fullLayout.yaxis.title.text,
                ticks: Array.from(gd.querySelectorAll('.xtick text')).map(function (e) {
                    return e.textContent; })};""")
    by_name = {s["name"]: s for s in chart["series"]}
    unit = "hour"  # the pipeline ran within a minute
    assert chart["barmode"] == "group"  # side by side, never stacked
    runs_per, failures_per = by_name[f"runs per {unit}"], by_name[f"failures per {unit}"]
    assert sum(runs_per["y"]) == len(runs) == P.HEARTBEATS  # every run counted, failed or not
    assert sum(failures_per["y"]) == sum(r.failed for r in runs) == 4
    assert all(r >= f for r, f in zip(runs_per["y"], failures_per["y"], strict=True))
    # millisecond runs are plotted in ms
    assert max(r.duration_s for r in runs) < 1
    assert chart["ytitle"] == "duration (ms)" and "duration (ms)" in by_name
    ok = [r for r in reversed(runs) if not r.failed]
    assert by_name["duration (ms)"]["y"] == pytest.approx([r.duration_s * 1000 for r in ok], abs=0.01)
    iso = re.compile(r"^\d{2}:\d{2}(:\d{2}(\.\d{3})?)?(\d{4}-\d{2}-\d{2})?$|^\d{4}-\d{2}-\d{2}$")
    assert chart["ticks"] and all(iso.match(t) for t in chart["ticks"]), chart["ticks"]
    assert any(runs[0].start.date().isoformat() in t for t in chart["ticks"]), chart["ticks"]
    # ISO date fields: typed as text, read as YYYY-MM-DD
    since = browser.find_element(By.ID, "hist-since")
    assert since.get_attribute("type") == "text" and since.get_attribute("placeholder") == "YYYY-MM-DD"
    day = runs[0].start.date().isoformat()
    since.send_keys(day)
    browser.find_element(By.ID, "hist-apply").click()
    _wait(browser, staleness_of(since))  # the new page replaced the old one (no race with it)
    _wait(browser, lambda d: f"since={day}" in d.current_url
          and d.find_elements(By.CSS_SELECTOR, "#history-chart path.point"))
    assert browser.find_element(By.ID, "hist-since").get_attribute("value") == day
    screenshot(browser, "history_series_ms_iso")


def _run_link(driver, css: str):
    return driver.find_element(By.CSS_SELECTOR, f"#page .card .run-links a.{css}")


def test_run_card_links_previous_next_trace_impact_and_diff(browser, ui_url, ui_store, filled, screenshot):
    beats = sorted(ui_store.history("heartbeat", 100), key=lambda r: (r.start, r.id))
    here, after = beats[10].id, beats[11].id
    open_page(browser, ui_url, f"/inspect/{here}", f"Run {here}")
    _run_link(browser, "to-next").click()
    _wait(browser, lambda d: _title(d) == f"Run {after}" and _path(d) == f"/inspect/{after}")
    screenshot(browser, "inspect_run_links")
    _run_link(browser, "to-previous").click()
    _wait(browser, lambda d: _title(d) == f"Run {here}")
    _run_link(browser, "to-trace").click()
    _wait(browser, lambda d: _title(d) == f"Trace of run {here}" and _path(d) == f"/trace/{here}")
    browser.back()
    _wait(browser, lambda d: _title(d) == f"Run {here}")
    _run_link(browser, "to-impact").click()
    _wait(browser, lambda d: _title(d) == f"Impact of {here}")
    open_page(browser, ui_url, f"/inspect/{beats[-1].id}", "Run ")
    assert browser.find_element(By.CSS_SELECTOR, ".run-links .no-next").text == "latest run of this component"
    assert not browser.find_elements(By.CSS_SELECTOR, ".run-links a.to-next")

    # the diff of the new ingest against the one 45 days before: outputs and code
    new = filled.ids["ingest"]
    open_page(browser, ui_url, f"/inspect/{new}", f"Run {new}")
    _run_link(browser, "to-diff").click()
    _wait(browser, lambda d: _title(d) == f"Diff of run {new}" and _path(d) == f"/diff/{new}")
    _settled(browser)
    outputs = {r[0]: r[3] for r in browser.execute_script("""
        return Array.from(document.querySelectorAll('#diff-outputs tbody tr')).map(function (tr) {
            return Array.from(tr.children).map(function (td) { return td.innerText.trim(); }); });""")}
    assert outputs == {P.RAW: "added", P.OLD_RAW: "removed"}
    assert browser.find_element(By.ID, "diff-inputs").text == "none in either run"
    code = browser.find_element(By.ID, "diff-code").text
    assert f"previous run {filled.ids['old_ingest'][:8]}" in code and "+" in code and "ingest" in code
    assert filled.ids["old_ingest"] in browser.find_element(By.CSS_SELECTOR, ".diff-head").text
    screenshot(browser, "diff_ingest")
    # a first run has nothing to compare with
    open_page(browser, ui_url, f"/diff/{filled.ids['old_ingest']}", "Diff of run")
    assert "No previous run of ingest" in browser.find_element(By.ID, "diff-none").text


def _click_graph_point(driver, trace: int, index: int, opened) -> None:
    for attempt in range(3):  # plotly may still be laying out when the first click lands
        traces = driver.find_elements(By.CSS_SELECTOR, "#lineage-graph g.scatterlayer g.trace")
        point = traces[trace].find_elements(By.CSS_SELECTOR, "path.point")[index]
        ActionChains(driver).move_to_element(point).pause(0.3).click().perform()
        try:
            _wait(driver, opened, timeout=4)
            return
        except TimeoutException:
            if attempt == 2:
                raise


def test_graph_edges_are_labelled_and_the_output_is_a_node(browser, ui_url, filled, screenshot):
    open_page(browser, ui_url, "/trace/" + quote(P.MODEL, safe=""), "Trace of")
    _settled(browser)
    graph = browser.execute_script("""
        var gd = document.querySelector('#lineage-graph .js-plotly-plot');
        var names = gd.data.map(function (t) { return t.name; });
        var layers = document.querySelectorAll('#lineage-graph g.scatterlayer g.trace');
        var labels = names.indexOf('pointer names'), out = names.indexOf('output');
        return {names: names, edges: gd.data[names.indexOf('pointer')].customdata,
                labels: Array.from(layers[labels].querySelectorAll('g.textpoint text')).map(
                    function (e) { return e.textContent; }),
                out: gd.data[out].customdata,
                outText: layers[out].querySelector('g.textpoint text').textContent};""")
    shown = " | ".join(graph["labels"])
    for name in (P.FEATURES, P.TRAIN_SET, P.CLEAN, P.RAW, P.MODEL):
        assert name in shown, (name, shown)  # every pointer of the trace is named on its edge
    assert graph["out"] == [["output", P.MODEL]] and graph["outText"] == P.MODEL  # literal text
    assert browser.execute_script("return window.__pwned === undefined")
    screenshot(browser, "trace_edge_labels")

    # click the label of the featuregen → train edge: its pointers, with links
    i = next(k for k, e in enumerate(graph["edges"])
             if e[1] == filled.ids["featuregen"] and e[2] == filled.ids["train"])
    pointer = graph["names"].index("pointer")
    _click_graph_point(browser, pointer, i, lambda d: d.find_elements(By.ID, "pointer-panel"))
    panel = browser.find_element(By.ID, "pointer-panel")
    assert "featuregen" in panel.text and "train" in panel.text
    assert [a.text for a in panel.find_elements(By.CSS_SELECTOR, "a.pointer")] == [P.FEATURES]
    screenshot(browser, "trace_edge_clicked")
    panel.find_element(By.CSS_SELECTOR, "a.pointer").click()
    _wait(browser, lambda d: _title(d) == f"Trace of {P.FEATURES}")
    browser.back()
    _wait(browser, lambda d: _title(d) == f"Trace of {P.MODEL}")
    _settled(browser)
    out = graph["names"].index("output")
    _click_graph_point(browser, out, 0,
                       lambda d: "Output of this walk" in d.find_element(By.ID, "selected-card").text)
    assert P.MODEL in browser.find_element(By.ID, "pointer-panel").text
