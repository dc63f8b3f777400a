"""Reaching the store: a ClickHouse server, or the embedded engine and who holds it.

chDB lets one process at a time hold an engine directory (ClickHouse flocks ``DIR/status``):

a. Pipelines never open the store: the SDK writes the spool.
b. A process opening the embedded store while another process holds it waits, polling, up to
   ``settings.store_wait_s`` (``MLTRACE_STORE_WAIT_S``); then
   :class:`~mltrace_otel.errors.StoreUnavailable` names the directory and the holder's pid.
c. A long-running holder (``mltrace ui`` / ``server`` / ``collector``, a script using
   :mod:`mltrace_otel.api`) serves the HTTP query API ``/api/v1`` and announces it with
   :func:`announce`: ``{pid, url, token, dir, database}`` in ``MLTRACE_DIR/store.json`` and
   ``DIR/mltrace-api.json`` (mode 0600: the token is the key to the API). Readers find it with
   :func:`announced` and ask that API instead of the store (the CLI and :mod:`mltrace_otel.api`
   do); opening the store held by such a holder fails at once, naming it.

May import: settings, errors, spool, clickhouse-connect and chdb (lazily).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from mltrace_otel import spool
from mltrace_otel.errors import StoreUnavailable, require_extra, store_modules
from mltrace_otel.settings import Settings, mask_url

log = logging.getLogger(__name__)

ANNOUNCE_FILE = "mltrace-api.json"
"""Name of the holder's announcement inside the engine directory (also ``MLTRACE_DIR/store.json``)."""

_POLL_S = 0.1
_engine_lock = threading.Lock()
_engine_users: dict[str, int] = {}  # engine dir -> open Connections in this process


@dataclass
class Connection:
    """An open clickhouse-connect client plus how it was reached."""

    client: Any
    url: str
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


@dataclass(frozen=True)
class Announcement:
    """The query API of the live process holding an embedded store."""

    pid: int
    url: str
    token: str = ""


ENGINE_MALLOC_CONF = "dirty_decay_ms:1000,muzzy_decay_ms:0"
"""jemalloc options for the embedded engine of a long-running ingest process (the collector,
``mltrace server``): return freed pages after 1 s instead of chDB's 5 s, and then at once (no
"muzzy" stage). Measured interleaved at 4 x 512-span senders: 60,000 spans/s at 1.7 GiB peak
RSS, against 65,000 spans/s at 2.0 GiB with 30 s (the memory an index insert frees is then
reused by the next one instead of being faulted back in) and 33,000 spans/s at 1.2 GiB with 0;
1 s keeps the ingest target (50,000 spans/s) with the least memory (docs/benchmarks.md)."""


def tune_engine_allocator() -> bool:
    """Give the embedded engine :data:`ENGINE_MALLOC_CONF` unless the user set
    ``JE_MALLOC_CONF`` (chDB's jemalloc reads that variable once, when the library loads): True
    if it will apply. Call before anything opens the store; too late (False) once chDB is
    loaded."""
    if "chdb" in sys.modules or "JE_MALLOC_CONF" in os.environ:
        return False
    os.environ["JE_MALLOC_CONF"] = ENGINE_MALLOC_CONF
    return True


def engine_dir(url: str) -> Path:
    """The directory of a ``chdb://`` store URL, absolute and resolved."""
    parts = urlsplit(url)
    raw = parts.path if not parts.netloc else f"{parts.netloc}{parts.path}"
    return Path(os.path.realpath(Path(raw).expanduser()))


def connect(settings: Settings) -> Connection:
    """Open a client for the settings' store (database not yet selected: migrations create it).

    Raises:
        StoreUnavailable: server unreachable; the embedded directory held by a process that
            announces its query API; or held by another process for longer than
            ``settings.store_wait_s``.
        ConfigError: the store's driver (clickhouse-connect, chDB) is not installed: the
            ``server`` extra is missing (a base install queries a server instead).
    """
    url = settings.resolved_store_url
    require_extra("opening the store", store_modules(settings.is_embedded),
                  alternative="or query a server: MLTRACE_SERVER_URL / mltrace --server URL")
    if settings.is_embedded:
        directory = engine_dir(url)
        _private_store_dir(settings, directory)
        return _connect_embedded(settings, directory)
    return _connect_http(url)


def _private_store_dir(settings: Settings, directory: Path) -> None:
    """Create the embedded store's directory 0700 (and MLTRACE_DIR, tightening an existing one
    this user owns, when the store lives in it), before chDB writes into it: chDB creates its
    files with the process umask, so only the directory keeps other users out."""
    home = Path(os.path.realpath(settings.mltrace_dir.expanduser()))
    if directory == home or home in directory.parents:
        spool.secure_home(home)
    try:
        spool.private_dir(directory)
    except OSError as e:  # the engine reports an unusable directory with the store's error
        log.debug("mltrace: cannot create %s: %s", directory, e)


