"""The HTTP JSON query API, ``/api/v1``: the CLI's questions over HTTP, as a Flask blueprint.

``mltrace ui`` and ``mltrace server`` serve it (``create_app`` registers it), so the CLI and the
Python query API of another process, or of a laptop (``--server URL`` /
``MLTRACE_SERVER_URL``), ask the process that holds the store. A process holding the embedded
store runs a :class:`StoreHost`: it announces its API to the other processes on the machine
(``MLTRACE_DIR/store.json``, with a random token; :mod:`mltrace_otel.store.connect`), serves
the blueprint on a loopback port of its own when it has no UI (``mltrace collector``, a script
using :mod:`mltrace_otel.api`), and drains the SDK's spool every second. Each route answers with exactly
the JSON ``mltrace <command> --json`` prints: both go through :mod:`mltrace_otel.shapes`;
``/recent`` also says when older matching runs remain, in a ``Link: <...>; rel="next"`` header.
The OpenAPI 3.1 document is ``GET /api/v1/openapi.json`` (:data:`OPENAPI`).

User strings arrive as query parameters (GET) or a JSON body (POST) and reach SQL only as the
store's bound parameters. When a token is set every route but ``openapi.json`` needs
``Authorization: Bearer <token>`` (the scheme in any case; the holder's announced token works
too). Errors are one JSON body,
``{"error": {"type", "message", "hint"}}``: 400 bad parameters or an ambiguous run id, 401
without the token, 404 unknown runs / outputs / components (the CLI's message), 415 a POST that
is not JSON, 503 store unavailable.

May import: flask and werkzeug (lazily), .shapes, .store.models, .store.connect (lazily),
.auth, .errors. Never the CLI or the Dash pages.
"""

from __future__ import annotations

import atexit
import json
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mltrace_otel import shapes
from mltrace_otel.auth import token_matches
from mltrace_otel.errors import (
    AmbiguousRunId,
    ApiError,
    ConfigError,
    MltraceError,
    NotFound,
    StoreUnavailable,
)
from mltrace_otel.store.models import RUN_STATUSES

if TYPE_CHECKING:  # types only
    from mltrace_otel.store.core import Store

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
"""Where the API is mounted; a breaking change gets a new version prefix."""

BLUEPRINT_NAME = "mltrace_api"

_STATUS: tuple[tuple[type[MltraceError], int], ...] = (
    (NotFound, 404), (AmbiguousRunId, 400), (ConfigError, 400), (StoreUnavailable, 503),
)


def error_body(e: MltraceError) -> dict[str, Any]:
    """The one error shape: ``{"error": {"type", "message", "hint"}}`` (+ ``candidates`` for an
    ambiguous run id)."""
    err: dict[str, Any] = {"type": type(e).__name__, "message": e.message, "hint": e.hint}
    if isinstance(e, AmbiguousRunId):
        err["candidates"] = list(e.candidates)
        err["prefix"] = e.prefix
        err["more"] = e.more
    return {"error": err}


def status_of(e: MltraceError) -> int:
    """The HTTP status an error is answered with."""
    if isinstance(e, ApiError):
        return e.status
    return next((code for cls, code in _STATUS if isinstance(e, cls)), 500)


# --- parameters -----------------------------------------------------------------------------
def _limit(args: Any, default: int | None) -> int | None:
    raw = args.get("limit")
    if raw in (None, ""):
        return default
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ApiError(f"limit {raw!r} is not a positive number", hint="use limit=1 or more")
    return n


def _when(args: Any, name: str) -> datetime | None:
    raw = args.get(name)
    if raw in (None, ""):
        return None
    try:
        return shapes.parse_when(raw, end=name == "until")
    except ValueError:  # not a date, or out of datetime's range in UTC
        raise ApiError(f"{name} {raw!r} is not an ISO 8601 date or time, or an age",
                       hint="e.g. 2026-11-01, 2026-11-01T09:30:00Z, ...T09:30:00%2B01:00 (no zone: "
                            "UTC) or 7d") from None


