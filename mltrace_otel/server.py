"""``mltrace server``: the collector, the Dash app and ``/metrics`` on one machine and one store.

A composition module above :mod:`mltrace_otel.collector` and :mod:`mltrace_otel.dashboards`
(neither imports the other): it opens the store once, shares it with other processes, starts a
:class:`~mltrace_otel.collector.server.Collector` and the UI on it, and stops both on
SIGTERM/SIGINT. ``python -m mltrace_otel.server`` runs it from the ``MLTRACE_*`` variables.

Contract with the CLI::

    mltrace [--store URL] server [--host H] [--http-port P] [--grpc-port G] [--ui-port U]
        -> return run_server(Settings.from_env(store_url=URL).replace(...flags given...))
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from mltrace_otel.collector.server import Collector, StopSignals, open_shared, setup_logging
from mltrace_otel.errors import ConfigError, MltraceError
from mltrace_otel.settings import Settings
from mltrace_otel.store import share

log = logging.getLogger("mltrace_otel.server")


def _start_ui(settings: Settings, store: Any, metrics_body: Any) -> tuple[Any, str] | None:
    """Serve the Dash app (and /metrics on it) on settings.ui_port; None if it is not installed."""
    try:
        from mltrace_otel.dashboards.app import create_app
    except ImportError as e:
        log.warning("the Dash app is not available (%s); serving the collector only", e)
        return None
    from werkzeug.serving import make_server

    app = create_app(settings, store)
    flask_app = app.server
    if "mltrace_metrics" not in flask_app.view_functions:
        from flask import Response

        def mltrace_metrics() -> Any:
            body, ctype = metrics_body()
            return Response(body, mimetype=None, content_type=ctype)

        flask_app.add_url_rule("/metrics", "mltrace_metrics", mltrace_metrics)
    try:
        httpd = make_server(settings.host, settings.ui_port, flask_app, threaded=True)
    except OSError as e:
        raise ConfigError(f"cannot bind the UI on {settings.host}:{settings.ui_port}: {e.strerror or e}",
                          hint="choose another --ui-port / MLTRACE_UI_PORT") from None
    threading.Thread(target=httpd.serve_forever, name="mltrace-ui", daemon=True).start()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return httpd, f"http://{host}:{httpd.server_port}/"


def run_server(settings: Settings) -> int:
    """``mltrace server``: collector + Dash app + /metrics on one machine.

    Like :func:`run_collector`, plus: the Dash app (``create_app(settings, store)``) on
    ``settings.ui_port`` with ``/metrics`` next to it, and ``store.serve_shared()`` so the CLI
    and the Python API can query the embedded store while the server holds it (it also drains
    the spool every second). Blocks until SIGTERM/SIGINT, then stops everything and returns 0.

    Raises:
        StoreUnavailable: the store cannot be opened.
        ConfigError: a port cannot be bound.
    """

    setup_logging()
    share.tune_engine_allocator()
    with StopSignals() as signals:
        _serve(settings, signals)
    log.info("mltrace server stopped")
    return 0


def _serve(settings: Settings, signals: StopSignals) -> None:
    store, shared = open_shared(settings)
    ui = None
    collector = None
    clean = True
    try:
        collector = Collector(settings, store, drain_every_s=0.0 if shared else 2.0)
        collector.start()
        ui = _start_ui(settings, store, collector.metrics_body)
        ui_text = f", UI {ui[1]}" if ui else ""
        log.info("mltrace server listening: %s%s", collector.describe(), ui_text)
        signals.wait()
        log.info("mltrace server stopping")
    finally:
        if ui is not None:
            ui[0].shutdown()
        if collector is not None:
            clean = collector.stop_clean()
        if clean:
            store.close()


def main(argv: list[str]) -> int:
    """``python -m mltrace_otel.server``: :func:`run_server` with settings from the environment."""
    try:
        return run_server(Settings.from_env())
    except MltraceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
