"""OTLP/HTTP receiver: ``POST /v1/traces`` plus ``GET /metrics`` and ``GET /healthz``.

A stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive: one thread per connection,
all of them feeding the one writer thread of :mod:`.pipeline`. Responses are in the request's
encoding; error bodies are ``google.rpc.Status`` as OTLP/HTTP specifies (JSON for protocol
errors found before the Content-Type is known). Every status code, and what gets it, is in
docs/collector.md ("What a request gets back").

Request bodies come with a ``Content-Length`` or ``Transfer-Encoding: chunked`` (the OTel JS
SDK, Envoy, Go's client and unbuffered nginx stream them), both read by
:meth:`_Handler._read_body`, which stops at ``MLTRACE_MAX_BODY_BYTES`` while reading and gives a
stalled client :attr:`OTLPHTTPServer.body_timeout_s` between two received bytes. The framing is
read strictly (RFC 9112), because a lenient reader that disagrees with a proxy in front about
where a body ends lets one request hide inside another. Every error that leaves the body unread
closes the connection (after draining for a moment, so the client reads the answer instead of a
reset). A TLS ClientHello (an ``https://`` client on this plain port) is logged and the
connection closed.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from email import errors as email_errors
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mltrace_otel.collector import otlp
from mltrace_otel.collector.receiver import Exporter
from mltrace_otel.errors import BadRequest, QueueFull, Unavailable, UnsupportedMediaType

log = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"
_GRPC_CODE = {400: 3, 401: 16, 404: 5, 405: 12, 408: 4, 411: 3, 413: 3, 414: 3, 415: 3, 429: 8,
              431: 3, 500: 13, 501: 12, 503: 14, 505: 12}
_DIGITS = re.compile(rb"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]+")
_LINE_MAX = 8192  # longest chunk-size line (with extensions) or trailer line
_TRAILERS_MAX = 64 * 1024  # longest trailer section
_DISCARD_MAX = 1 << 20  # a refused request's body up to this size is read to keep the connection
_HEADERS_MAX = 100
# a header line the stdlib parser could not split into name and value (it drops it and the rest)
_HEADER_LINE_DEFECTS = (email_errors.MissingHeaderBodySeparatorDefect,
                        email_errors.FirstHeaderLineIsContinuationDefect)
_LINGER_S = 2.0  # an error closing a connection stops draining it when the client pauses this long
_LINGER_MAX_S = 30.0  # ... or after this long in all


class BodyError(Exception):
    """The request body cannot be read (bad framing, too big, cut short, stalled): answer
    ``status`` with the message and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class OTLPHTTPServer(ThreadingHTTPServer):
    """The HTTP server; ``exporter`` and ``metrics_body`` are set by :class:`~.server.Collector`.

    Args:
        body_timeout_s: longest pause between two bytes of a request body before the request
            gets 408 and its connection is closed (an idle connection between requests may
            wait the handler's ``timeout``, 120 s).
    """

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], exporter: Exporter,
                 metrics_body: Callable[[], tuple[bytes, str]], *, body_timeout_s: float = 10.0) -> None:
        super().__init__(address, _Handler)
        self.exporter = exporter
        self.metrics_body = metrics_body
        self.body_timeout_s = body_timeout_s
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
    default_request_version = "HTTP/1.0"  # an unparsable request line is still answered with a status line
    server: OTLPHTTPServer
    server_version = "mltrace-collector"
    timeout = 120  # seconds an idle keep-alive connection may hold a thread
    sys_version = ""
    _linger = False  # set when an error leaves input unread: drain it a moment before closing

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    # --- connection level ----------------------------------------------------------------------
    def handle_one_request(self) -> None:
        """The stdlib's loop step, after a look at the first byte: a TLS handshake record (0x16)
        is an https:// client on this plain port, and waiting for its request line would hold
        the thread for the idle timeout."""
        self._linger = False
        try:
            first = self.rfile.peek(1)[:1]
        except OSError:  # idle timeout, reset
            self.close_connection = True
            return
        if first == b"\x16":
            log.warning("a TLS handshake from %s on the plain OTLP/HTTP port: use http:// for this "
                        "port, or put a TLS proxy in front of it", self.address_string())
            self.close_connection = True
            return
        super().handle_one_request()
        if self._linger:
            self._drain_and_close()

    def parse_request(self) -> bool:
        """The stdlib's parser, except that these get 400: an HTTP/2 connection preface (a gRPC
        client sent to this port), an HTTP/0.9 request (whose answer would have no status line),
        and a malformed header line or obs-fold (the stdlib would silently drop the headers
        after it, Content-Length included, and read the body as the next request)."""
        line = self.raw_requestline
        problem = ""
        if line.startswith(b"PRI * HTTP/2"):
            problem = ("this port speaks HTTP/1.1 (OTLP/HTTP); send OTLP/gRPC and other HTTP/2 "
                       "clients to the OTLP/gRPC port (4317 by default)")
        elif len(line.split()) == 2:
            problem = "HTTP/0.9 requests are not served; send HTTP/1.1"
        if problem:
            self.command, self.request_version = "", self.default_request_version
            self.requestline = str(line, "iso-8859-1").rstrip("\r\n")
            self._fail(400, problem)
            return False
        if not super().parse_request():
            return False
        if len(self.headers) > _HEADERS_MAX:  # the stdlib's limit, which clickhouse-connect raises to 10,000
            self._fail(431, f"more than {_HEADERS_MAX} header lines")
            return False
        if (any(isinstance(d, _HEADER_LINE_DEFECTS) for d in self.headers.defects)
                or any("\n" in v for v in self.headers.values())):
            self._fail(400, "malformed header section: each header line is 'Name: value' with no "
                            "space before the colon, and no line folding")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's protocol errors (bad request line, header too long, unknown method,
        HTTP version) answered like ours: a ``google.rpc.Status`` body, connection closed."""
        text = message or HTTPStatus(code).phrase
        self._fail(code, f"{text}: {explain}" if explain else text)

    def _drain_and_close(self) -> None:
        """Close after an error that left input unread, but first stop sending and read what the
        client still sends (up to 4 × the body limit, until it pauses for ``_LINGER_S`` or for
        ``_LINGER_MAX_S`` in all): closing with unread data resets the connection, and a reset
        can destroy our answer before the client reads it (an exporter then retries a request
        that will never fit instead of seeing its 413)."""
        self.close_connection = True
        sock = self.connection
        left = 4 * self.server.exporter.max_body_bytes
        deadline = time.monotonic() + _LINGER_MAX_S
        try:
            self.wfile.flush()
            sock.shutdown(socket.SHUT_WR)
            while left > 0 and (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(min(_LINGER_S, remaining))
                data = sock.recv(1 << 16)
                if not data:
                    break
                left -= len(data)
        except OSError:  # timed out or reset: done either way
            pass

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

    def _fail(self, status: int, message: str, media: str = otlp.JSON,
              headers: dict[str, str] | None = None, protocol: str = "http") -> None:
        """Answer an error that leaves the request's input unread, then close the connection."""
        self.close_connection = True
        self._linger = status != 408  # a stalled client sends nothing more to wait for
        self._error(status, message, media, headers, protocol)

    def _body_length(self) -> int | None:
        """The body's framing from the headers: its Content-Length (0 with neither header: no
        body), or None when it is chunked.

        Raises:
            BodyError: the framing is malformed or ambiguous (400) or a transfer coding other
                than chunked is used (501).
        """
        te = self.headers.get_all("Transfer-Encoding") or []
        cl = self.headers.get_all("Content-Length") or []
        if te:
            codings = [c.strip(" \t").lower() for v in te for c in v.split(",")]
            if cl:
                raise BodyError(400, "a request must not have both Transfer-Encoding and "
                                     "Content-Length (RFC 9112 6.3); send one of them")
            if self.request_version == "HTTP/1.0":
                raise BodyError(400, "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 6.1)")
            if codings[-1] != "chunked" or codings.count("chunked") > 1:
                raise BodyError(400, f"Transfer-Encoding {', '.join(te)!r}: chunked must be the "
                                     "last transfer coding, and applied once")
            if len(codings) > 1:
                raise BodyError(501, f"Transfer-Encoding {', '.join(te)!r} is not supported: send "
                                     "'chunked' alone, and compress with Content-Encoding: gzip")
            return None
        values = {v.strip(" \t") for h in cl for v in h.split(",")}
        if not values:
            return 0
        if len(values) > 1 or not all(_DIGITS.fullmatch(v.encode()) for v in values):
            raise BodyError(400, f"Content-Length {', '.join(cl)!r} is not one byte count (digits only)")
        value = values.pop()
        return int(value) if len(value) < 19 else 1 << 63

    def _read_body(self, limit: int, *, keep: bool = True) -> bytes:
        """The request body, de-chunked when it is chunked (chunk extensions and trailers are
        read and ignored), at most ``limit`` bytes; with ``keep=False`` it is read and dropped.

        Raises:
            BodyError: bad framing or chunk syntax (400), a transfer coding other than chunked
                (501), more than ``limit`` bytes (413, raised as soon as the announced length
                or the running total passes it), the body ended early (400) or no byte came for
                ``body_timeout_s`` (408).
        """
        length = self._body_length()
        too_big = f"request body exceeds the limit of {limit} bytes (MLTRACE_MAX_BODY_BYTES)"
        parts: list[bytes] = []
        self.connection.settimeout(self.server.body_timeout_s)
        try:
            if length is not None:
                if length > limit:
                    raise BodyError(413, f"request body of {length} bytes exceeds the limit of "
                                         f"{limit} bytes (MLTRACE_MAX_BODY_BYTES)")
                self._read_exactly(length, parts if keep else None)
                return b"".join(parts)
            total = 0
            while size := self._chunk_size():
                total += size
                if total > limit:
                    raise BodyError(413, too_big)
                self._read_exactly(size, parts if keep else None)
                if self.rfile.read(2) != b"\r\n":
                    raise BodyError(400, "chunk data is not followed by CRLF")
            trailers = 0
            while (line := self._line("trailer")) != b"\r\n":
                trailers += len(line)
                if trailers > _TRAILERS_MAX:
                    raise BodyError(400, f"trailer section longer than {_TRAILERS_MAX} bytes")
            return b"".join(parts)
        except TimeoutError:
            raise BodyError(408, f"the request body stalled: no byte for "
                                 f"{self.server.body_timeout_s:g} s") from None
        finally:
            try:
                self.connection.settimeout(self.timeout)
            except OSError:
                pass

    def _read_exactly(self, n: int, parts: list[bytes] | None) -> None:
        """Read ``n`` body bytes into ``parts`` (in one read: the BufferedReader loops), or
        read and drop them in pieces when ``parts`` is None."""
        left = n
        while left > 0:
            data = self.rfile.read(left if parts is not None else min(left, 1 << 16))
            if not data:
                raise BodyError(400, f"the request body ended {left} bytes short")
            left -= len(data)
            if parts is not None:
                parts.append(data)

    def _line(self, what: str) -> bytes:
        line = self.rfile.readline(_LINE_MAX)
        if not line:
            raise BodyError(400, f"the request body ended before the {what} line")
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            raise BodyError(400, f"malformed {what} line {line[:64]!r}: lines end with CRLF "
                                 f"and are at most {_LINE_MAX} bytes")
        return line

    def _chunk_size(self) -> int:
        """Read a chunk-size line: ``1*HEXDIG *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ) CRLF``."""
        line = self._line("chunk size")
        size, semi, _extensions = line[:-2].partition(b";")
        if semi:
            size = size.rstrip(b" \t")
        if not _HEX.fullmatch(size):
            raise BodyError(400, f"malformed chunk size line {line[:64]!r}")
        return int(size, 16)

    def _discard_body(self) -> None:
        """Leave the connection usable after refusing a request: read and drop its body (up to
        ``_DISCARD_MAX`` bytes, so the client, still sending, gets our answer), or close."""
        try:
            self._read_body(_DISCARD_MAX, keep=False)
        except BodyError:
            self.close_connection = True
            self._linger = True

    # --- methods -------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._discard_body()  # a GET may carry a body too: it must not be read as the next request
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

    do_HEAD = do_GET  # noqa: N815

    def do_PUT(self) -> None:  # noqa: N802
        self._discard_body()
        self._error(405, f"use POST {TRACES_PATH}", headers={"Allow": "POST"})

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT  # noqa: N815

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
        except UnsupportedMediaType as e:
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
            self._fail(503, "the collector is shutting down", media, {"Retry-After": "2"}, protocol)
            return
        if "Content-Length" not in self.headers and "Transfer-Encoding" not in self.headers:
            self._fail(411, "a Content-Length header or Transfer-Encoding: chunked is required",
                       media, protocol=protocol)
            return
        try:
            body = self._read_body(exporter.max_body_bytes)
        except BodyError as e:
            if e.status == 413:
                exporter.metrics.rejected.labels("bad_request").inc()
            self._fail(e.status, str(e), media, protocol=protocol)
            return
        try:
            body = otlp.decompress(body, self.headers.get("Content-Encoding"), exporter.max_body_bytes)
            result = exporter.export(body, media, protocol)
        except BadRequest as e:
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