_SINCE = "Started at or after: ISO 8601 (no zone: UTC) or an age ago (30m, 12h, 7d, 2w)."
_UNTIL = ("Started at or before: ISO 8601 (no zone: UTC; a date alone: the end of that day) or an "
          "age ago (30m, 12h, 7d, 2w).")


def _required(args: Any, name: str) -> str:
    raw = args.get(name)
    if raw in (None, ""):
        raise ApiError(f"the parameter {name!r} is required")
    return str(raw)


def _bool(args: Any, name: str) -> bool:
    raw = str(args.get(name) or "false").strip().lower()
    if raw not in ("true", "false", "1", "0"):
        raise ApiError(f"{name} {raw!r} is not true or false")
    return raw in ("true", "1")


def _opt(args: Any, name: str) -> str | None:
    raw = args.get(name)
    return None if raw in (None, "") else str(raw)


def _body(request: Any) -> dict[str, Any]:
    if not (request.mimetype or "").endswith("json"):
        raise ApiError("the body must be JSON (Content-Type: application/json)", status=415)
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError("the body must be a JSON object")
    return data


def _names(data: dict[str, Any], key: str = "outputs") -> list[str]:
    names = data.get(key) or []
    if not isinstance(names, list) or not all(isinstance(o, str) for o in names):
        raise ApiError(f"{key} must be a list of strings")
    return names


def _text_or_none(data: dict[str, Any], name: str) -> str | None:
    v = data.get(name)
    if v is not None and not isinstance(v, str):
        raise ApiError(f"{name} must be a string")
    return v or None


# --- the routes -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """A route's JSON data with response headers (``Link`` to the next page)."""

    data: Any
    headers: dict[str, str]


