"""``mltrace server`` and ``mltrace collector``: the processes that hold a store and serve it.

A composition module above :mod:`mltrace_otel.collector`, :mod:`mltrace_otel.web_api` and
:mod:`mltrace_otel.dashboards` (none imports another): it opens the store once, starts a
:class:`~mltrace_otel.collector.server.Collector` (and, for ``server``, the UI) on it, announces
the ``/api/v1`` query API to the other processes on this machine
(:class:`~mltrace_otel.web_api.StoreHost`, embedded store: the UI's, or one of its own on a
loopback port), and stops them all on SIGTERM/SIGINT. ``python -m mltrace_otel.server`` and
``python -m mltrace_otel.collector`` run them from the ``MLTRACE_*`` variables.

Contract with the CLI::

    mltrace [--store URL] server [--host H] [--http-port P] [--grpc-port G] [--ui-port U]
        -> return run_server(Settings.from_env(store_url=URL).replace(...flags given...))
    mltrace [--store URL] collector [--host H] [--http-port P] [--grpc-port G]
        -> return run_collector(...)          # the process exit code
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

from mltrace_otel.collector.server import Collector, StopSignals, setup_logging
from mltrace_otel.errors import ConfigError, MltraceError
from mltrace_otel.settings import Settings
from mltrace_otel.store import connect
from mltrace_otel.web_api import StoreHost, local_url

if TYPE_CHECKING:  # types only
    from mltrace_otel.store.core import Store

log = logging.getLogger("mltrace_otel.server")


def _start_ui(settings: Settings, store: Store, metrics_body: Any,
              local_token: str | None) -> tuple[Any, str] | None:
    """Serve the Dash app (and /metrics on it) on settings.ui_port; None if it is not installed."""
    try:
        from mltrace_otel.dashboards.app import create_app
    except ImportError as e:
        log.warning("the Dash app is not available (%s); serving the collector only", e)
        return None
    from werkzeug.serving import WSGIRequestHandler, make_server

    class PlainRequestLog(WSGIRequestHandler):
        """werkzeug's request log line without its terminal colours (it colours whether or not
        stderr is a terminal, and a log file then holds escape codes)."""

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            self.log("info", '"%s" %s %s', self.requestline, code, size)

    app = create_app(settings, store, local_token=local_token)
    flask_app = app.server
    if "mltrace_metrics" not in flask_app.view_functions:
        from flask import Response

        def mltrace_metrics() -> Any:
            body, ctype = metrics_body()
            return Response(body, mimetype=None, content_type=ctype)

        flask_app.add_url_rule("/metrics", "mltrace_metrics", mltrace_metrics)
    try:
        httpd = make_server(settings.host, settings.ui_port, flask_app, threaded=True,
                            request_handler=PlainRequestLog)
    except OSError as e:
        raise ConfigError(f"cannot bind the UI on {settings.host}:{settings.ui_port}: {e.strerror or e}",
                          hint="choose another --ui-port / MLTRACE_UI_PORT") from None
    threading.Thread(target=httpd.serve_forever, name="mltrace-ui", daemon=True).start()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return httpd, f"http://{host}:{httpd.server_port}/"


def run_server(settings: Settings) -> int:
    """``mltrace server``: collector + Dash app + /metrics on one machine.

    Like :func:`run_collector`, plus: the Dash app (``create_app(settings, store)``) on
    ``settings.ui_port`` with ``/metrics`` and ``/api/v1`` next to it. On the embedded store a
    :class:`~mltrace_otel.web_api.StoreHost` announces that API, so the CLI and the Python API
    of other processes query the store through it while the server holds it, and drains the
    spool every second. Blocks until SIGTERM/SIGINT, then stops everything and returns 0.

    Raises:
        StoreUnavailable: the store cannot be opened.
        ConfigError: a port cannot be bound.
    """
    return _run(settings, with_ui=True)


def run_collector(settings: Settings) -> int:
    """``mltrace collector``: the collector alone, on the store the settings name.

    Opens the store (embedded chDB by default, or the ClickHouse URL), announces a query API on
    a loopback port for an embedded store (so the CLI and the Python API of other processes
    query it while the collector runs; the host also drains the spool), serves OTLP/HTTP on
    ``settings.host:otlp_http_port`` (with ``/metrics``) and OTLP/gRPC on ``otlp_grpc_port``,
    logs one line with the addresses, and blocks until SIGTERM/SIGINT; then stops accepting,
    commits the queue (within ``settings.stop_grace_s``) and returns 0.

    Raises:
        StoreUnavailable: the store cannot be opened.
        ConfigError: a port cannot be bound.
    """
    return _run(settings, with_ui=False)


def _run(settings: Settings, *, with_ui: bool) -> int:
    setup_logging()
    connect.tune_engine_allocator()
    with StopSignals() as signals:
        _serve(settings, signals, with_ui=with_ui)
    log.info("mltrace %s stopped", "server" if with_ui else "collector")
    return 0


def _serve(settings: Settings, signals: StopSignals, *, with_ui: bool) -> None:
    from mltrace_otel.store import open_store

    store = open_store(settings, index_journal=False)  # the collector below recovers the journal
    host = StoreHost(store) if settings.is_embedded else None
    ui = None
    collector = None
    clean = True
    try:
        collector = Collector(settings, store, drain_every_s=0.0 if host else 2.0)
        collector.start()
        if with_ui:
            ui = _start_ui(settings, store, collector.metrics_body, host.token if host else None)
        if host is not None:  # without the UI, the API on a loopback port of the host's own
            host.start(local_url(settings.host, ui[0].server_port) if ui else None)
        what = "server" if with_ui else "collector"
        ui_text = f", UI {ui[1]}, query API {ui[1]}api/v1" if ui else ""
        log.info("mltrace %s listening: %s%s", what, collector.describe(), ui_text)
        signals.wait()
        log.info("mltrace %s stopping: committing %d queued spans", what,
                 collector.queue.depth if collector.queue else 0)
    finally:
        if host is not None:
            host.stop()  # the announcement goes before the API does
        if ui is not None:
            ui[0].shutdown()
        if collector is not None:
            clean = collector.stop_clean()
        if clean:
            store.close()


def main(argv: list[str]) -> int:
    """``python -m mltrace_otel.server``: :func:`run_server` with settings from the environment
    (``collector`` as the first argument: :func:`run_collector`)."""
    run = run_collector if argv[:1] == ["collector"] else run_server
    try:
        return run(Settings.from_env())
    except MltraceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
