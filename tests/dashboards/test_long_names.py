"""Long names on the trace, impact and run pages of a narrow window: text wraps between words
(or after a path separator or a hyphen), never inside a word (issue 17, in real Chromium).

This module's store holds the UI pipeline plus a chain with long, many-word names.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

# the query tests' run builder (plain OTel spans with explicit times): tests/ is on sys.path
from store.query_helpers import Runs

pytestmark = pytest.mark.browser

RAW = "/data/raw/quarterly wine quality extract for the northern region.csv"
REPORT = "/reports/processed/quarterly wine quality summary for the northern region.txt"
COMPONENT = "summarise quarterly wine quality"

# Every word of the text under the selector whose characters sit on two lines, other than after
# a path separator or a hyphen (2026-/01-01): a word folded inside.
SPLIT_WORDS = """
var out = [];
document.querySelectorAll(arguments[0]).forEach(function (root) {
  var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT), node;
  while ((node = walker.nextNode())) {
    var re = /\\S+/g, m;
    while ((m = re.exec(node.data))) {
      var range = document.createRange(), prev = null;
      for (var i = m.index; i < m.index + m[0].length; i++) {
        range.setStart(node, i); range.setEnd(node, i + 1);
        var rect = range.getBoundingClientRect();
        if (!rect.width && !rect.height) { continue; }
        if (prev !== null && rect.top > prev.top + 2 && '/\\\\-'.indexOf(prev.ch) < 0) {
          out.push(m[0]); break;
        }
        prev = {top: rect.top, ch: node.data[i]};
      }
    }
  }
});
return out;
"""


@pytest.fixture(scope="module")
def long_chain(ui_store, filled):
    r = Runs()
    first = r.run("extract quarterly wine quality", [], [RAW], at=0)
    last = r.run(COMPONENT, [RAW], [REPORT], at=10, owner="the analytics and reporting team")
    r.flush(ui_store)
    return {"first": first, "last": last}


def test_trace_impact_and_run_pages_wrap_between_words(browser, ui_url, long_chain, screenshot):
    from test_browser import _settled, open_page

    browser.set_window_size(520, 1100)
    try:
        pages = [(f"/trace/{quote(REPORT, safe='')}", f"Trace of {REPORT}", "trace_long_names_narrow"),
                 (f"/impact/{quote(RAW, safe='')}", f"Impact of {RAW}", "impact_long_names_narrow"),
                 (f"/inspect/{long_chain['last']}", f"Run {long_chain['last']}", "inspect_long_names_narrow")]
        for path, title, shot in pages:
            open_page(browser, ui_url, path, title)
            _settled(browser)
            screenshot(browser, shot)
            split = browser.execute_script(SPLIT_WORDS, "#page-title, .card .meta dd, .card .io li, "
                                                        ".pointer-list li, main table.runs td")
            assert split == [], (path, split)
        # the long title did wrap (between its words)
        open_page(browser, ui_url, f"/trace/{quote(REPORT, safe='')}", f"Trace of {REPORT}")
        assert browser.execute_script(
            "return document.getElementById('page-title').getBoundingClientRect().height") > 50
    finally:
        browser.set_window_size(1280, 1300)