def _routes(store: Store) -> dict[tuple[str, str], Callable[[Any], Any]]:
    """(method, path under the prefix) -> a function of the request giving the JSON data."""
    q = shapes.StoreQueries(store)

    def recent(rq: Any) -> Any:
        a = rq.args
        status = (_opt(a, "status") or "").lower() or None
        if status is not None and status not in RUN_STATUSES:
            raise ApiError(f"status {a.get('status')!r} is not one of " + ", ".join(RUN_STATUSES))
        where = shapes.RecentFilter(component=_opt(a, "component"), status=status, owner=_opt(a, "owner"),
                                    tag=_opt(a, "tag"), since=_when(a, "since"), until=_when(a, "until"))
        page = q.recent_page(_limit(a, 10) or 10, _opt(a, "before"), where)
        if not page.more:
            return shapes.runs_json(page.runs)
        from urllib.parse import urlencode

        query = [(k, v) for k, v in a.items(multi=True) if k != "before"] + [("before", page.next_before)]
        link = f'<{rq.script_root}{rq.path}?{urlencode(query)}>; rel="next"'
        return Answer(shapes.runs_json(page.runs), {"Link": link})

    def history(rq: Any) -> Any:
        a = rq.args
        return shapes.runs_json(q.history(_required(a, "component"), _limit(a, 10) or 10,
                                          _when(a, "since"), _when(a, "until")))

    def inspect(rq: Any) -> Any:
        return q.inspect(_required(rq.args, "run")).to_json()

    def tag(rq: Any) -> Any:
        return shapes.runs_json(q.tagged(_required(rq.args, "tag"), _limit(rq.args, 10) or 10))

    def trace(rq: Any) -> Any:
        output, run = _opt(rq.args, "output"), _opt(rq.args, "run")
        if (output is None) == (run is None):  # in the API's words, not the CLI's arguments
            raise ApiError("give one of the parameters 'output' and 'run'")
        return q.trace(output, run).to_json()

    def impact(rq: Any) -> Any:
        return q.impact(_required(rq.args, "target")).to_json()

    def stale(rq: Any) -> Any:
        a = rq.args
        return shapes.runs_json(q.stale(_opt(a, "component"), _limit(a, 100) or 100, _bool(a, "direct")))

    def review(rq: Any) -> Any:
        a = rq.args
        return q.review(_limit(a, None), _when(a, "since"), _opt(a, "component"), _opt(a, "tag")).to_json()

    def components(rq: Any) -> Any:
        return shapes.components_json(q.components(_opt(rq.args, "owner"), _opt(rq.args, "tag")))

    def tags(rq: Any) -> Any:
        return shapes.tags_json(q.tags())

    def pointer(rq: Any) -> Any:
        return q.pointer(_required(rq.args, "name")).to_json()

    def flag(rq: Any) -> Any:
        data = _body(rq)
        names = _names(data)
        if not names:
            raise ApiError("outputs must name at least one output")
        return shapes.flag_json(q.flag(names, _text_or_none(data, "run")))

    def unflag(rq: Any) -> Any:
        data = _body(rq)
        all_ = data.get("all", False)
        if not isinstance(all_, bool):
            raise ApiError("all must be true or false")
        names = _names(data)
        if bool(names) == all_:
            raise ApiError("give outputs, or all: true (not both)")
        return shapes.unflag_json(q.unflag(names, all_, _text_or_none(data, "run")))

    def create_component(rq: Any) -> Any:
        data = _body(rq)
        name = _text_or_none(data, "name")
        if not name:
            raise ApiError("the body needs name (the component's name)")
        fields = {k: _text_or_none(data, k) or "" for k in ("description", "owner")}
        return store.create_component(name, fields["description"], fields["owner"], _names(data, "tags")
                                      ).to_json()

    def tag_component(rq: Any) -> Any:
        data = _body(rq)
        name = _text_or_none(data, "component")
        if not name:
            raise ApiError("the body needs component (a component name) and tags")
        return store.tag_component(name, _names(data, "tags")).to_json()

    def notes(rq: Any) -> Any:
        data = _body(rq)
        run, text = data.get("run"), data.get("notes")
        if not isinstance(run, str) or not run or not isinstance(text, str):
            raise ApiError("the body needs run (a run id) and notes (a string)")
        return shapes.notes_json(*q.notes(run, text))

    return {
        ("GET", "/recent"): recent, ("GET", "/history"): history, ("GET", "/inspect"): inspect,
        ("GET", "/tag"): tag, ("GET", "/trace"): trace, ("GET", "/impact"): impact,
        ("GET", "/stale"): stale, ("GET", "/review"): review, ("GET", "/components"): components,
        ("GET", "/tags"): tags, ("GET", "/pointer"): pointer, ("POST", "/flag"): flag,
        ("POST", "/unflag"): unflag, ("POST", "/notes"): notes,
        ("POST", "/components"): create_component, ("POST", "/components/tags"): tag_component,
    }


def make_blueprint(store: Store, token: str | None = None, lock: Any = None,
                   local_token: str | None = None) -> Any:
    """The ``/api/v1`` blueprint on an open store.

    Args:
        store: an open :class:`~mltrace_otel.store.core.Store` (not closed by the blueprint).
        token: when set, every route but ``openapi.json`` needs ``Authorization: Bearer <token>``.
        lock: held around each store call (the Dash app's, so the UI and the API take turns);
            a new lock when None.
        local_token: accepted as well as ``token`` (the :class:`StoreHost`'s announced one).
    """
    from flask import Blueprint, Response, request

    lock = lock if lock is not None else threading.RLock()
    bp = Blueprint(BLUEPRINT_NAME, __name__, url_prefix=API_PREFIX)

    def reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
        return Response(json.dumps(data, ensure_ascii=False), status, headers,
                        content_type="application/json; charset=utf-8")

    def fail(e: MltraceError) -> Any:
        status = status_of(e)
        headers = {"WWW-Authenticate": 'Bearer realm="mltrace"'} if status == 401 else None
        return reply(error_body(e), status, headers)

    @bp.before_request
    def _require_token() -> Any:
        if request.path == f"{API_PREFIX}/openapi.json":
            return None
        given = request.headers.get("Authorization")
        # Basic too (the token as password): a browser logged in to the UI opens API URLs
        if token_matches(given, token, basic=True) or (local_token and token_matches(given, local_token)):
            return None
        what = "the token sent is not" if given else "no token was sent; this API needs"
        return fail(ApiError(f"{what} the server's MLTRACE_TOKEN", status=401,
                             hint="send Authorization: Bearer <token>"))

    def view(handler: Callable[[Any], Any]) -> Callable[[], Any]:
        def run() -> Any:
            try:
                with lock:
                    out = handler(request)
                if isinstance(out, Answer):
                    return reply(out.data, headers=out.headers)
                return reply(out)
            except MltraceError as e:
                return fail(e)
            except Exception as e:  # a bug: still the one error shape, without internals
                log.exception("API %s %s failed", request.method, request.path)
                return reply({"error": {"type": "InternalError", "message": type(e).__name__,
                                        "hint": "the server's log has the traceback"}}, 500)
        return run

    for (method, path), handler in _routes(store).items():
        bp.add_url_rule(path, f"{method.lower()}_{path.strip('/')}", view(handler), methods=[method])

    @bp.get("/openapi.json")
    def openapi() -> Any:
        return reply(OPENAPI)

    @bp.get("/version")
    def version() -> Any:
        from mltrace_otel import __version__

        return reply({"mltrace_otel": __version__, "api": "v1"})

    @bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def unknown(rest: str) -> Any:  # the Dash app's catch-all must not answer under /api/v1
        return fail(ApiError(f"no API route {request.method} {API_PREFIX}/{rest}", status=404,
                             hint=f"the routes are listed in {API_PREFIX}/openapi.json"))

    return bp


