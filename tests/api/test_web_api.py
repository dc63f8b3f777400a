"""The HTTP query API (``/api/v1``) of a real ``mltrace ui`` process on a free port, with a token.

``mltrace demo`` logs runs into the store the UI holds; every route is then asked over real HTTP
and its JSON compared with what ``mltrace <command> --json`` prints for the same question (the
CLI, in another process, reaches the same store). Also: 401 without the token (200 with it, in
any case of ``Bearer``), 404 for unknown ids with the CLI's message, 400 for bad parameters,
415 for a POST that is not JSON, and an OpenAPI document that lists every route.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

TOKEN = "s3cret-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLTRACE_", "OTEL_"))}
    env.update(MLTRACE_DIR=str(home), MLTRACE_HOST="127.0.0.1", MLTRACE_EXPORT="spool", NO_COLOR="1",
               COLUMNS="200", **extra)
    return env


@dataclass
class Served:
    """A running ``mltrace ui`` holding the store under ``home``."""

    port: int
    home: Path
    proc: subprocess.Popen[str]

    def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                body: Any = None, auth: str | None = f"Bearer {TOKEN}",
                content_type: str = "application/json") -> tuple[int, Any, dict[str, str]]:
        """(status, parsed JSON body, headers) of one request to the API."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        url = f"/api/v1{path}" + (f"?{urlencode(params)}" if params else "")
        headers = {"Authorization": auth} if auth else {}
        data = None
        if body is not None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            headers["Content-Type"] = content_type
        try:
            conn.request(method, url, body=data, headers=headers)
            r = conn.getresponse()
            raw = r.read()
            return r.status, json.loads(raw) if raw else None, {k.lower(): v for k, v in r.getheaders()}
        finally:
            conn.close()

    def get(self, path: str, **params: Any) -> Any:
        status, data, _ = self.request("GET", path, params or None)
        assert status == 200, data
        return data

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        """``mltrace ARGS`` in another process on the same MLTRACE_DIR (the store is held here)."""
        r = subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", *args],
                           env=_env(self.home, MLTRACE_TOKEN=TOKEN), capture_output=True, text=True,
                           timeout=120)
        if ok:
            assert r.returncode == 0, r.stdout + r.stderr
        return r

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("webapi") / "home"
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mltrace_otel.cli.app", "ui", "--port", str(port)],
                            env=_env(home, MLTRACE_TOKEN=TOKEN), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    s = Served(port, home, proc)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mltrace ui exited with {proc.returncode}:\n{proc.stdout.read()}")
            try:
                if s.request("GET", "/openapi.json", auth=None)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mltrace ui did not answer"
            time.sleep(0.2)
        s.cli("demo")  # runs (spool, drained by the UI), flags, a stale run, a failed run
        deadline = time.monotonic() + 60
        while len(s.get("/recent", limit=50)) < 10:  # the UI drains the spool every second
            assert time.monotonic() < deadline, "the demo's runs did not arrive"
            time.sleep(0.3)
        yield s
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


# --- every route gives the CLI's --json ------------------------------------------------------
def test_runs_routes_equal_the_cli(served: Served) -> None:
    recent = served.get("/recent", limit=50)
    assert recent == served.cli_json("recent", "-n", "50")
    # issue 17: status as the CLI and UI show it (ok / failed), the span's code in otel_status
    assert {r["status"] for r in recent} == {"ok", "failed"}
    assert all((r["status"] == "failed") == (r["otel_status"] == "ERROR") for r in recent)
    assert served.get("/recent") == served.cli_json("recent")  # default limit 10
    page = served.get("/recent", limit=3, before=recent[2]["id"][:8])
    assert page == served.cli_json("recent", "-n", "3", "--before", recent[2]["id"][:8])
    assert [r["id"] for r in page] == [r["id"] for r in recent[3:6]]

    comp = recent[0]["component"]
    assert served.get("/history", component=comp) == served.cli_json("history", comp)
    assert served.get("/history", component=comp, limit=1, since="2000-01-01",
                      until="2100-01-01T00:00:00+00:00") == \
        served.cli_json("history", comp, "-n", "1", "--since", "2000-01-01T00:00:00+00:00",
                        "--until", "2100-01-01T00:00:00+00:00")

    run = recent[0]["id"]
    inspected = served.get("/inspect", run=run[:6])
    assert inspected == served.cli_json("inspect", run)
    assert inspected["id"] == run and inspected["code_snapshot"]

    tag = served.get("/tags")[0]
    assert served.get("/tag", tag=tag, limit=4) == served.cli_json("tag", tag, "-n", "4")


