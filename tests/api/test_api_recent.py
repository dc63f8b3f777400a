"""``/api/v1/recent`` with filters, over real HTTP, and the client and the CLI through ``--server``.

The store (embedded, this process) holds one old run of ``legacy`` (owner zed, tag rare,
failed), one of ``odd one`` whose owner is a string of quotes and SQL, then NEWER runs of
``noise`` that the filters do not match. The blueprint is served by werkzeug on a free port.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest

# the query tests' run builder (plain OTel spans with explicit times): tests/ is on sys.path
from store.query_helpers import Runs

NEWER = 520
NASTY = "zed'; DROP TABLE mltrace_runs; -- \"q\" {owner:String} %s \\'"
TOKEN = "t0ken"


@dataclass
class Api:
    url: str
    store: Any
    ids: dict[str, Any]

    def get(self, path: str, params: dict[str, Any] | None = None) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON body, headers) of a GET; ``path`` may carry its own query string."""
        host, port = self.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            conn.request("GET", path + (f"?{urlencode(params)}" if params else ""),
                         headers={"Authorization": f"Bearer {TOKEN}"})
            r = conn.getresponse()
            return r.status, json.loads(r.read()), {k.lower(): v for k, v in r.getheaders()}
        finally:
            conn.close()


@pytest.fixture(scope="module")
def api(store_dir, tmp_path_factory) -> Iterator[Api]:
    pytest.importorskip("flask")
    from flask import Flask
    from werkzeug.serving import make_server

    from mltrace_otel.settings import Settings
    from mltrace_otel.store import open_store
    from mltrace_otel.web_api import make_blueprint

    home = tmp_path_factory.mktemp("recent_api")
    settings = Settings.from_env({}, mltrace_dir=home, store_wait_s=10.0,
                                 store_url=f"chdb://{store_dir.as_posix()}?database=recent_api")
    store = open_store(settings)
    r = Runs()
    ids = {"old": r.run("legacy", [], ["legacy/out.csv"], at=0, owner="zed", tags=["rare"], error="boom"),
           "odd": r.run("odd one", [], ["odd.csv"], at=5, owner=NASTY, tags=["odd"]),
           "noise": [r.run("noise", [], [f"noise/{i}.csv"], at=100 + i, owner="ops")
                     for i in range(NEWER)][::-1]}
    r.flush(store)
    app = Flask("recent_api")
    app.register_blueprint(make_blueprint(store, TOKEN))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Api(f"http://127.0.0.1:{server.server_port}", store, ids)
    finally:
        server.shutdown()
        thread.join(5)
        try:
            store.command("drop_test_database", f"DROP DATABASE IF EXISTS `{store.database}`")
        finally:
            store.close()


def _next(headers: dict[str, str]) -> str | None:
    m = re.fullmatch(r'<([^>]+)>; rel="next"', headers.get("link", ""))
    return m.group(1) if m else None


def test_filters_find_the_old_match_behind_newer_runs(api: Api) -> None:
    for params in ({"owner": "zed"}, {"tag": "rare"}, {"status": "failed", "component": "legacy"},
                   {"status": "failed", "until": "2026-01-01T00:00:30"}):
        status, data, headers = api.get("/api/v1/recent", params)
        assert status == 200 and [r["id"] for r in data] == [api.ids["old"]], params
        assert data[0]["status"] == "failed" and data[0]["owner"] == "zed"
        assert _next(headers) is None  # nothing older matches
    _status, data, headers = api.get("/api/v1/recent", {"component": "noise", "limit": 3})
    assert [r["id"] for r in data] == api.ids["noise"][:3]
    assert _next(headers) == f"/api/v1/recent?component=noise&limit=3&before={api.ids['noise'][2]}"


def test_the_next_link_pages_through_every_match_once(api: Api) -> None:
    seen: list[str] = []
    path: str | None = "/api/v1/recent?" + urlencode({"owner": "ops", "status": "ok", "limit": 200})
    while path:
        status, data, headers = api.get(path)
        assert status == 200
        seen += [r["id"] for r in data]
        path = _next(headers)
    assert seen == api.ids["noise"]


def test_quotes_and_sql_in_a_parameter_are_only_a_value(api: Api) -> None:
    _status, data, _h = api.get("/api/v1/recent", {"owner": NASTY})
    assert [r["id"] for r in data] == [api.ids["odd"]]
    _status, data, _h = api.get("/api/v1/recent", {"owner": "zed' OR '1'='1", "tag": "') OR 1 --"})
    assert data == []
    assert api.store.count_runs() == NEWER + 2