# --- the holder of the embedded store -------------------------------------------------------
def local_url(host: str, port: int) -> str:
    """The URL a process on this machine reaches a server bound to ``host:port`` at."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class StoreHost:
    """What a long-running holder of the embedded store does for the other processes: announce
    its query API (with :attr:`token`, random) and drain the spool every ``drain_interval_s``.

    Create it, give :attr:`token` to the app serving the blueprint (``create_app(...,
    local_token=host.token)``), then :meth:`start` with that app's URL; or :meth:`start` with
    no URL to serve the blueprint on a loopback port of its own (127.0.0.1, port 0, the token
    required). Stopped by the store's ``close()`` or :meth:`stop`: the announcement goes
    first, so a reader that finds the API gone opens the store (it waits for the close).
    """

    def __init__(self, store: Store, drain_interval_s: float = 1.0) -> None:
        self.store = store
        self.drain_interval_s = drain_interval_s
        self.token = secrets.token_urlsafe(32)
        self.url = ""
        self._files: list[Any] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._httpd: Any = None
        self._api_store: Store | None = None

    def start(self, url: str | None = None) -> StoreHost:
        """Serve (unless ``url`` is given), announce, and drain until the store closes."""
        from mltrace_otel.store import connect

        if url is None:
            self._serve_loopback()
        else:
            self.url = url.rstrip("/")
        self._files = connect.announce(self.store.settings, self.url, self.token)
        atexit.register(self.stop)  # a script's store is never closed: withdraw, stop draining
        if self.drain_interval_s > 0:
            self._thread(self._drain_loop, "mltrace-spool-drain")
        self.store.on_close(self.stop)
        return self

    def _serve_loopback(self) -> None:
        from flask import Flask
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                pass

        self._api_store = self.store.sibling()  # its own connection: the holder's work goes on
        app = Flask("mltrace_otel.web_api")
        app.register_blueprint(make_blueprint(self._api_store, self.token))
        self._httpd = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
        self.url = local_url("127.0.0.1", self._httpd.server_port)
        self._thread(self._httpd.serve_forever, "mltrace-api")

    def _thread(self, target: Callable[[], Any], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _drain_loop(self) -> None:
        while not self._stop.wait(self.drain_interval_s):
            try:
                self.store.drain_spool()
            except Exception:  # keep serving; the next round retries
                log.exception("mltrace: spool drain failed")

    def _withdraw(self) -> None:
        from mltrace_otel.store import connect

        connect.withdraw(self._files, self.url)
        self._files = []

    def stop(self) -> None:
        """Withdraw the announcement, stop draining and serving."""
        self._withdraw()
        atexit.unregister(self.stop)
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=10)
        self._threads.clear()
        if self._api_store is not None:
            self._api_store.close()
            self._api_store = None


# --- the OpenAPI document -------------------------------------------------------------------
def _param(name: str, desc: str, *, required: bool = False, schema: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": desc,
            "schema": schema or {"type": "string"}}


_LIMIT = {"type": "integer", "minimum": 1}
_ERRORS = {code: {"$ref": f"#/components/responses/{name}"}
           for code, name in (("400", "BadRequest"), ("401", "Unauthorized"), ("404", "NotFound"),
                              ("503", "Unavailable"))}


def _get(summary: str, params: list[dict[str, Any]], schema: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": params, "responses": {
        "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": schema}}}},
        **_ERRORS}}}


def _post(summary: str, body: dict[str, Any], schema: str) -> dict[str, Any]:
    return {"post": {"summary": summary,
                     "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                     "responses": {"200": {"description": "OK", "content": {
                         "application/json": {"schema": {"$ref": schema}}}}, **_ERRORS,
                         "415": {"$ref": "#/components/responses/BadRequest"}}}}


_RUNS = "#/components/schemas/Runs"


def _recent_path() -> dict[str, Any]:
    path = _get("The newest runs matching every filter given, newest first. The filters search "
                "the whole store; when older matching runs remain, the answer has a `Link` header "
                "with rel=\"next\" (the same query, `before` the last run shown).", [
                    _param("limit", "How many runs (default 10).", schema=_LIMIT),
                    _param("before", "Only runs older than this run (id or unique prefix): the last "
                                     "run of the previous page."),
                    _param("component", "Only runs of this component."),
                    _param("status", "ok, failed, or stale (stale now).",
                           schema={"type": "string", "enum": list(RUN_STATUSES)}),
                    _param("owner", "Only runs with this owner."),
                    _param("tag", "Only runs tagged so when they ran, or whose component has the tag now."),
                    _param("since", _SINCE),
                    _param("until", _UNTIL)], _RUNS)
    path["get"]["responses"]["200"]["headers"] = {"Link": {
        "description": 'The next page, as <URL>; rel="next"; absent on the last page.',
        "schema": {"type": "string"}}}
    return path
_OBJ: dict[str, Any] = {"type": "object", "additionalProperties": True}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "mltrace-otel query API", "version": "1",
             "description": "The mltrace CLI's questions over HTTP; each answer is exactly what "
                            "`mltrace <command> --json` prints (shapes in docs/cli.md)."},
    "servers": [{"url": API_PREFIX}],
    "security": [{"bearer": []}, {}],
    "paths": {
        "/recent": _recent_path(),
        "/history": _get("A component's runs, newest first.", [
            _param("component", "Component name.", required=True),
            _param("limit", "How many runs (default 10).", schema=_LIMIT),
            _param("since", _SINCE),
            _param("until", _UNTIL)], _RUNS),
        "/inspect": _get("Everything about one run.", [
            _param("run", "Run id or unique prefix (>= 4 chars).", required=True)],
            "#/components/schemas/Run"),
        "/tag": _get("The newest runs of the components with a tag.", [
            _param("tag", "A component tag.", required=True),
            _param("limit", "How many runs (default 10).", schema=_LIMIT)], _RUNS),
        "/trace": _get("The runs upstream of an output, or of a run (give one).", [
            _param("output", "An output pointer name."),
            _param("run", "A run id or unique prefix.")], "#/components/schemas/Lineage"),
        "/impact": _get("The runs and outputs downstream of an output or a run.", [
            _param("target", "An output pointer or a run id.", required=True)],
            "#/components/schemas/Lineage"),
        "/stale": _get("The latest run of each component that is stale now.", [
            _param("component", "Only this component."),
            _param("limit", "How many runs (default 100).", schema=_LIMIT),
            _param("direct", "Only runs stale for a cause of their own.", schema={"type": "boolean"})],
            _RUNS),
        "/review": _get("The runs the flagged outputs have in common, ranked.", [
            _param("limit", "How many runs (default all).", schema=_LIMIT),
            _param("since", "Only runs " + _SINCE[0].lower() + _SINCE[1:]),
            _param("component", "Only runs of this component."),
            _param("tag", "Only runs of components with this tag.")], "#/components/schemas/Review"),
        "/components": {**_get("Components with owner, tags and number of runs.", [
            _param("owner", "Only components with this owner."),
            _param("tag", "Only components with this tag.")], "#/components/schemas/Components"),
            **_post("Create a component, or update its description, owner and tags (mltrace's "
                    "create_component).",
                    {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"}, "description": {"type": "string"},
                        "owner": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}},
                    "#/components/schemas/Component")},
        "/components/tags": _post("Add tags to a component (mltrace's tag_component).",
                                  {"type": "object", "required": ["component", "tags"], "properties": {
                                      "component": {"type": "string"},
                                      "tags": {"type": "array", "items": {"type": "string"}}}},
                                  "#/components/schemas/Component"),
        "/tags": _get("Every tag of every component.", [], "#/components/schemas/Tags"),
        "/pointer": _get("An IO pointer: its type, whether flagged, the runs that wrote and read it.", [
            _param("name", "The pointer name.", required=True)], "#/components/schemas/Pointer"),
        "/version": _get("The server's mltrace-otel version and the API version.", [],
                         "#/components/schemas/Version"),
        "/flag": _post("Flag outputs as wrong (each one's newest version, or the one `run` wrote).",
                       {"type": "object", "required": ["outputs"], "properties": {
                           "outputs": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                           "run": {"type": ["string", "null"]}}}, "#/components/schemas/Flagged"),
        "/unflag": _post("Unflag outputs (every version, or the one `run` wrote), or all of them.",
                         {"type": "object", "properties": {
                             "outputs": {"type": "array", "items": {"type": "string"}},
                             "all": {"type": "boolean"}, "run": {"type": ["string", "null"]}}},
                         "#/components/schemas/Unflagged"),
        "/notes": _post("Replace a run's notes.",
                        {"type": "object", "required": ["run", "notes"], "properties": {
                            "run": {"type": "string"}, "notes": {"type": "string"}}},
                        "#/components/schemas/Notes"),
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "MLTRACE_TOKEN, when the server sets one."}},
        "schemas": {
            "Run": _OBJ,
            "Runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
            "Lineage": _OBJ, "Review": _OBJ, "Pointer": _OBJ,
            "Version": {"type": "object", "properties": {"mltrace_otel": {"type": "string"},
                                                         "api": {"type": "string"}}},
            "Components": {"type": "array", "items": _OBJ}, "Component": _OBJ,
            "Tags": {"type": "array", "items": {"type": "string"}},
            "Flagged": {"type": "object", "properties": {
                "flagged": {"type": "array", "items": {"type": "string"}},
                "versions": {"type": "array", "items": _OBJ}}},
            "Unflagged": {"type": "object", "properties": {
                "unflagged": {"type": "array", "items": {"type": "string"}},
                "versions": {"type": "array", "items": _OBJ}}},
            "Notes": {"type": "object", "properties": {"run": {"type": "string"},
                                                       "notes": {"type": "string"}}},
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["type", "message"], "properties": {
                    "type": {"type": "string"}, "message": {"type": "string"},
                    "hint": {"type": ["string", "null"]},
                    "prefix": {"type": "string", "description": "AmbiguousRunId: the prefix given."},
                    "candidates": {"type": "array", "items": {"type": "string"},
                                   "description": "AmbiguousRunId: run ids it matches (at most 50)."},
                    "more": {"type": "boolean",
                             "description": "AmbiguousRunId: it matches more runs than listed."}}}}},
        },
        "responses": {name: {"description": desc, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}}
            for name, desc in (("BadRequest", "Bad parameters, an ambiguous run id, or a non-JSON body."),
                               ("Unauthorized", "The token is missing or wrong."),
                               ("NotFound", "No such run, output, component or route."),
                               ("Unavailable", "The store cannot be reached."))},
    },
}
"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``."""