def test_lineage_routes_equal_the_cli(served: Served) -> None:
    recent = served.get("/recent", limit=50)
    last = recent[0]
    output = last["outputs"][0]["name"]
    traced = served.get("/trace", output=output)
    assert traced == served.cli_json("trace", output)
    assert traced["nodes"] and traced["edges"]
    assert served.get("/trace", run=last["id"]) == served.cli_json("trace", "--run", last["id"])

    first_output = recent[-1]["outputs"][0]["name"]
    impacted = served.get("/impact", target=first_output)
    assert impacted["nodes"] and impacted == served.cli_json("impact", first_output)
    assert served.get("/impact", target=recent[-1]["id"]) == served.cli_json("impact", recent[-1]["id"])

    stale = served.get("/stale")
    assert stale and stale == served.cli_json("stale")
    assert served.get("/stale", direct="true", limit=5) == served.cli_json("stale", "--direct", "-n", "5")
    comp = stale[0]["component"]
    assert served.get("/stale", component=comp) == served.cli_json("stale", "-c", comp)


def test_component_routes_equal_the_cli(served: Served) -> None:
    comps = served.get("/components")
    assert comps and comps == served.cli_json("components")
    owner = comps[0]["owner"]
    assert served.get("/components", owner=owner) == served.cli_json("components", "--owner", owner)
    assert served.get("/tags") == served.cli_json("tags")
    name = served.get("/recent")[0]["outputs"][0]["name"]
    pointer = served.get("/pointer", name=name)
    assert pointer["name"] == name and pointer["producers"]


def test_review_flag_unflag_and_notes(served: Served) -> None:
    review = served.get("/review")
    assert review["flagged"] and review == served.cli_json("review")
    comp = review["entries"][0]["run"]["component"]
    assert served.get("/review", limit=2, component=comp, since="2000-01-01T00:00:00+00:00") == \
        served.cli_json("review", "-n", "2", "-c", comp, "--since", "2000-01-01T00:00:00+00:00")

    run = served.get("/recent")[0]
    name = run["outputs"][0]["name"]
    status, flagged, _ = served.request("POST", "/flag", body={"outputs": [name], "run": run["id"][:8]})
    assert status == 200, flagged
    assert flagged == {"flagged": [name], "versions": [
        {"pointer": name, "run": run["id"], "version": run["outputs"][0]["version"]}]}
    assert name in served.get("/review")["flagged"]
    # the CLI's unflag --json is the same shape as the API's
    status, unflagged, _ = served.request("POST", "/unflag", body={"outputs": [name]})
    assert status == 200 and unflagged == {"unflagged": [name], "versions": flagged["versions"]}
    assert served.cli_json("flag", name) == {"flagged": [name], "versions": flagged["versions"]}
    assert served.request("POST", "/unflag", body={"outputs": [name]})[1] == unflagged

    status, saved, _ = served.request("POST", "/notes", body={"run": run["id"][:8], "notes": "ünïcode ✓"})
    assert status == 200 and saved == {"run": run["id"], "notes": "ünïcode ✓"}
    assert served.cli_json("notes", run["id"], "again") == {"run": run["id"], "notes": "again"}
    assert served.get("/inspect", run=run["id"])["notes"] == "again"


# --- auth and errors -------------------------------------------------------------------------
def test_the_token_is_required(served: Served) -> None:
    for method, path, body in (("GET", "/recent", None), ("GET", "/tags", None),
                               ("POST", "/flag", {"outputs": ["x"]}), ("GET", "/nope", None)):
        status, data, headers = served.request(method, path, body=body, auth=None)
        assert status == 401, (path, data)
        assert data["error"]["type"] == "ApiError" and "MLTRACE_TOKEN" in data["error"]["message"]
        assert headers["www-authenticate"].startswith("Bearer")
        wrong = served.request(method, path, body=body, auth="Bearer wrong")
        assert wrong[0] == 401 and "the token sent is not" in wrong[1]["error"]["message"]
        assert served.request(method, path, body=body, auth=f"Basic {TOKEN}")[0] == 401
    browser = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()  # the UI's login, as a browser sends it
    assert served.request("GET", "/tags", auth=f"Basic {browser}")[0] == 200
    assert served.request("GET", "/tags", auth=f"bearer {TOKEN}")[0] == 200
    assert served.request("GET", "/tags", auth=f"BEARER {TOKEN}")[0] == 200
    assert served.request("GET", "/openapi.json", auth=None)[0] == 200  # documents, holds no data