def test_bad_filter_values_are_400(api: Api) -> None:
    status, data, _h = api.get("/api/v1/recent", {"status": "broken"})
    assert status == 400 and data["error"]["message"] == "status 'broken' is not one of ok, failed, stale"
    status, data, _h = api.get("/api/v1/recent", {"since": "last week"})
    assert status == 400 and "since 'last week' is not an ISO 8601 date" in data["error"]["message"]


def test_a_zone_typed_into_the_url_unencoded_still_counts(api: Api) -> None:
    """'+01:00' in a hand-typed URL arrives as ' 01:00' (a '+' is a space in a query string)."""
    status, data, _h = api.get("/api/v1/recent?owner=zed&until=2026-01-01T01:00:30+01:00")
    assert status == 200 and [r["id"] for r in data] == [api.ids["old"]]
    status, data, _h = api.get("/api/v1/recent?owner=zed&until=2026-01-01T00:00:30+01:00")
    assert status == 200 and data == []  # 23:00:30 UTC the day before: before the run
    status, data, _h = api.get("/api/v1/recent", {"since": "2299-12-31"})
    assert status == 200 and data == []  # past the store's range: nothing, not everything


def test_a_date_alone_as_until_is_the_end_of_that_day_and_ages_count(api: Api) -> None:
    """``until=2026-01-01`` includes the runs of that day (the odd run started at 00:00:05), as in
    the CLI and the UI; ``since``/``until`` also take an age, as the CLI's flags do."""
    status, data, _h = api.get("/api/v1/recent", {"owner": NASTY, "until": "2026-01-01"})
    assert status == 200 and [r["id"] for r in data] == [api.ids["odd"]]
    status, data, _h = api.get("/api/v1/recent", {"owner": NASTY, "until": "2026-01-01T00:00:00Z"})
    assert status == 200 and data == []  # a time is that instant
    status, data, _h = api.get("/api/v1/recent", {"owner": NASTY, "until": "1d"})  # a day ago
    assert status == 200 and [r["id"] for r in data] == [api.ids["odd"]]
    status, data, _h = api.get("/api/v1/recent", {"owner": NASTY, "since": "1d"})
    assert status == 200 and data == []


def test_openapi_documents_the_filters_and_the_link(api: Api) -> None:
    _status, doc, _h = api.get("/api/v1/openapi.json")
    op = doc["paths"]["/recent"]["get"]
    assert [p["name"] for p in op["parameters"]] == ["limit", "before", "component", "status", "owner", "tag",
                                                    "since", "until"]
    assert "Link" in op["responses"]["200"]["headers"]


def test_the_client_and_the_cli_through_server_get_the_stores_answers(api: Api) -> None:
    from typer.testing import CliRunner

    from mltrace_otel.cli.app import app
    from mltrace_otel.client import ApiClient
    from mltrace_otel.shapes import RecentFilter, StoreQueries

    client, local = ApiClient(api.url, TOKEN), StoreQueries(api.store)
    for where, before in ((RecentFilter(owner="zed"), None), (RecentFilter(component="noise"), None),
                          (RecentFilter(component="noise"), api.ids["noise"][-3]),
                          (RecentFilter(owner=NASTY), None), (RecentFilter(status="failed"), None)):
        assert client.recent_page(4, before, where) == local.recent_page(4, before, where), where
    assert client.recent_page(2, None, RecentFilter(component="noise")).more
    assert not client.recent_page(2, api.ids["noise"][-2], RecentFilter(component="noise")).more

    def cli(*args: str) -> Any:
        r = CliRunner().invoke(app, ["--server", api.url, "recent", *args],
                               env={"MLTRACE_TOKEN": TOKEN, "COLUMNS": "200", "NO_COLOR": "1"})
        assert r.exit_code == 0, r.output
        return r.stdout

    assert [r["id"] for r in json.loads(cli("--owner", "zed", "--json"))] == [api.ids["old"]]
    assert [r["id"] for r in json.loads(cli("--owner", NASTY, "--json"))] == [api.ids["odd"]]
    shown = cli("-c", "noise", "-n", "2")
    nxt = api.ids["noise"][1]
    assert f"more: mltrace --server {api.url} recent -n 2 -c noise --before {nxt}" in shown
