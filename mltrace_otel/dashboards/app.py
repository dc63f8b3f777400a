"""The Dash app: command bar, URL routing, run cards, lineage graphs, review; light/dark.

``create_app(settings, store)`` builds the app (used by ``mltrace ui`` and inside
``mltrace server``); ``make_server`` wraps it in a threaded WSGI server; ``run_ui(settings)``
opens the store, announces its ``/api/v1`` to other processes (:class:`~mltrace_otel.web_api.StoreHost`),
and serves until interrupted.

When ``settings.token`` is set every request needs ``Authorization: Bearer <token>`` or HTTP
basic auth with the token as password (browsers prompt for it). The HTTP query API
(:mod:`mltrace_otel.web_api`, ``/api/v1``) is registered on the same Flask server. A path
that names no page answers 404 (with the app, whose help page says so).

May import: dash, plotly, flask/werkzeug, :mod:`mltrace_otel.store`, settings, errors, auth, web_api.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dash
from dash import MATCH, Input, Output, State, ctx, dcc, html, no_update

from mltrace_otel.auth import token_matches
from mltrace_otel.dashboards import pages
from mltrace_otel.dashboards.cards import run_card
from mltrace_otel.dashboards.diffs import next_run_id
from mltrace_otel.dashboards.routes import PAGES, Action, Route, parse_command, route_from_url
from mltrace_otel.errors import MltraceError
from mltrace_otel.settings import Settings
from mltrace_otel.web_api import BLUEPRINT_NAME, StoreHost, local_url, make_blueprint

if TYPE_CHECKING:  # types only
    from mltrace_otel.store.core import Store

log = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets"
NAV = ("recent", "review", "stale", "components", "tag", "help")

_THEME_TOGGLE_JS = """
function(n, current) {
    if (!n) { return window.dash_clientside.no_update; }
    return current === 'dark' ? 'light' : 'dark';
}
"""
_THEME_APPLY_JS = """
function(theme) {
    var t = theme === 'dark' ? 'dark' : 'light';
    document.documentElement.setAttribute('data-theme', t);
    return t === 'dark' ? '☀ light' : '☾ dark';
}
"""


def _layout() -> html.Div:
    return html.Div([
        dcc.Location(id="url", refresh=False),
        dcc.Store(id="theme", storage_type="local"),
        dcc.Store(id="refresh", data=0),
        dcc.Store(id="doc-title"),
        html.Header([
            dcc.Link("mltrace", href="/recent", className="brand"),
            html.Div([
                dcc.Input(id="cmd", type="text", debounce=False, autoComplete="off", spellCheck=False,
                          autoFocus=True,
                          placeholder="recent · history COMPONENT · inspect RUN · trace OUTPUT · "
                                      "impact X · tag TAG · flag OUTPUT · review · stale · help",
                          className="cmd"),
                html.Button("Go", id="cmd-go", className="button primary"),
            ], className="cmd-bar"),
            html.Button("☾ dark", id="theme-toggle", className="button"),
        ], className="top"),
        html.Nav([dcc.Link(n, href=f"/{n}", className="nav") for n in NAV], className="navbar"),
        html.Div(id="cmd-error", className="cmd-error"),
        html.Main(id="page"),
    ], className="shell")


def _install_auth(server: Any, token: str) -> None:
    from flask import Response, request

    @server.before_request
    def _require_token() -> Any:
        if request.blueprint == BLUEPRINT_NAME:  # the API answers 401 itself, as JSON
            return None
        if token_matches(request.headers.get("Authorization"), token, basic=True):
            return None
        return Response("mltrace: this UI needs the token (MLTRACE_TOKEN)\n", 401,
                        {"WWW-Authenticate": 'Basic realm="mltrace", charset="UTF-8"'})


def _install_not_found(app: dash.Dash) -> None:
    """Unknown paths answer 404: Dash serves its page for every path, so the catch-all route
    checks the first segment against the known pages. The body is still the app, whose help
    page says "No page at …"; other routes (``/api/v1``, Dash's own, a ``/metrics`` added by
    ``mltrace server``) are matched before the catch-all and never get here."""
    from flask import request

    prefix = app.config.routes_pathname_prefix
    catch_all = {prefix, prefix + "<path:path>"}

    @app.server.before_request
    def _unknown_path() -> Any:
        if request.url_rule is None or request.url_rule.rule not in catch_all:
            return None
        head = request.path[len(prefix):].split("/", 1)[0]
        if not head or head in PAGES:
            return None
        return app.index(), 404


def create_app(settings: Settings | None = None, store: Store | None = None, *,
               local_token: str | None = None) -> dash.Dash:
    """Build the triage UI.

    Args:
        settings: resolved settings (``Settings.from_env()`` when None); ``token`` turns on auth.
        store: an open :class:`~mltrace_otel.store.core.Store`; opened from ``settings`` when None
            (the app then owns it for the life of the process).
        local_token: the API also accepts this token (the :class:`StoreHost`'s announced one).

    Returns:
        The Dash app; serve ``app.server`` (a Flask WSGI app), e.g. with :func:`make_server`.
    """
    settings = settings or Settings.from_env()
    if store is None:
        from mltrace_otel.store import open_store

        store = open_store(settings)
    lock = threading.RLock()  # one store call at a time from this app's request threads

    app = dash.Dash(__name__, title="mltrace", assets_folder=str(ASSETS), update_title=None,
                    suppress_callback_exceptions=True, serve_locally=True)
    app.layout = _layout
    app.server.config["MLTRACE_STORE"] = store
    if settings.token:
        _install_auth(app.server, settings.token)
    app.server.register_blueprint(make_blueprint(store, settings.token, lock, local_token))  # /api/v1
    _install_not_found(app)

    @app.callback(Output("page", "children"), Output("cmd", "value"), Output("doc-title", "data"),
                  Input("url", "pathname"), Input("url", "search"), Input("refresh", "data"))
    def show_page(pathname: str | None, search: str | None, _refresh: int) -> tuple[list, str, str]:
        route = route_from_url(pathname, search)
        with lock:
            body = pages.render(route, store)
        text = "" if route.param("unknown") else route.text
        return body, text, f"{text or 'help'} · mltrace"

    @app.callback(Output("url", "pathname", allow_duplicate=True),
                  Output("url", "search", allow_duplicate=True), Output("cmd-error", "children"),
                  Output("refresh", "data"),
                  Input("cmd", "n_submit"), Input("cmd-go", "n_clicks"),
                  State("cmd", "value"), State("refresh", "data"), prevent_initial_call=True)
    def run_command(_s: int, _c: int, text: str | None, refresh: int) -> tuple:
        try:
            parsed = parse_command(text or "")
            if isinstance(parsed, Action):
                with lock:
                    if parsed.all:
                        store.unflag_all()
                    elif parsed.command == "flag":
                        store.flag(parsed.pointer)
                    else:
                        store.unflag(parsed.pointer)
                parsed = Route("review")
        except MltraceError as e:  # a CommandError, or the store refused the flag
            return no_update, no_update, str(e), no_update
        path, _, query = parsed.url.partition("?")
        return path, f"?{query}" if query else "", "", (refresh or 0) + 1

    @app.callback(Output({"type": "flag-status", "key": MATCH, "p": MATCH, "run": MATCH}, "children"),
                  Input({"type": "flag", "key": MATCH, "p": MATCH, "run": MATCH}, "value"),
                  prevent_initial_call=True)
    def toggle_flag(value: list[str] | None) -> str:
        # the version that run wrote (a run card's output), or "" the newest one
        pointer, run_id = ctx.triggered_id["p"], ctx.triggered_id.get("run") or None
        try:
            with lock:
                if value and "flagged" in value:
                    store.flag(pointer, run_id)
                    return " ✓ flagged"
                store.unflag(pointer, run_id)
                return " ✓ unflagged"
        except MltraceError as e:
            return f" {e}"

    @app.callback(Output({"type": "notes-status", "key": MATCH, "run": MATCH}, "children"),
                  Output({"type": "notes-view", "key": MATCH, "run": MATCH}, "children"),
                  Input({"type": "notes-save", "key": MATCH, "run": MATCH}, "n_clicks"),
                  State({"type": "notes", "key": MATCH, "run": MATCH}, "value"),
                  prevent_initial_call=True)
    def save_notes(_n: int, value: str | None) -> tuple[str, Any]:
        run_id = ctx.triggered_id["run"]
        try:
            with lock:
                saved = store.set_notes(run_id, value or "")
        except MltraceError as e:
            return f" not saved: {e}", no_update
        return " ✓ saved", saved

    @app.callback(Output("selected-card", "children"), Input("lineage-graph", "clickData"),
                  prevent_initial_call=True)
    def open_node(click: dict | None) -> Any:
        points = (click or {}).get("points") or []
        run_id = points[0].get("customdata") if points else None
        if isinstance(run_id, list):  # an edge label or the output node
            try:
                with lock:
                    return pages.pointer_panel(store, run_id)
            except MltraceError as e:
                return pages.error_panel(e)
        if not isinstance(run_id, str):
            return no_update
        try:
            with lock:
                run = store.get_run(run_id)
                after = next_run_id(store, run)
        except MltraceError as e:
            return pages.error_panel(e)
        return run_card(run, scope="graph", full=True, next_run=after)

    @app.callback(Output({"type": "run-slot", "key": MATCH, "run": MATCH}, "children"),
                  Input({"type": "run-row", "key": MATCH, "run": MATCH}, "n_clicks"),
                  prevent_initial_call=True)
    def open_row(n: int | None) -> Any:
        # a click on a table row opens the run's card below it; the next click closes it
        if not n or n % 2 == 0:
            return []
        key, run_id = ctx.triggered_id["key"], ctx.triggered_id["run"]
        try:
            with lock:
                run = store.get_run(run_id)
                found = pages.review_coverage(store, run.id) if key == "review" else None
        except MltraceError as e:
            return pages.error_panel(e)
        coverage, why = found if found else (None, ())
        return run_card(run, scope=f"row-{key}", coverage=coverage, why=why)

    @app.callback(Output("url", "pathname", allow_duplicate=True),
                  Output("url", "search", allow_duplicate=True),
                  Input("rf-status", "value"), Input("rf-component", "value"), Input("rf-owner", "value"),
                  Input("rf-tag", "value"), Input("rf-since", "value"), Input("rf-until", "value"),
                  State("rf-keep", "data"), prevent_initial_call=True)
    def filter_recent(status: str | None, component: str | None, owner: str | None, tag: str | None,
                      since: str | None, until: str | None, keep: dict | None) -> tuple[str, str]:
        values = {"status": "" if status == "any" else status, "component": component, "owner": owner,
                  "tag": tag, "since": (since or "").strip(), "until": (until or "").strip()}
        params = [(k, v) for k, v in values.items() if v]
        keep = keep or {}
        if params == [tuple(p) for p in keep.get("current", [])]:
            return no_update, no_update  # a dropdown settling on mount, not a person's change
        params += [(k, v) for k, v in keep.items() if k != "current" and v]
        path, _, query = Route("recent", "", tuple(params)).url.partition("?")
        return path, f"?{query}" if query else ""

    @app.callback(Output("url", "pathname", allow_duplicate=True),
                  Output("url", "search", allow_duplicate=True), Input("history-chart", "clickData"),
                  prevent_initial_call=True)
    def open_history_point(click: dict | None) -> tuple[str, str]:
        points = (click or {}).get("points") or []
        run_id = points[0].get("customdata") if points else None
        if not isinstance(run_id, str):  # a bar (runs per day) has no run
            return no_update, no_update
        return Route("inspect", run_id).url, ""

    @app.callback(Output("url", "pathname", allow_duplicate=True),
                  Output("url", "search", allow_duplicate=True), Input("hist-apply", "n_clicks"),
                  State("hist-component", "data"), State("hist-since", "value"),
                  State("hist-until", "value"), State("hist-limit", "value"), prevent_initial_call=True)
    def apply_range(n: int | None, component: str, since: str | None, until: str | None,
                    limit: int | None) -> tuple[str, str]:
        if not n:
            return no_update, no_update
        params = [(k, v) for k, v in (("since", since or ""), ("until", until or ""),
                                      ("limit", str(limit) if limit else "")) if v]
        path, _, query = Route("history", component, tuple(params)).url.partition("?")
        return path, f"?{query}" if query else ""

    app.clientside_callback(_THEME_TOGGLE_JS, Output("theme", "data"), Input("theme-toggle", "n_clicks"),
                            State("theme", "data"), prevent_initial_call=True)
    app.clientside_callback(_THEME_APPLY_JS, Output("theme-toggle", "children"), Input("theme", "data"))
    app.clientside_callback("function(t) { if (t) { document.title = t; } return window.dash_clientside"
                            ".no_update; }", Output("doc-title", "id"), Input("doc-title", "data"))
    return app


def make_server(app: dash.Dash, host: str, port: int, *, log_requests: bool = False) -> Any:
    """A threaded WSGI server for the app on host:port (port 0 picks a free one: ``.server_port``).

    Call ``serve_forever()`` (e.g. in a thread) and ``shutdown()`` to stop. Requests are not
    logged unless ``log_requests`` (a page load is a dozen requests).
    """
    from werkzeug.serving import WSGIRequestHandler
    from werkzeug.serving import make_server as _make

    class Handler(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            if log_requests:
                super().log_request(code, size)

    return _make(host, port, app.server, threaded=True, request_handler=Handler)


def run_ui(settings: Settings | None = None) -> int:
    """Serve the UI on ``settings.host:settings.ui_port`` until interrupted; the exit code.

    Opens the store (and, for the embedded one, announces the UI's ``/api/v1`` to other processes
    on this machine and drains the spool every second, so new runs appear).

    Raises:
        MltraceError: the store cannot be opened, or the port cannot be bound.
    """
    from mltrace_otel.store import open_store

    settings = settings or Settings.from_env()
    store = open_store(settings)
    try:
        host = StoreHost(store) if settings.is_embedded else None
        app = create_app(settings, store, local_token=host.token if host else None)
        try:
            server = make_server(app, settings.host, settings.ui_port)
        except OSError as e:
            raise MltraceError(f"cannot serve the UI on {settings.host}:{settings.ui_port}: {e}",
                               hint="set MLTRACE_UI_PORT to a free port") from None
        if host is not None:
            host.start(local_url(settings.host, server.server_port))
        print(f"mltrace UI: http://{settings.host}:{server.server_port}/", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            if host is not None:
                host.stop()  # the announcement goes before the API does
            server.server_close()
    finally:
        store.close()
    return 0