def _cli_error(served: Served, *args: str) -> str:
    r = served.cli(*args, ok=False)
    assert r.returncode == 1
    return r.stderr.splitlines()[0].removeprefix("error: ")


@pytest.mark.parametrize(("path", "params", "cli"), [
    ("/inspect", {"run": "ffffffffffffffff"}, ("inspect", "ffffffffffffffff")),
    ("/inspect", {"run": "0123"}, ("inspect", "0123")),
    ("/history", {"component": "no such component"}, ("history", "no such component")),
    ("/trace", {"output": "never/written.csv"}, ("trace", "never/written.csv")),
    ("/trace", {"run": "abcdef0123456789"}, ("trace", "--run", "abcdef0123456789")),
    ("/impact", {"target": "nothing.csv"}, ("impact", "nothing.csv")),
    ("/tag", {"tag": "no-tag"}, ("tag", "no-tag")),
    ("/stale", {"component": "ghost"}, ("stale", "-c", "ghost")),
])
def test_unknown_ids_are_404_with_the_cli_message(served: Served, path: str, params: dict[str, str],
                                                  cli: tuple[str, ...]) -> None:
    status, data, _ = served.request("GET", path, params)
    assert status == 404, data
    assert data["error"]["type"] == "NotFound"
    assert data["error"]["message"] == _cli_error(served, *cli)
    assert set(data["error"]) == {"type", "message", "hint"}


def test_unknown_output_404_suggests_the_near_match_as_the_cli_does(served: Served) -> None:
    raw = served.get("/recent", limit=50)[-1]["outputs"][0]["name"]  # wine_raw_<session>_v1.csv
    short = raw.removeprefix("wine_")
    for path, params, cli in (("/trace", {"output": short}, ("trace", short)),
                              ("/impact", {"target": short}, ("impact", short))):
        status, data, _ = served.request("GET", path, params)
        assert status == 404 and data["error"]["type"] == "NotFound", data
        assert data["error"]["hint"] == f"did you mean {raw!r}?"
        r = served.cli(*cli, ok=False)
        assert r.returncode == 1
        err = data["error"]
        assert r.stderr.splitlines()[:2] == [f"error: {err['message']}", f"hint: {err['hint']}"]


def test_flag_of_an_unknown_output_is_404_and_flags_nothing(served: Served) -> None:
    before = served.get("/review")["flagged"]
    status, data, _ = served.request("POST", "/flag", body={"outputs": ["ghost.csv"]})
    assert status == 404 and data["error"]["message"] == _cli_error(served, "flag", "ghost.csv")
    assert served.get("/review")["flagged"] == before
    status, data, _ = served.request("POST", "/notes", body={"run": "ffffffffffffffff", "notes": "x"})
    assert status == 404 and data["error"]["message"] == _cli_error(served, "notes", "ffffffffffffffff", "x")


@pytest.mark.parametrize(("method", "path", "params", "body"), [
    ("GET", "/recent", {"limit": "0"}, None),
    ("GET", "/recent", {"limit": "ten"}, None),
    ("GET", "/history", {}, None),
    ("GET", "/history", {"component": "x", "since": "yesterday"}, None),
    ("GET", "/trace", {}, None),
    ("GET", "/trace", {"output": "a.csv", "run": "abcd"}, None),
    ("GET", "/stale", {"direct": "maybe"}, None),
    ("POST", "/flag", None, {"outputs": []}),
    ("POST", "/flag", None, {"outputs": "a.csv"}),
    ("POST", "/unflag", None, {"outputs": ["a"], "all": True}),
    ("POST", "/unflag", None, {}),
    ("POST", "/notes", None, {"run": "abcd"}),
    ("POST", "/notes", None, [1, 2]),
])
def test_bad_parameters_are_400(served: Served, method: str, path: str, params: dict[str, str] | None,
                                body: Any) -> None:
    status, data, headers = served.request(method, path, params, body)
    assert status == 400, data
    assert headers["content-type"].startswith("application/json")
    assert data["error"]["message"] and data["error"]["type"] in ("ApiError", "ConfigError")
    # in the API's words: no CLI argument or usage line
    assert "--" not in data["error"]["message"] and "usage: mltrace" not in (data["error"]["hint"] or "")