def _drop_redundant_driver_warning(record: logging.LogRecord) -> bool:
    """clickhouse-connect logs "Unexpected Http Driver Exception" before raising; the store maps
    that error to StoreUnavailable, so the line on stderr is noise."""
    return not str(record.msg).startswith("Unexpected Http Driver Exception")


def _connect_http(url: str) -> Connection:
    import clickhouse_connect

    logging.getLogger("clickhouse_connect.driver._backend.http_sync").addFilter(_drop_redundant_driver_warning)
    parts = urlsplit(url)
    try:
        client = clickhouse_connect.get_client(
            host=parts.hostname, port=parts.port or (8443 if parts.scheme == "https" else 8123),
            # percent-decoded: a password with / ? # @ : is written %2F %3F %23 %40 %3A in the URL
            username=unquote(parts.username or "default"), password=unquote(parts.password or ""),
            secure=parts.scheme == "https", database="default", connect_timeout=5,
            send_receive_timeout=300, autogenerate_session_id=False,
        )
    except Exception as e:
        raise StoreUnavailable(f"store {mask_url(url)} cannot be reached: {e}",
                               hint="check that ClickHouse is running and MLTRACE_CLICKHOUSE_URL") from e
    return Connection(client, url)


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
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # held
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
    try:
        pid = re.search(r"^PID:\s*(\d+)\s*$", status.read_text(errors="replace"), re.M)
    except OSError:
        pid = None
    return int(pid.group(1)) if pid else -1  # -1: held, pid unknown


def _announcement_files(settings: Settings, directory: Path) -> tuple[Path, Path]:
    return directory / ANNOUNCE_FILE, settings.mltrace_dir.expanduser() / "store.json"


def _read_announcement(settings: Settings, directory: Path, pid: int) -> Announcement | None:
    for path in _announcement_files(settings, directory):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if (isinstance(info, dict) and info.get("pid") == pid and info.get("dir") == str(directory)
                and info.get("database") == settings.database and isinstance(info.get("url"), str)):
            return Announcement(pid, info["url"], str(info.get("token") or ""))
    return None


def announced(settings: Settings) -> Announcement | None:
    """The query API announced by the live process that holds the settings' embedded store
    (same directory and database), or None: a server store, a free directory, a holder that
    announces nothing, or an announcement left by a process that is gone."""
    if not settings.is_embedded:
        return None
    directory = engine_dir(settings.resolved_store_url)
    pid = holder_pid(directory)
    if pid is None or pid <= 0:
        return None
    return _read_announcement(settings, directory, pid)


def announce(settings: Settings, url: str, token: str) -> list[Path]:
    """Record this process's query API for the embedded store it holds (files 0600, written
    atomically); the files written, for :func:`withdraw`."""
    directory = engine_dir(settings.resolved_store_url)
    info = {"pid": os.getpid(), "url": url, "token": token, "dir": str(directory),
            "database": settings.database}
    written = []
    for path in _announcement_files(settings, directory):
        try:
            spool.private_dir(path.parent)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(info, f)
            os.replace(tmp, path)
            written.append(path)
        except OSError as e:
            log.warning("mltrace: cannot write %s: %s", path, e)
    return written


def withdraw(paths: list[Path], url: str) -> None:
    """Remove the announcements of ``url`` among ``paths`` (another holder's are left alone)."""
    for path in paths:
        try:
            if json.loads(path.read_text()).get("url") == url:
                path.unlink()
        except (OSError, ValueError):
            pass


def _connect_embedded(settings: Settings, directory: Path) -> Connection:
    import clickhouse_connect

    deadline = time.monotonic() + settings.store_wait_s
    last_error: Exception | None = None
    pid: int | None = None
    while True:
        pid = holder_pid(directory)
        if pid is not None:
            ann = _read_announcement(settings, directory, pid) if pid > 0 else None
            if ann is not None:  # a long-running holder: waiting would not help
                raise StoreUnavailable(
                    f"embedded store {directory} is held by another process (pid {pid}), which "
                    f"serves its query API at {ann.url}",
                    hint="the CLI and mltrace_otel.api query it there by themselves; to open the "
                         "store itself, stop that process")
        else:
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
                hint="stop that process, or raise MLTRACE_STORE_WAIT_S",
            ) from last_error
        time.sleep(_POLL_S)


def wait_drained(spool_dir: Path, timeout_s: float) -> bool:
    """Wait until the spool files pending now are gone (a holder drains them every second);
    False when some are still there after ``timeout_s``."""
    names = {p.name for p in spool.pending(spool_dir)}
    deadline = time.monotonic() + timeout_s
    while names:
        try:
            left = {p.name.split(spool.CLAIM)[0] for p in spool_dir.iterdir()}
        except OSError:
            return True
        names &= left
        if not names:
            break
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
