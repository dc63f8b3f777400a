"""Every page over HTTP (the callback the browser calls), errors as panels, and the token check."""

from __future__ import annotations

import base64
import threading
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest
import ui_pipeline as P
from dash_client import PageClient, texts


@pytest.fixture(scope="module")
def pages(ui_settings, ui_store, filled):
    from mltrace_otel.dashboards.app import create_app

    return PageClient(create_app(ui_settings, ui_store))


def _has_error(tree) -> bool:
    return '"page-error"' in str(tree).replace("'", '"')


@pytest.mark.parametrize("url,expect", [
    ("/", "Recent runs"), ("/recent?limit=3", "Recent runs"), ("/history/heartbeat", "History of heartbeat"),
    ("/inspect/{train}", "Run {train}"), ("/trace/" + quote(P.MODEL, safe=""), f"Trace of {P.MODEL}"),
    ("/trace/{split}", "Trace of run {split}"), ("/impact/{clean}", "Impact of {clean}"),
    ("/tag", "Tags"), ("/tag/model", "Components tagged model"), ("/review", "Review"),
    ("/stale", "Stale runs"), ("/components?owner=bo", "Components"), ("/help", "Commands"),
    ("/recent?status=failed&component=heartbeat&sort=duration&order=asc", "Recent runs"),
    ("/diff/{ingest}", "Diff of run {ingest}"), ("/diff/{old_ingest}", "No previous run of "),
])
def test_every_page_renders(pages, filled, url, expect):
    url, expect = url.format(**filled.ids), expect.format(**filled.ids)
    out = pages.page(url)
    assert not _has_error(out["page"]), texts(out["page"])[:20]
    assert any(expect in t for t in texts(out["page"]))


def test_pages_show_what_the_store_holds(pages, filled):
    stale = texts(pages.page("/stale")["page"])
    assert filled.ids["audit"] in stale
    tagged = texts(pages.page("/tag/model")["page"])
    assert "train" in tagged and "clean" not in tagged
    impact = texts(pages.page("/impact/" + quote(P.CLEAN, safe=""))["page"])
    assert all(p in impact for p in P.PREDICTIONS)  # every prediction is downstream of clean
    card = texts(pages.click_node(filled.ids["split"]))
    assert filled.ids["split"] in card and "label column is empty" in "".join(card)


@pytest.mark.parametrize("url,message", [
    ("/inspect/ffffffffffff", "ffffffffffff"), ("/trace/no%2Fsuch%20output.csv", "no/such output.csv"),
    ("/history/heartbeat?since=yesterday", "since='yesterday' is not a date"),
    ("/recent?until=last%20week", "until='last week' is not a date"), ("/diff/ffffffffffff", "ffffffffffff"),
    ("/recent?status=nonsense", "status='nonsense' is not one of ok, failed, stale"),
])
def test_missing_things_are_error_panels(pages, url, message):
    out = pages.page(url)
    assert _has_error(out["page"])
    assert any(message in t for t in texts(out["page"]))


def test_run_id_prefix_opens_the_run(pages, filled):
    out = pages.page(f"/inspect/{filled.ids['train'][:6]}")
    assert any(f"Run {filled.ids['train']}" in t for t in texts(out["page"]))


def test_token_guards_every_request(ui_settings, ui_store, filled):
    from mltrace_otel.dashboards.app import create_app, make_server

    app = create_app(ui_settings.replace(token="s3cret"), ui_store)
    server = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"

    def status(path: str, auth: str | None) -> int:
        req = urllib.request.Request(base + path, headers={"Authorization": auth} if auth else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            assert e.code != 401 or "Basic" in e.headers.get("WWW-Authenticate", "")
            return e.code

    try:
        basic = "Basic " + base64.b64encode(b"anyone:s3cret").decode()
        wrong = "Basic " + base64.b64encode(b"anyone:guess").decode()
        assert status("/recent", None) == 401
        assert status("/_dash-layout", "Bearer nope") == 401
        assert status("/recent", wrong) == 401
        assert status("/recent", "Bearer s3cret") == 200
        assert status("/_dash-layout", basic) == 200
        client = PageClient(app, headers={"Authorization": "Bearer s3cret"})
        assert any("Recent runs" in t for t in texts(client.page("/recent")["page"]))
    finally:
        server.shutdown()


def test_review_reports_a_flagged_output_no_run_produced(pages, ui_store, filled):
    ui_store.flag("ghost/never written.csv")
    ui_store.flag(P.PREDICTIONS[2])
    try:
        shown = texts(pages.page("/review")["page"])
        assert "ghost/never written.csv" in shown and " (no run produced this)" in shown
        assert "50% · 1/2" in shown  # train fed one of the two flagged outputs
    finally:
        ui_store.unflag_all()


def test_unknown_paths_are_404_known_ones_200(ui_settings, ui_store, filled):
    from mltrace_otel.dashboards.app import create_app

    client = create_app(ui_settings, ui_store).server.test_client()
    for path in ("/metrics", "/nothing", "/nothing/here", "/recentx", "/favicon.ico"):
        r = client.get(path)
        assert r.status_code == 404 and b"<!DOCTYPE html>" in r.data, path  # still the app: it says so
    for path in ("/", "/recent", "/trace/" + quote(P.MODEL, safe=""), f"/diff/{filled.ids['train']}",
                 "/help", "/api/v1/version", "/_dash-layout"):
        assert client.get(path).status_code == 200, path
    assert client.get("/api/v1/nope").is_json  # the API's own 404


def test_recent_filters_from_the_url(pages, ui_store, filled):
    every = ui_store.recent(200)

    def run_ids(url: str) -> list[str]:
        return [t for t in texts(pages.page(url)["page"]) if t in {r.id for r in every}]

    assert run_ids("/recent?status=failed&component=heartbeat") == [
        r.id for r in every if r.failed and r.component == "heartbeat"]
    assert run_ids("/recent?status=stale") == [r.id for r in every if r.stale][:20]
    assert set(run_ids("/recent?owner=ana&tag=wine")) == {
        r.id for r in every if r.owner == "ana" and "wine" in r.tags}
    assert run_ids("/recent?status=nonsense&limit=3") == []  # refused (an error panel below)