def test_a_post_that_is_not_json_is_415_and_unknown_routes_404(served: Served) -> None:
    status, data, _ = served.request("POST", "/flag", body="outputs=a.csv",
                                     content_type="application/x-www-form-urlencoded")
    assert status == 415 and "JSON" in data["error"]["message"]
    status, data, _ = served.request("GET", "/nope")
    assert status == 404 and data["error"]["type"] == "ApiError"
    status, data, _ = served.request("DELETE", "/recent")
    assert status == 404 and data["error"]["message"] == "no API route DELETE /api/v1/recent"


def test_openapi_lists_every_route(served: Served) -> None:
    from mltrace_otel.web_api import OPENAPI

    status, doc, headers = served.request("GET", "/openapi.json", auth=None)
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert doc == json.loads(json.dumps(OPENAPI))
    assert doc["openapi"].startswith("3.1") and doc["info"]["version"] == "1"
    want = {("get", p) for p in ("/recent", "/history", "/inspect", "/tag", "/trace", "/impact", "/stale",
                                 "/review", "/components", "/tags", "/pointer", "/version")}
    want |= {("post", p) for p in ("/flag", "/unflag", "/notes", "/components", "/components/tags")}
    assert {(m, p) for p, item in doc["paths"].items() for m in item} == want
    for path, item in doc["paths"].items():
        for op in item.values():
            assert {"200", "401", "404"} <= set(op["responses"]), path
            for ref in _refs(op):
                name = ref.rsplit("/", 1)[1]
                assert name in doc["components"]["schemas"] or name in doc["components"]["responses"], ref
    # each documented route answers (with its required parameters) and nothing else is hidden
    for m, p in want:
        status = served.request(m.upper(), p, body={} if m == "post" else None)[0]
        assert status in (200, 400), (m, p, status)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


# --- the CLI of another MLTRACE_DIR, through --server ----------------------------------------
def _remote_cli(served: Served, tmp_path: Path, *args: str, token: str | None = TOKEN,
                env_url: bool = False) -> subprocess.CompletedProcess[str]:
    url = f"http://127.0.0.1:{served.port}"
    extra = {"MLTRACE_TOKEN": token} if token else {}
    if env_url:
        extra["MLTRACE_SERVER_URL"] = url
    else:
        args = ("--server", url, *args)
    return subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", *args],
                          env=_env(tmp_path / "elsewhere", **extra), capture_output=True, text=True,
                          timeout=120)


def test_the_cli_elsewhere_gives_the_same_json_through_server(served: Served, tmp_path: Path) -> None:
    recent = served.cli_json("recent", "-n", "50")
    run, comp = recent[0]["id"], recent[0]["component"]
    output, first = recent[0]["outputs"][0]["name"], recent[-1]["outputs"][0]["name"]
    tag = served.cli_json("tags")[0]
    for args in (("recent", "-n", "50"), ("recent", "-n", "2", "--before", run[:8]), ("history", comp),
                 ("inspect", run[:6]), ("tag", tag), ("trace", output), ("trace", "--run", run),
                 ("impact", first), ("stale",), ("stale", "--direct"), ("review",),
                 ("components", "--tag", tag), ("tags",)):
        remote = _remote_cli(served, tmp_path, *args, "--json")
        assert remote.returncode == 0, (args, remote.stderr)
        assert json.loads(remote.stdout) == served.cli_json(*args), args
    # the option may follow the command, and MLTRACE_SERVER_URL does the same
    env_run = _remote_cli(served, tmp_path, "recent", "--json", env_url=True)
    assert json.loads(env_run.stdout) == served.cli_json("recent")
    assert not (tmp_path / "elsewhere" / "store").exists()  # no store was opened here
    # human output works through the API too
    table = _remote_cli(served, tmp_path, "recent")
    assert table.returncode == 0 and run[:8] in table.stdout
    # writes: notes and flags reach the server's store
    noted = _remote_cli(served, tmp_path, "notes", run[:8], "from a laptop", "--json")
    assert json.loads(noted.stdout) == {"run": run, "notes": "from a laptop"}
    assert served.cli_json("inspect", run)["notes"] == "from a laptop"
    flagged = _remote_cli(served, tmp_path, "flag", output, "--json")
    assert json.loads(flagged.stdout)["flagged"] == [output]
    unflagged = _remote_cli(served, tmp_path, "unflag", output, "--json")
    assert json.loads(unflagged.stdout)["unflagged"] == [output]


