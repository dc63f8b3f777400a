"""The triage UI in real headless Chromium, on a store filled with a real pipeline's spans.

Each test drives the page as a person would (typing commands, clicking links, nodes and
toggles) and checks what the page or the store shows afterwards. Screenshots of every page go
to ``artifacts/screenshots/``.
"""

from __future__ import annotations

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
            if (i >= 0 && gd.data[t].mode === 'markers+text') { return [t, i]; }
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
        gd.data.forEach(function (t) { if (t.mode === 'markers+text') { ids = ids.concat(t.customdata); } });
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
    open_page(browser, ui_url, "/recent?limit=10", "Recent runs")
    first = [a.text for a in browser.find_elements(By.CSS_SELECTOR, ".card-head a.run-id")]
    assert len(first) == 10
    browser.find_element(By.ID, "older").click()
    _wait(browser, lambda d: "before=" in d.current_url and
          d.find_elements(By.CSS_SELECTOR, ".card-head a.run-id")[0].text not in first)
    second = [a.text for a in browser.find_elements(By.CSS_SELECTOR, ".card-head a.run-id")]
    assert len(second) == 10 and not set(first) & set(second)
    browser.refresh()
    _wait(browser, lambda d: [a.text for a in d.find_elements(By.CSS_SELECTOR, ".card-head a.run-id")]
          == second)


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
