"""mltrace's configuration functions: set_db_uri / get_db_uri / set_address.

Settings come from the environment (``Settings.from_env(lenient=True)``: a bad variable warns
once and keeps its default, because the pipeline must still run), or from
:func:`mltrace_otel.sdk.export.configure`; these functions override single fields for the rest
of the process. :func:`current_settings` is what the SDK and the query API both use.

Imports settings, errors and the SDK's export module only.
"""

from __future__ import annotations

import socket
import threading
import time
import warnings
from urllib.parse import urlsplit

from mltrace_otel.errors import ConfigError
from mltrace_otel.settings import Settings, is_sqlalchemy_url, mask_url, parse_store_url

_lock = threading.Lock()
_overrides: dict[str, object] = {}

PROBE_TIMEOUT_S = 0.3
"""How long set_address / DB_SERVER wait for the server's OTLP port to accept a connection."""
_probed: dict[tuple[str, int], bool] = {}  # (host, port) -> listening, once per process
_warned_down = False


def current_settings() -> Settings:
    """The settings in force: :func:`~mltrace_otel.sdk.export.configure`'s, else the environment's
    (read now, leniently), with set_db_uri / set_address applied."""
    from mltrace_otel.sdk import export

    base = export.configured_settings()
    from_env = base is None
    if base is None:
        base = Settings.from_env(lenient=True)
    with _lock:
        changes = dict(_overrides)
    settings = base.replace(**changes) if changes else base
    if from_env and "otlp_endpoint" not in changes:
        settings = _spool_if_server_down(settings, "DB_SERVER")
    return settings


def _mltrace_server_host(settings: Settings) -> str | None:
    """The host when the export endpoint is an mltrace server's as set_address / DB_SERVER
    name it (``http://HOST:4318`` with the store at ``http://HOST:8123``), else None."""
    ep = settings.otlp_endpoint or ""
    if settings.otlp_traces_endpoint or settings.export not in ("auto", "otlp") or not ep:
        return None
    parts = urlsplit(ep)
    host = parts.hostname
    if not host or parts.port != 4318 or parts.scheme != "http":
        return None
    store = urlsplit(settings.store_url or "")
    return host if store.hostname == host and store.port == 8123 else None


def _listening(host: str, port: int) -> bool:
    """Whether ``host:port`` accepts a TCP connection within PROBE_TIMEOUT_S (asked once per
    process and address; a refused connection answers at once)."""
    key = (host, port)
    with _lock:
        known = _probed.get(key)
    if known is not None:
        return known
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    ok = False
    try:
        for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(left)
                try:
                    sock.connect(addr)
                    ok = True
                    break
                except OSError:
                    continue
    except OSError:  # the name does not resolve
        ok = False
    with _lock:
        _probed[key] = ok
    return ok


def _spool_if_server_down(settings: Settings, source: str, stacklevel: int = 4) -> Settings:
    """``settings`` unchanged when the mltrace server it names (set_address / DB_SERVER)
    listens, else with runs kept in the local spool, and one warning per process: the
    pipeline goes on at once, instead of each export retrying a dead endpoint."""
    global _warned_down
    host = _mltrace_server_host(settings)
    if host is None or _listening(host, 4318):
        return settings
    if not _warned_down:
        _warned_down = True
        warnings.warn(
            f"mltrace: nothing is listening at {host}:4318 ({source}); runs are kept in the local "
            f"spool ({settings.spool_dir}), which `mltrace` commands on this machine read. "
            "Start `mltrace server` there, or set OTEL_EXPORTER_OTLP_ENDPOINT to send runs "
            "elsewhere.", RuntimeWarning, stacklevel=stacklevel)
    return settings.replace(export="spool")


def set_db_uri(uri: str) -> None:
    """Use this store for queries (``chdb:///path`` or ``http(s)://user:pass@host:8123/db``).

    mltrace's own URIs (SQLAlchemy URLs: ``postgresql://...``, ``sqlite://...``) name a store
    this project does not use: they give one warning, naming what to set instead, and the
    store in force (by default the embedded one) is kept, so mltrace code runs unchanged.

    Raises:
        ConfigError: the URL's scheme or shape is not one the store understands.
    """
    text = str(uri)
    if is_sqlalchemy_url(text):
        warnings.warn(
            f"mltrace: set_db_uri({mask_url(text)!r}) names mltrace's SQL database, which "
            "mltrace-otel does not use; keeping the store in force "
            f"({mask_url(current_settings().resolved_store_url)}). To use a ClickHouse server, "
            "call set_db_uri('http://user:pass@host:8123/db') or set MLTRACE_CLICKHOUSE_URL; "
            "runs are sent with set_address(host) or OTEL_EXPORTER_OTLP_ENDPOINT.",
            RuntimeWarning, stacklevel=2)
        return
    parse_store_url("set_db_uri", text)
    with _lock:
        _overrides["store_url"] = text


def get_db_uri() -> str:
    """The store URL queries use (default: the embedded store under MLTRACE_DIR)."""
    return current_settings().resolved_store_url


def set_address(address: str) -> None:
    """Point this process at an mltrace server: runs are exported over OTLP/HTTP to
    ``http://ADDRESS:4318`` and queries go to the ClickHouse server at ``http://ADDRESS:8123``.

    When nothing accepts a connection at ``ADDRESS:4318`` (asked once, for at most
    :data:`PROBE_TIMEOUT_S`), runs are kept in the local spool instead, with one warning:
    the pipeline never waits on a server that is not there.

    Args:
        address: a host name or IP address (``localhost``, ``10.0.0.5``); a URL's host is used.

    Raises:
        ConfigError: the address is empty.
    """
    text = str(address).strip()
    host = urlsplit(text).hostname if "://" in text else text.split("/")[0]
    if host and ":" in host and not host.startswith("["):
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else f"[{host}]"
    if not host:
        raise ConfigError(f"set_address({address!r}) names no host", hint="use e.g. 'localhost'")
    with _lock:
        _overrides["otlp_endpoint"] = f"http://{host}:4318"
        _overrides["otlp_traces_endpoint"] = None
        _overrides["store_url"] = f"http://{host}:8123"
        _overrides.pop("export", None)
    if _spool_if_server_down(current_settings(), f"set_address({address!r})", 3).export == "spool":
        with _lock:
            _overrides["export"] = "spool"
    from mltrace_otel.sdk import export

    export.reconfigure()


def clear_overrides() -> None:
    """Forget set_db_uri / set_address and what was learnt about servers (tests)."""
    global _warned_down
    with _lock:
        _overrides.clear()
        _probed.clear()
        _warned_down = False
