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
import hmac
import json
import logging
import os
import re
import secrets
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mltrace_otel import spool
from mltrace_otel.auth import token_matches
from mltrace_otel.errors import StoreUnavailable
from mltrace_otel.settings import Settings, mask_url

log = logging.getLogger(__name__)

SHARE_FILE = "mltrace-share.json"
"""Name of the endpoint announcement inside the engine directory."""

_POLL_S = 0.1
_SLOTS = 4  # concurrent requests the shared endpoint runs on the engine
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


ENGINE_MALLOC_CONF = "dirty_decay_ms:30000,muzzy_decay_ms:30000"
"""jemalloc options for the embedded engine of a long-running ingest process (the collector,
``mltrace server``): keep freed pages 30 s instead of chDB's 5 s (then purged at once). An
index insert allocates and frees a few hundred MB every second; with the default, most of it
was returned to the kernel and faulted back in by the next insert (1.6 page faults per span,
~8% of the collector's CPU). With 30 s: 0.4 per span, CPU per span 35 µs instead of 36-47 in
interleaved benchmark runs, for ~300 MB more peak RSS."""


def tune_engine_allocator() -> bool:
    """Give the embedded engine :data:`ENGINE_MALLOC_CONF` unless the user set
    ``JE_MALLOC_CONF`` (chDB's jemalloc reads that variable once, when the library loads): True
    if it will apply. Call before anything opens the store; too late (False) once chDB is
    loaded."""
    import sys

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
        StoreUnavailable: server unreachable, or the embedded directory stayed held too long.
    """
    url = settings.resolved_store_url
    if settings.is_embedded:
        return _connect_embedded(settings, engine_dir(url))
    return _connect_http(url)


class _DropRedundantDriverWarning(logging.Filter):
    """clickhouse-connect logs "Unexpected Http Driver Exception" before raising; the store maps
    that error (StoreUnavailable, or a reconnect to the shared store's next holder), so the
    line on stderr is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unexpected Http Driver Exception")


_driver_filter = _DropRedundantDriverWarning()


def _connect_http(url: str, *, token: str | None = None, proxied: bool = False,
                  shown: str | None = None) -> Connection:
    import clickhouse_connect

    driver_log = logging.getLogger("clickhouse_connect.driver._backend.http_sync")
    if _driver_filter not in driver_log.filters:
        driver_log.addFilter(_driver_filter)

    parts = urlsplit(url)
    try:
        client = clickhouse_connect.get_client(
            host=parts.hostname, port=parts.port or (8443 if parts.scheme == "https" else 8123),
            username=parts.username or "default", password=token or parts.password or "",
            secure=parts.scheme == "https", database="default", connect_timeout=5,
            send_receive_timeout=300, autogenerate_session_id=False, compress=not proxied,
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
    if not spool.pid_alive(int(info["pid"])):
        return None
    return info


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
            spool.private_dir(directory)
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


# --- the shared endpoint ------------------------------------------------------------------------
_TRANSPORT_PARAMS = frozenset({
    "database", "query", "query_id", "session_id", "session_timeout", "session_check",
    "wait_end_of_query", "client_protocol_version", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "enable_http_compression", "compress", "decompress",
    "buffer_size", "quota_key", "role", "user", "password", "default_format",
})
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INSERT_FORMAT = re.compile(rb"^\s*(INSERT\s+INTO\s.*?)\s+FORMAT\s+(\w+)[ \t]*\r?\n", re.S | re.I)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.I)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug("shared store: " + format, *args)

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)  # one write: no Nagle / delayed-ACK stall
        self.flush_headers()

    def _error(self, status: int, message: str, code: int = 0) -> None:
        self._send(status, message.encode(errors="replace") + b"\n",
                   {"X-ClickHouse-Exception-Code": str(code or 1000),
                    "Content-Type": "text/plain; charset=UTF-8"})

    def _authorized(self, params: dict[str, str]) -> bool:
        """The token as ``Authorization`` (Basic or Bearer, the scheme in any case), else as
        ClickHouse's ``X-ClickHouse-Key`` header or ``password`` parameter."""
        token = self.server.token
        auth = self.headers.get("Authorization")
        if auth:
            return token_matches(auth, token, basic=True)
        given = self.headers.get("X-ClickHouse-Key") or params.get("password") or ""
        return hmac.compare_digest(given.encode(), token.encode())

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._safely(b"")

    def do_HEAD(self) -> None:  # noqa: N802
        self._safely(b"")

    def do_POST(self) -> None:  # noqa: N802
        self._safely(self._body())

    def _safely(self, body: bytes) -> None:
        try:
            self._handle(body)
        except Exception as e:  # a broken request must get an answer, not a dropped connection
            log.exception("mltrace: shared store request failed")
            self._error(500, f"Code: 1001. DB::Exception: mltrace shared store: {e}. (STD_EXCEPTION)", 1001)

    def _handle(self, body: bytes) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path.rstrip("/") == "/ping" or (url.path == "/" and not body and "query" not in params):
            self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            msg = BytesParser(policy=email_policy).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name:
                    params[name] = part.get_payload(decode=True).decode()
            body = b""
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        if body and encoding and encoding != "identity":
            from clickhouse_connect.driver._backend.chdb_backend import _decompress

            body = _decompress(body, encoding)
        if not self._authorized(params):
            self._error(401, "Code: 516. DB::Exception: mltrace shared store: wrong token. "
                        "(AUTHENTICATION_FAILED)", 516)
            return
        data: bytes | None = None
        if "query" in params:
            sql = params["query"]
            data = body or None
        else:
            m = _INSERT_FORMAT.match(body)
            if m and body[m.end():]:
                sql, data = (m.group(1) + b" FORMAT " + m.group(2)).decode(), body[m.end():]
            else:
                sql = body.decode()
        try:
            out, fmt = self.server.execute(sql, data, params)
        except _QueryFailed as e:
            if e.code == 210:  # closing: drop the connection so the client reconnects elsewhere
                self.close_connection = True
                return
            self._error(500, e.message, e.code)
            return
        headers = {"Content-Type": "application/octet-stream"}
        if fmt:
            headers["X-ClickHouse-Format"] = fmt
        self._send(200, out, headers)