def test_the_cli_through_server_reports_errors_like_the_cli(served: Served, tmp_path: Path) -> None:
    remote = _remote_cli(served, tmp_path, "inspect", "ffffffffffffffff")
    assert remote.returncode == 1
    assert remote.stderr.splitlines()[0] == served.cli("inspect", "ffffffffffffffff", ok=False
                                                       ).stderr.splitlines()[0]
    no_token = _remote_cli(served, tmp_path, "recent", token=None)
    assert no_token.returncode == 1 and "needs the token" in no_token.stderr
    assert "Traceback" not in no_token.stderr
    refuses = _remote_cli(served, tmp_path, "clear", "--yes")
    assert refuses.returncode == 1 and "--server" in refuses.stderr
    down = subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", "--server",
                           f"http://127.0.0.1:{_free_port()}", "recent"],
                          env=_env(tmp_path / "elsewhere"), capture_output=True, text=True, timeout=120)
    assert down.returncode == 1 and "cannot reach the mltrace server" in down.stderr


# --- the Python query API of another MLTRACE_DIR, through MLTRACE_SERVER_URL -----------------
QUERIES = """
import json, mltrace_otel as mltrace
from mltrace_otel import api
ids = mltrace.get_recent_run_ids(limit=20)
run = mltrace.get_component_run_information(ids[0][:6])
out = run.outputs[0].name
flagged, ranked = mltrace.review_flagged_outputs()
print(json.dumps({
    "ids": ids,
    "page": mltrace.get_recent_run_ids(limit=2, last_run_id=ids[1]),
    "run": [run.id, run.component_name, sorted(run.dependencies), run.code_snapshot is not None],
    "history": [r.id for r in mltrace.get_history(run.component_name, limit=3)],
    "trace": [(d, r.id, sorted(r.dependencies)) for d, r in mltrace.backtrace(out)],
    "review": [flagged, [(r.id, n) for r, n in ranked]],
    "stale": [r.id for r in mltrace.get_stale_runs()],
    "tags": mltrace.get_all_tags(),
    "components": [c.name for c in mltrace.get_components(owner="ml-team")],
    "component": mltrace.get_component_information(run.component_name).owner,
    "pointer": [mltrace.get_io_pointer(out).name, mltrace.get_io_pointer(out).flag],
    "reasons": api.stale_reasons(ids[0]),
}))
"""


def test_the_python_api_elsewhere_answers_like_the_holder(served: Served, tmp_path: Path) -> None:
    def run(env: dict[str, str]) -> Any:
        r = subprocess.run([sys.executable, "-c", QUERIES], env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.splitlines()[-1])

    direct = run(_env(served.home, MLTRACE_TOKEN=TOKEN))  # the store's directory (the UI holds it)
    remote = run(_env(tmp_path / "laptop", MLTRACE_TOKEN=TOKEN,
                      MLTRACE_SERVER_URL=f"http://127.0.0.1:{served.port}"))
    assert remote == direct
    assert not (tmp_path / "laptop" / "store").exists()
    refused = subprocess.run([sys.executable, "-c", "import mltrace_otel as m; m.clean_db()"],
                             env=_env(tmp_path / "laptop", MLTRACE_TOKEN=TOKEN,
                                      MLTRACE_SERVER_URL=f"http://127.0.0.1:{served.port}"),
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "ConfigError" in refused.stderr


COMPONENTS = """
import json
import mltrace_otel as mltrace
mltrace.create_component("scorer", "scores the wines", "ana", ["nightly"])
mltrace.tag_component("scorer", ["prod"])
c = mltrace.get_component_information("scorer")
print(json.dumps([c.name, c.description, c.owner, sorted(c.tags)]))
"""


def test_a_script_creates_and_tags_components_while_the_ui_holds_the_store(served: Served) -> None:
    """mltrace's create_component / tag_component from a script on the machine where `mltrace ui`
    holds the embedded store: they go through the announced API and the UI's store has them."""
    r = subprocess.run([sys.executable, "-c", COMPONENTS], env=_env(served.home, MLTRACE_TOKEN=TOKEN),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1]) == ["scorer", "scores the wines", "ana", ["nightly", "prod"]]
    [listed] = [c for c in served.get("/components") if c["name"] == "scorer"]
    assert listed["owner"] == "ana" and sorted(listed["tags"]) == ["nightly", "prod"]
    status, data, _ = served.request("POST", "/components/tags", body={"component": "nope", "tags": ["x"]})
    assert status == 404 and "nope" in data["error"]["message"]
    status, data, _ = served.request("POST", "/components", body={"name": "", "owner": "x"})
    assert status == 400 and "name" in data["error"]["message"]


