"""Reaching the store, and sharing the embedded one between processes.

chDB lets one process at a time hold an engine directory (ClickHouse flocks ``DIR/status``).
How mltrace-otel processes share it:

a. Pipelines never open the store: the SDK writes the spool.
b. A process opening the embedded store while another process holds it waits, polling, up to
   ``settings.store_wait_s`` (``MLTRACE_STORE_WAIT_S``), without a lock error; then
   :class:`~mltrace_otel.errors.StoreUnavailable` names the directory and the holder's pid.
c. A long-running holder (``mltrace server``, the Dash app) calls ``store.serve_shared()``:
   a loopback-only HTTP endpoint speaking enough of ClickHouse's HTTP interface for
   clickhouse-connect, guarded by a random token, announced in ``DIR/mltrace-share.json``
   (and ``MLTRACE_DIR/store.json``) as ``{pid, url, token, dir}``. It also drains the spool
   every second, so runs logged by pipelines appear while it runs.
d. ``open_store`` on a directory held by a live process that serves one connects through that
   endpoint instead: same SQL, same Store API. Queries and statements (including
   ``INSERT ... VALUES`` with bound parameters) pass; client-side data blocks do not (the
   holder drains the spool itself).

May import: settings, errors, clickhouse-connect, chdb.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mltrace_otel.errors import StoreUnavailable
from mltrace_otel.settings import Settings, mask_url

log = logging.getLogger(__name__)

SHARE_FILE = "mltrace-share.json"
"""Name of the endpoint announcement inside the engine directory."""

_POLL_S = 0.1
_engine_lock = threading.Lock()
_engine_users: dict[str, int] = {}  # engine dir -> open Connections in this process


@dataclass
class Connection:
    """An open clickhouse-connect client plus how it was reached."""

    client: Any
    url: str
    proxied: bool = False
    engine_dir: str | None = None

    def close(self) -> None:
        """Close the client; the last local user of an engine directory releases its lock."""
        try:
            self.client.close()
        except Exception:  # closing must not raise (runs in finally blocks and __exit__)
            log.debug("closing the store client failed", exc_info=True)
        if self.engine_dir is not None:
            with _engine_lock:
                n = _engine_users.get(self.engine_dir, 0) - 1
                if n > 0:
                    _engine_users[self.engine_dir] = n
                else:
                    _engine_users.pop(self.engine_dir, None)
            self.engine_dir = None


def engine_dir(url: str) -> Path:
    """The directory of a ``chdb://`` store URL, absolute and resolved."""
    parts = urlsplit(url)
    raw = parts.path if not parts.netloc else f"{parts.netloc}{parts.path}"
    return Path(os.path.realpath(Path(raw).expanduser()))


def connect(settings: Settings) -> Connection:
    """Open a client for the settings' store (database not yet selected: migrations create it).

    Raises:
        StoreUnavailable: server unreachable, or the embedded directory stayed held too long.
    """
    url = settings.resolved_store_url
    if settings.is_embedded:
        return _connect_embedded(settings, engine_dir(url))
    return _connect_http(url)


def _connect_http(url: str, *, token: str | None = None, proxied: bool = False,
                  shown: str | None = None) -> Connection:
    import clickhouse_connect

    parts = urlsplit(url)
    try:
        client = clickhouse_connect.get_client(
            host=parts.hostname, port=parts.port or (8443 if parts.scheme == "https" else 8123),
            username=parts.username or "default", password=token or parts.password or "",
            secure=parts.scheme == "https", database="default", connect_timeout=5,
            send_receive_timeout=300, autogenerate_session_id=False,
        )
    except Exception as e:
        raise StoreUnavailable(f"store {shown or mask_url(url)} cannot be reached: {e}",
                               hint="check that ClickHouse is running and MLTRACE_CLICKHOUSE_URL") from e
    return Connection(client, url, proxied=proxied)


def holder_pid(directory: Path) -> int | None:
    """The pid of another process holding the engine directory, or None when it is free.

    Uses the same flock ClickHouse takes on ``DIR/status``; a directory this process holds
    reports None (clients in one process share the engine).
    """
    with _engine_lock:
        if _engine_users.get(str(directory)):
            return None
    status = directory / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        try:
            text = status.read_text(errors="replace")
        except OSError:
            text = ""
        for line in text.splitlines():
            if line.startswith("PID:") and line[4:].strip().isdigit():
                return int(line[4:].strip())
        return -1  # held, pid unknown
    finally:
        os.close(fd)


def _read_share(directory: Path, pid: int | None) -> dict[str, Any] | None:
    try:
        info = json.loads((directory / SHARE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not {"pid", "url", "token"} <= info.keys():
        return None
    if pid is not None and pid > 0 and info["pid"] != pid:
        return None
    if not _pid_alive(int(info["pid"])):
        return None
    return info


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _connect_embedded(settings: Settings, directory: Path) -> Connection:
    import clickhouse_connect

    deadline = time.monotonic() + settings.store_wait_s
    last_error: Exception | None = None
    pid: int | None = None
    while True:
        pid = holder_pid(directory)
        if pid is not None:
            info = _read_share(directory, pid)
            if info is not None:
                try:
                    conn = _connect_http(info["url"], token=info["token"], proxied=True,
                                         shown=f"{info['url']} (shared by pid {info['pid']})")
                    conn.url = f"chdb://{directory.as_posix()}"
                    return conn
                except StoreUnavailable as e:  # the holder is stopping: retry until it is gone
                    last_error = e
        else:
            directory.mkdir(parents=True, exist_ok=True)
            with _engine_lock:
                try:
                    client = clickhouse_connect.get_client(dsn=f"chdb://{directory.as_posix()}")
                except Exception as e:  # lost a race with another opener, or a real failure
                    last_error = e
                    client = None
                if client is not None:
                    _engine_users[str(directory)] = _engine_users.get(str(directory), 0) + 1
                    return Connection(client, settings.resolved_store_url, engine_dir=str(directory))
            if holder_pid(directory) is None and "already initialized with path" in str(last_error):
                raise StoreUnavailable(
                    f"this process already holds another embedded store; cannot open {directory}",
                    hint="close the other store first (one chDB directory per process)") from last_error
        if time.monotonic() >= deadline:
            who = f"process {pid}" if pid and pid > 0 else "another process"
            raise StoreUnavailable(
                f"embedded store {directory} is held by {who} (waited {settings.store_wait_s:g} s)",
                hint="stop that process, let it serve the store (mltrace server), or raise "
                     "MLTRACE_STORE_WAIT_S",
            ) from last_error
        time.sleep(_POLL_S)


class SharedServer:
    """Loopback HTTP endpoint over this process's embedded store (see module docstring)."""

    def __init__(self, store: Any, drain_interval_s: float = 1.0) -> None:
        self.store = store
        self.drain_interval_s = drain_interval_s

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pass
