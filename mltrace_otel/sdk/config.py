"""mltrace's configuration functions: set_db_uri / get_db_uri / set_address.

Settings come from the environment (``Settings.from_env(lenient=True)``: a bad variable warns
once and keeps its default, because the pipeline must still run), or from
:func:`mltrace_otel.sdk.export.configure`; these functions override single fields for the rest
of the process. :func:`current_settings` is what the SDK and the query API both use.

Imports settings, errors and the SDK's export module only.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from mltrace_otel.errors import ConfigError
from mltrace_otel.settings import Settings, parse_store_url

_lock = threading.Lock()
_overrides: dict[str, object] = {}


def current_settings() -> Settings:
    """The settings in force: :func:`~mltrace_otel.sdk.export.configure`'s, else the environment's
    (read now, leniently), with set_db_uri / set_address applied."""
    from mltrace_otel.sdk import export

    base = export.configured_settings()
    if base is None:
        base = Settings.from_env(lenient=True)
    with _lock:
        changes = dict(_overrides)
    return base.replace(**changes) if changes else base


def set_db_uri(uri: str) -> None:
    """Use this store for queries (``chdb:///path`` or ``http(s)://user:pass@host:8123/db``).

    Raises:
        ConfigError: the URL's scheme or shape is not one the store understands.
    """
    parse_store_url("set_db_uri", str(uri))
    with _lock:
        _overrides["store_url"] = str(uri)


def get_db_uri() -> str:
    """The store URL queries use (default: the embedded store under MLTRACE_DIR)."""
    return current_settings().resolved_store_url


def set_address(address: str) -> None:
    """Point this process at an mltrace server: runs are exported over OTLP/HTTP to
    ``http://ADDRESS:4318`` and queries go to the ClickHouse server at ``http://ADDRESS:8123``.

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
    from mltrace_otel.sdk import export

    export.reconfigure()


def clear_overrides() -> None:
    """Forget set_db_uri / set_address (tests)."""
    with _lock:
        _overrides.clear()