@pytest.mark.parametrize(("module", "never"), [
    ("mltrace_otel.web_api", ("mltrace_otel.cli", "mltrace_otel.dashboards", "dash", "chdb", "rich")),
    ("mltrace_otel.client", ("mltrace_otel.cli", "mltrace_otel.dashboards", "flask", "chdb",
                             "clickhouse_connect", "rich")),
    ("mltrace_otel.shapes", ("mltrace_otel.cli", "flask", "chdb", "clickhouse_connect")),
])
def test_the_api_modules_import_one_way(module: str, never: tuple[str, ...]) -> None:
    code = (f"import importlib, json, sys; importlib.import_module({module!r}); "
            "print(json.dumps(list(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    wrong = [m for m in json.loads(out.stdout) for bad in never if m == bad or m.startswith(bad + ".")]
    assert not wrong, wrong


# --- failure injection: errors the running store does not produce on demand -----------------
class _FailingStore:
    """A store whose every read raises ``error`` (failure injection only)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        def fail(*_a: Any, **_k: Any) -> Any:
            raise self.error
        return fail


@pytest.mark.parametrize(("error", "status", "kind"), [
    ("unavailable", 503, "StoreUnavailable"),
    ("ambiguous", 400, "AmbiguousRunId"),
    ("bug", 500, "InternalError"),
])
def test_store_failures_keep_the_error_shape(error: str, status: int, kind: str) -> None:
    flask = pytest.importorskip("flask")
    from mltrace_otel.errors import AmbiguousRunId, StoreUnavailable
    from mltrace_otel.web_api import make_blueprint

    exc = {"unavailable": StoreUnavailable("cannot reach the store at http://ch:8123", hint="check it"),
           "ambiguous": AmbiguousRunId("abcd", ["abcd000000000001", "abcd000000000002"], more=True),
           "bug": KeyError("secret internals")}[error]
    app = flask.Flask("t")
    app.register_blueprint(make_blueprint(_FailingStore(exc)))
    r = app.test_client().get("/api/v1/inspect?run=abcd")
    assert r.status_code == status and r.json["error"]["type"] == kind
    if error == "ambiguous":
        assert r.json["error"]["candidates"] == ["abcd000000000001", "abcd000000000002"]
        assert r.json["error"]["more"] is True
        from mltrace_otel.client import _error

        again = _error(400, r.json, "http://server")  # what the CLI through --server raises
        assert isinstance(again, AmbiguousRunId) and again.more and "more than 2 runs" in again.message
    if error == "bug":
        assert "secret" not in r.get_data(as_text=True)


def test_one_reading_of_since_and_until_everywhere() -> None:
    """shapes.parse_when is what the CLI's flags, the API's and the UI's URL parameters read."""
    from datetime import datetime, timedelta, timezone

    from mltrace_otel.shapes import parse_when

    utc = timezone.utc
    assert parse_when("2026-11-01") == datetime(2026, 11, 1, tzinfo=utc)
    assert parse_when("2026-11-01", end=True) == datetime(2026, 11, 1, 23, 59, 59, 999999, tzinfo=utc)
    assert parse_when("2026-11-01T09:30", end=True) == datetime(2026, 11, 1, 9, 30, tzinfo=utc)
    last = datetime(2026, 11, 1, 23, 59, 59, 999999, tzinfo=utc)
    assert parse_when("2026-11-01Z", end=True) == parse_when("20261101", end=True) == last
    assert parse_when("2026-11-01+01:00", end=True) == last - timedelta(hours=1)  # that day, in its zone
    assert parse_when("2026-11-01-0500") == datetime(2026, 11, 1, 5, tzinfo=utc)
    assert parse_when("2026-11-01T09:30Z") == parse_when("2026-11-01T09:30:00+00:00")
    assert parse_when("2026-11-01T09:30 01:00") == datetime(2026, 11, 1, 8, 30, tzinfo=utc)  # '+' lost
    assert parse_when("2026-11-01T09:30-01:00") == datetime(2026, 11, 1, 10, 30, tzinfo=utc)
    naive = datetime(2026, 11, 1, 9, 30)
    assert parse_when("2026-11-01T09:30", local=True) == naive.astimezone().astimezone(utc)
    then = parse_when(" 2d ")
    age = datetime.now(utc) - then
    assert timedelta(days=2) <= age < timedelta(days=2, minutes=1)
    for bad in ("last week", "", "2026-13-01", "2026-02-30", "2026-11-01+25:00", "1000000d",
                "9999-12-31T23:00-05:00"):
        with pytest.raises(ValueError):
            parse_when(bad)