class _QueryFailed(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message, self.code = message, code


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, engine_path: str, token: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.engine_path = engine_path
        self.token = token
        self.slots = threading.BoundedSemaphore(_SLOTS)
        self.closing = False

    def quiesce(self, timeout_s: float = 30.0) -> None:
        """Refuse new requests and wait for the running ones (no chDB call may outlive us)."""
        self.closing = True
        deadline = time.monotonic() + timeout_s
        taken = 0
        while taken < _SLOTS and self.slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            taken += 1

    def execute(self, sql: str, data: bytes | None, params: dict[str, str]) -> tuple[bytes, str | None]:
        """Run one request on a fresh chDB handle (session state never leaks between requests)."""
        import chdb

        binds = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        settings = {k: v for k, v in params.items()
                    if k not in _TRANSPORT_PARAMS and not k.startswith("param_")}
        db = params.get("database") or ""
        tmp: str | None = None
        with self.slots:
            if self.closing:
                raise _QueryFailed("Code: 210. DB::Exception: mltrace shared store is closing. "
                                   "(NETWORK_ERROR)", 210)
            conn = chdb.connect(self.engine_path)
            try:
                if db:
                    if not _SETTING_NAME.fullmatch(db):
                        raise _QueryFailed(f"Code: 81. DB::Exception: bad database name {db!r}. "
                                           "(UNKNOWN_DATABASE)", 81)
                    conn.query(f"USE `{db}`", "TabSeparated")
                for k, v in settings.items():
                    if not _SETTING_NAME.fullmatch(k):
                        raise _QueryFailed(f"Code: 115. DB::Exception: bad setting {k!r}. "
                                           "(UNKNOWN_SETTING)", 115)
                    conn.query(f"SET {k} = {_quote(v)}", "TabSeparated")
                if data is not None:
                    m = re.match(r"^\s*(INSERT\s+INTO\s.*?)\s+FORMAT\s+(\w+)\s*$", sql, re.S | re.I)
                    if not m:
                        raise _QueryFailed("Code: 62. DB::Exception: mltrace shared store: data "
                                           "needs INSERT ... FORMAT. (SYNTAX_ERROR)", 62)
                    fd, tmp = tempfile.mkstemp(suffix=".mltrace-insert")
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    sql = f"{m.group(1)} FROM INFILE {_quote(tmp)} FORMAT {m.group(2)}"
                fmt_m = _TRAILING_FORMAT.search(sql)
                try:
                    res = conn.query(sql, "TabSeparated", params=binds) if binds else conn.query(
                        sql, "TabSeparated")
                except Exception as e:  # chDB raises RuntimeError with ClickHouse's message
                    text = str(e)
                    idx = text.find("Code: ")
                    text = text[idx:] if idx > 0 else text
                    m2 = re.search(r"Code: (\d+)", text)
                    raise _QueryFailed(text.strip(), int(m2.group(1)) if m2 else 1000) from None
                out = res.bytes() or b""
                return out, (fmt_m.group(1) if fmt_m else ("TabSeparated" if out else None))
            finally:
                conn.close()
                if tmp:
                    try:
                        os.unlink(tmp)
                    except OSError:
                        pass


class SharedServer:
    """Loopback HTTP endpoint over this process's embedded store, plus a periodic spool drain.

    Started by :meth:`Store.serve_shared`; stopped by ``Store.close()``. Announces itself in
    ``DIR/mltrace-share.json`` and ``MLTRACE_DIR/store.json`` as ``{pid, url, token, dir}``
    (mode 0600: the token is the only key to the endpoint).
    """

    def __init__(self, store: Any, drain_interval_s: float = 1.0) -> None:
        self.store = store
        self.drain_interval_s = drain_interval_s
        self.url = ""
        self.token = ""
        self._server: _Server | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._files: list[Path] = []

    def start(self) -> None:
        """Serve the endpoint, announce it, and start the drain thread."""
        conn = self.store._conn
        if conn.engine_dir is None:
            raise StoreUnavailable(f"store {mask_url(self.store.url)} is not an embedded store held by "
                                   "this process; only its holder can share it")
        token = self.token = secrets.token_urlsafe(32)
        self._server = _Server(conn.engine_dir, token)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        t = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                             name="mltrace-shared-store", daemon=True)
        t.start()
        self._threads.append(t)
        info = {"pid": os.getpid(), "url": self.url, "token": token, "dir": conn.engine_dir}
        for path in (Path(conn.engine_dir) / SHARE_FILE, self.store.settings.mltrace_dir / "store.json"):
            try:
                _write_private_json(path, info)
                self._files.append(path)
            except OSError as e:
                log.warning("mltrace: cannot write %s: %s", path, e)
        if self.drain_interval_s > 0:
            d = threading.Thread(target=self._drain_loop, name="mltrace-spool-drain", daemon=True)
            d.start()
            self._threads.append(d)

    def _drain_loop(self) -> None:
        while not self._stop.wait(self.drain_interval_s):
            try:
                self.store.drain_spool()
            except Exception:  # keep serving; the next round retries
                log.exception("mltrace: spool drain failed")

    def stop(self) -> None:
        """Stop draining and serving; remove the announcement files."""
        self._stop.set()
        for path in self._files:
            try:
                if json.loads(path.read_text()).get("url") == self.url:
                    path.unlink()
            except (OSError, ValueError):
                pass
        self._files.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.quiesce()
            self._server.server_close()
            self._server = None
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=10)
        self._threads.clear()


def _write_private_json(path: Path, info: dict[str, Any]) -> None:
    spool.private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)
