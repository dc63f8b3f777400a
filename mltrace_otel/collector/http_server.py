"""OTLP/HTTP receiver: ``POST /v1/traces`` plus ``GET /metrics`` and ``GET /healthz``.

A stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive: one thread per connection,
all of them feeding the one writer thread of :mod:`.pipeline` (the heavy work, parsing and
inserting, happens in C: upb and ClickHouse). Responses are in the request's encoding; error
bodies are ``google.rpc.Status`` as OTLP/HTTP specifies. Status codes:

- 200 with ExportTraceServiceResponse (``partial_success`` when invalid spans were dropped);
- 400 malformed body / no valid span, 401 missing or wrong bearer token, 404 unknown path,
  405 wrong method, 411 no Content-Length, 413 body over MLTRACE_MAX_BODY_BYTES (before or
  after decompression), 415 Content-Type other than application/x-protobuf or
  application/json, or Content-Encoding other than gzip/deflate/identity;
- 429 queue full and 503 store stalled/failing/shutting down, both with ``Retry-After``.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mltrace_otel.collector import otlp
from mltrace_otel.collector.pipeline import QueueFull, Unavailable
from mltrace_otel.collector.receiver import Exporter

log = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"
_GRPC_CODE = {400: 3, 401: 16, 404: 5, 405: 12, 411: 3, 413: 3, 415: 3, 429: 8, 500: 13, 503: 14}


class OTLPHTTPServer(ThreadingHTTPServer):
    """The HTTP server; ``exporter`` and ``metrics_body`` are set by :class:`~.server.Collector`."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], exporter: Exporter,
                 metrics_body: Callable[[], tuple[bytes, str]]) -> None:
        super().__init__(address, _Handler)
        self.exporter = exporter
        self.metrics_body = metrics_body
        self.stopping = threading.Event()
        self._active = 0
        self._idle = threading.Condition()

    def enter(self) -> None:
        """A POST started (stop() waits for in-flight requests to be answered)."""
        with self._idle:
            self._active += 1

    def leave(self) -> None:
        with self._idle:
            self._active -= 1
            if not self._active:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no POST is in flight; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:  # no tracebacks on stderr
        log.debug("HTTP connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: OTLPHTTPServer
    server_version = "mltrace-collector"
    timeout = 120  # seconds an idle keep-alive connection (or a stalled upload) may hold a thread
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    # --- helpers -------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection or self.server.stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        # headers and body in one write: two small writes meet Nagle + delayed ACK (40 ms stalls)
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def _error(self, status: int, message: str, media: str = otlp.JSON,
               headers: dict[str, str] | None = None, protocol: str = "http") -> None:
        self.server.exporter.metrics.requests.labels(protocol, str(status)).inc()
        body = otlp.status_body(media, _GRPC_CODE.get(status, 2), message)
        self._send(status, body, media, headers)

    def _discard_body(self, limit: int = 1 << 20) -> None:
        """Leave the connection usable after refusing a request: read the body (up to ``limit``
        bytes, so the client, still sending, gets our answer instead of a reset), or close."""
        n = self.headers.get("Content-Length")
        if not (n and n.isdigit()) or int(n) > limit:
            self.close_connection = True
            return
        left = int(n)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                self.close_connection = True
                return
            left -= len(chunk)

    # --- methods -------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            if not self.server.exporter.authorized(self.headers.get("Authorization")):
                self._error(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
                return
            try:
                body, ctype = self.server.metrics_body()
            except Exception as e:  # noqa: BLE001 - a scrape error must not drop the connection
                log.exception("rendering /metrics failed")
                self._error(500, f"cannot render metrics: {e}")
                return
            self._send(200, body, ctype)
        elif path in ("/healthz", "/"):
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == TRACES_PATH:
            self._error(405, "use POST for /v1/traces", headers={"Allow": "POST"})
        else:
            self._error(404, f"no such path {path!r}; OTLP traces go to POST {TRACES_PATH}")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_PUT(self) -> None:  # noqa: N802
        self._discard_body()
        self._error(405, f"use POST {TRACES_PATH}", headers={"Allow": "POST"})

    do_DELETE = do_PATCH = do_PUT  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802
        self.server.enter()
        try:
            self._post()
        finally:
            self.server.leave()

    def _post(self) -> None:
        srv = self.server
        exporter = srv.exporter
        path = self.path.split("?", 1)[0]
        if path != TRACES_PATH:
            self._discard_body()
            self._error(404, f"no such path {path!r}; OTLP traces go to POST {TRACES_PATH}")
            return
        try:
            media = otlp.media_type(self.headers.get("Content-Type"))
        except otlp.UnsupportedMediaType as e:
            self._discard_body()
            self._error(415, str(e))
            return
        protocol = "http/protobuf" if media == otlp.PROTOBUF else "http/json"
        if not exporter.authorized(self.headers.get("Authorization")):
            self._discard_body()
            self._error(401, "missing or wrong bearer token", media,
                        {"WWW-Authenticate": "Bearer"}, protocol)
            return
        if srv.stopping.is_set():
            self._discard_body()
            self.close_connection = True
            self._error(503, "the collector is shutting down", media, {"Retry-After": "2"}, protocol)
            return
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length is None:
            self.close_connection = True
            self._error(411, "a Content-Length header is required", media, protocol=protocol)
            return
        try:
            n = int(length)
            if n < 0:
                raise ValueError(length)
        except ValueError:
            self.close_connection = True
            self._error(400, f"Content-Length {length!r} is not a byte count", media, protocol=protocol)
            return
        try:
            exporter.check_size(n)
        except otlp.PayloadTooLarge as e:
            self._discard_body(limit=4 * exporter.max_body_bytes)  # beyond that: close
            self.close_connection = True
            exporter.metrics.rejected.labels("bad_request").inc()
            self._error(413, str(e), media, protocol=protocol)
            return
        body = self.rfile.read(n)
        if len(body) != n:
            self.close_connection = True
            self._error(400, f"body ended after {len(body)} of {n} bytes", media, protocol=protocol)
            return
        try:
            body = otlp.decompress(body, self.headers.get("Content-Encoding"), exporter.max_body_bytes)
            result = exporter.export(body, media, protocol)
        except otlp.BadRequest as e:
            self._error(e.status, str(e), media, protocol=protocol)
            return
        except (QueueFull, Unavailable) as e:
            status = 429 if isinstance(e, QueueFull) else 503
            retry = str(max(1, round(e.retry_after)))
            self._error(status, str(e), media, {"Retry-After": retry}, protocol)
            return
        except Exception as e:  # noqa: BLE001 - answer 500 instead of dropping the connection
            log.exception("unexpected error handling an OTLP request")
            self._error(500, f"internal error: {type(e).__name__}: {e}", media, protocol=protocol)
            return
        exporter.metrics.requests.labels(protocol, "200").inc()
        self._send(200, otlp.export_response(media, result.rejected, result.error), media)


def status_phrase(code: int) -> str:
    """The reason phrase of an HTTP status code (for logs and tests)."""
    return HTTPStatus(code).phrase
