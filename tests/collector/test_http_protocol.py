"""HTTP/1.1 as clients send it, over raw sockets against the real collector: chunked bodies (the
OTel JS SDK, Envoy, Go and unbuffered nginx stream them), strict Content-Length and
Transfer-Encoding, an HTTP/2 preface or a TLS hello on the plain port, stalled bodies, and the
bearer scheme in any case on every listener."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import logging
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from mltrace_otel.collector.server import Collector
from tests.collector.conftest import collector_settings, make_spans, run_ids, stored_spans
from tests.collector.live import LIVE

# an exception escaping a handler thread fails the test instead of printing a traceback
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

MAX_BODY = 64 * 1024
PB = "application/x-protobuf"
TOKEN = "s3cret-token"


def _body(n: int = 3) -> tuple[bytes, list[str]]:
    """A serialized OTLP request of ``n`` fresh spans and their span ids."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    spans = make_spans(n)
    return encode_spans(spans).SerializeToString(), run_ids(spans)


def _head(headers: dict[str, str], method: str = "POST", path: str = "/v1/traces",
          version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {path} {version}", "Host: collector"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunked(body: bytes, sizes: list[int], *, ext: bool = False, upper: bool = False,
             trailers: str = "") -> bytes:
    """``body`` in chunks of the given sizes (the rest in one more), with the last chunk and
    the optional trailer section."""
    out, i = [], 0
    for n in [*sizes, len(body)]:
        piece = body[i:i + n]
        i += len(piece)
        if not piece:
            continue
        size = format(len(piece), "X" if upper else "x")
        out.append(f"{size}{' ;name=value;flag' if ext else ''}\r\n".encode() + piece + b"\r\n")
    out.append(b"0\r\n" + trailers.encode() + b"\r\n")
    return b"".join(out)


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one response (status, lower-case headers, body) with http.client's parser."""
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def _message(headers: dict[str, str], body: bytes) -> str:
    """The google.rpc.Status message of an error answer (JSON or protobuf)."""
    if headers.get("content-type") == PB:
        from google.rpc import status_pb2

        return status_pb2.Status.FromString(body).message
    return json.loads(body)["message"]


def _closed(sock: socket.socket, within: float = 3.0) -> bool:
    """True when the server closes the connection within ``within`` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _handler_threads() -> set[threading.Thread]:
    """The threads serving an HTTP connection (socketserver names them so)."""
    return {t for t in threading.enumerate() if "process_request_thread" in t.name}


class _Conn:
    """One raw TCP connection to the collector's HTTP port."""

    def __init__(self, c: Collector, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((c.addresses.host, c.addresses.http_port), timeout=timeout)

    def ask(self, data: bytes) -> tuple[int, dict[str, str], bytes]:
        self.sock.sendall(data)
        return _response(self.sock)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def conn_to() -> Iterator[Any]:
    """``conn_to(collector)`` opens a raw connection, closed after the test."""
    opened: list[_Conn] = []

    def open_(c: Collector) -> _Conn:
        opened.append(_Conn(c))
        return opened[-1]

    yield open_
    for conn in opened:
        conn.close()


@pytest.fixture
def small(tmp_settings: Any, store: Any) -> Iterator[Collector]:
    """One collector (journaled, engine-rendered) with a 64 KiB body limit and a 1 s body timeout."""
    with Collector(collector_settings(tmp_settings, max_body_bytes=MAX_BODY), store, drain_every_s=0) as c:
        c._http.body_timeout_s = 1.0  # the default (10 s) would make each stall test 10 s long
        LIVE.append(c)
        try:
            yield c
        finally:
            LIVE.remove(c)


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fails the test when the collector logged an error or a traceback."""
    caplog.set_level(logging.WARNING)
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]


# --- 1. chunked bodies ------------------------------------------------------------------------

def test_chunked_bodies_land_and_the_connection_stays_open(collector: Collector, store: Any,
                                                          conn_to: Any, no_tracebacks: None) -> None:
    conn = conn_to(collector)
    ids: list[str] = []
    # extensions, upper-case hex sizes (0x1A...), trailers, many small chunks
    body, new = _body(4)
    ids += new
    status, headers, _ = conn.ask(
        _head({"Content-Type": PB, "Transfer-Encoding": "chunked", "Trailer": "X-Checksum"})
        + _chunked(body, [26, 1, 300, 7], ext=True, upper=True, trailers="X-Checksum: abc\r\nX-More: 1\r\n"))
    assert status == 200 and headers.get("connection") != "close"
    # gzip over chunked, on the same connection
    body, new = _body(3)
    ids += new
    status, _, _ = conn.ask(
        _head({"Content-Type": PB, "Transfer-Encoding": "Chunked", "Content-Encoding": "gzip"})
        + _chunked(gzip.compress(body), [10, 10]))
    assert status == 200
    # deflate over chunked, lower-case hex, one chunk
    body, new = _body(2)
    ids += new
    status, _, _ = conn.ask(
        _head({"Content-Type": PB, "Transfer-Encoding": "chunked", "Content-Encoding": "deflate"})
        + _chunked(zlib.compress(body), []))
    assert status == 200
    # and a Content-Length request after them still parses
    body, new = _body(1)
    ids += new
    assert conn.ask(_head({"Content-Type": PB, "Content-Length": str(len(body))}) + body)[0] == 200
    assert sorted(stored_spans(store, ids)) == sorted(ids)


def test_chunked_uploads_from_client_libraries_land(small: Collector, store: Any) -> None:
    """http.client and requests stream a generator body with Transfer-Encoding: chunked, as
    the OTel JS SDK's exporter does."""
    import requests

    body, ids = _body(5)
    a = small.addresses
    conn = http.client.HTTPConnection(a.host, a.http_port, timeout=10)
    try:
        conn.request("POST", "/v1/traces", body=iter([body[:50], body[50:]]),
                     headers={"Content-Type": PB}, encode_chunked=True)
        r = conn.getresponse()
        r.read()
        assert r.status == 200
    finally:
        conn.close()
    body2, ids2 = _body(2)
    r2 = requests.post(a.traces_url, data=(body2[i:i + 17] for i in range(0, len(body2), 17)),
                       headers={"Content-Type": PB}, timeout=10)
    assert r2.request.headers.get("Transfer-Encoding") == "chunked" and r2.status_code == 200
    assert sorted(stored_spans(store, ids + ids2)) == sorted(ids + ids2)


def test_a_chunked_body_over_the_limit_gets_413_while_it_is_still_sent(
        small: Collector, store: Any, conn_to: Any, no_tracebacks: None) -> None:
    # chunks under the limit one by one, then one that passes it: the answer comes before the
    # last chunk is sent, and the connection closes
    conn = conn_to(small)
    conn.sock.sendall(_head({"Content-Type": PB, "Transfer-Encoding": "chunked"}))
    for _ in range(3):
        conn.sock.sendall(b"4000\r\n" + b"\0" * 0x4000 + b"\r\n")  # 48 KiB so far
    conn.sock.sendall(b"8000\r\n" + b"\0" * 0x8000 + b"\r\n")  # 80 KiB > 64 KiB
    status, headers, body = _response(conn.sock)
    assert status == 413 and headers["connection"] == "close"
    assert "limit of 65536 bytes" in _message(headers, body)
    assert _closed(conn.sock)
    # a chunk announcing more than the limit is refused before its data is sent
    conn = conn_to(small)
    status, headers, _ = conn.ask(_head({"Content-Type": PB, "Transfer-Encoding": "chunked"})
                                  + b"FFFFFFFFFFFF\r\n")
    assert status == 413 and _closed(conn.sock)
    # a compressed body over the limit once decompressed, chunked
    conn = conn_to(small)
    bomb = gzip.compress(b"\0" * (MAX_BODY * 4))
    status, _, _ = conn.ask(_head({"Content-Type": PB, "Transfer-Encoding": "chunked",
                                   "Content-Encoding": "gzip"}) + _chunked(bomb, [100]))
    assert status == 413
    # the collector still takes spans
    body, ids = _body(2)
    assert conn_to(small).ask(_head({"Content-Type": PB, "Content-Length": str(len(body))}) + body)[0] == 200
    assert sorted(stored_spans(store, ids)) == sorted(ids)


def test_an_exporter_still_sending_an_oversized_body_reads_its_413(tmp_settings: Any, store: Any) -> None:
    """The 413 goes out at once; the body the client is still sending (up to 4 × the limit) is
    read and dropped before the close, so the client gets the 413, not a connection reset
    (which OTLP exporters retry). The body is larger than the loopback socket buffers."""
    limit = 4 << 20
    with Collector(collector_settings(tmp_settings, max_body_bytes=limit), store, drain_every_s=0) as c:
        for body in (b"\0" * (3 * limit), None):
            conn = http.client.HTTPConnection(c.addresses.host, c.addresses.http_port, timeout=10)
            try:
                if body is None:  # chunked: refused when the running total passes the limit
                    pieces = (b"\0" * (1 << 20) for _ in range(12))
                    conn.request("POST", "/v1/traces", body=pieces, headers={"Content-Type": PB},
                                 encode_chunked=True)
                else:
                    conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": PB})
                assert conn.getresponse().status == 413
            finally:
                conn.close()


BAD_CHUNKS = {
    "size not hex": b"zz\r\n",
    "negative size": b"-5\r\nhello\r\n0\r\n\r\n",
    "0x prefix": b"0x10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n",
    "empty size": b"\r\nhello\r\n0\r\n\r\n",
    "space inside the size": b"1 0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n",
    "size line ends in LF only": b"5\nhello\r\n0\r\n\r\n",
    "bare CR in an extension": b"5;a\rb\r\nhello\r\n0\r\n\r\n",
    "data longer than its size": b"3\r\nhello\r\n0\r\n\r\n",
    "no CRLF after the data": b"5\r\nhello0\r\n\r\n",
    "size line too long": b"5;" + b"x" * 10000 + b"\r\nhello\r\n0\r\n\r\n",
    "ends before the last chunk": b"5\r\nhello\r\n",
    "trailer line without CRLF": b"5\r\nhello\r\n0\r\nX-A: 1\n\r\n",
}


def test_bad_chunk_syntax_is_400_and_closes(small: Collector, store: Any, conn_to: Any,
                                            no_tracebacks: None) -> None:
    wrong, all_ids = [], []
    for what, broken in BAD_CHUNKS.items():
        body, ids = _body(1)
        all_ids += ids
        conn = conn_to(small)
        # a good first chunk (valid spans), then the broken part: nothing of it may land
        data = f"{len(body):x}\r\n".encode() + body + b"\r\n" + broken
        conn.sock.sendall(_head({"Content-Type": PB, "Transfer-Encoding": "chunked"}) + data)
        if what == "ends before the last chunk":
            conn.sock.shutdown(socket.SHUT_WR)
        status, headers, resp = _response(conn.sock)
        if (status, headers.get("connection"), _closed(conn.sock)) != (400, "close", True):
            wrong.append((what, status, _message(headers, resp)))
    assert wrong == []
    assert stored_spans(store, all_ids) == {}


# --- 2. strict Content-Length and Transfer-Encoding --------------------------------------------

def test_content_length_is_digits_only(small: Collector, store: Any, conn_to: Any) -> None:
    wrong, all_ids = [], []
    for value in ["+{n}", "{n_}", "{a} {b}", "-1", "0x{n:x}", "{n}.0", "{n}\u00b2", " ", "{n};"]:
        body, ids = _body(1)
        all_ids += ids
        n = len(body)  # each value would be n to a lenient int()
        header = value.format(n=n, n_="_".join(str(n)), a=str(n)[:1], b=str(n)[1:])
        conn = conn_to(small)
        status, headers, resp = conn.ask(_head({"Content-Type": PB, "Content-Length": header}) + body)
        if (status, _closed(conn.sock)) != (400, True) or "Content-Length" not in _message(headers, resp):
            wrong.append((header, status))
    assert wrong == []
    assert stored_spans(store, all_ids) == {}


def test_duplicate_content_lengths_must_agree(small: Collector, store: Any, conn_to: Any) -> None:
    body, ids = _body(1)
    n = len(body)
    conn = conn_to(small)
    head = _head({"Content-Type": PB, "Content-Length": str(n)})[:-2]
    differ = head + f"Content-Length: {n - 1}\r\n\r\n".encode()
    status, _, _ = conn.ask(differ + body)
    assert status == 400 and _closed(conn.sock)
    assert stored_spans(store, ids) == {}
    listed = conn_to(small)
    status, _, _ = listed.ask(_head({"Content-Type": PB, "Content-Length": f"{n}, {n + 1}"}) + body)
    assert status == 400 and _closed(listed.sock)
    # the same value twice (RFC 9110 8.6 allows it), as two headers or a list: accepted
    conn = conn_to(small)
    same = head + f"Content-Length: {n}\r\n\r\n".encode()
    assert conn.ask(same + body)[0] == 200
    body2, ids2 = _body(1)
    m = len(body2)
    assert conn.ask(_head({"Content-Type": PB, "Content-Length": f"{m}, {m}"}) + body2)[0] == 200
    assert sorted(stored_spans(store, ids + ids2)) == sorted(ids + ids2)


def test_transfer_encodings_other_than_chunked_alone_are_refused(small: Collector, store: Any,
                                                                 conn_to: Any) -> None:
    wrong, all_ids = [], []
    for te, with_length, expected, words in [
        ("chunked", True, 400, "both Transfer-Encoding and Content-Length"),
        ("gzip, chunked", False, 501, "not supported"),
        ("gzip", False, 400, "chunked must be the last"),
        ("chunked, chunked", False, 400, "applied once"),
        ("identity", False, 400, "chunked must be the last"),
    ]:
        body, ids = _body(1)
        all_ids += ids
        chunked = _chunked(body, [])
        headers = {"Content-Type": "application/json", "Transfer-Encoding": te}
        if with_length:
            headers["Content-Length"] = str(len(chunked))
        conn = conn_to(small)
        status, resp_headers, resp = conn.ask(_head(headers) + chunked)
        message = _message(resp_headers, resp)
        if (status, words in message, _closed(conn.sock)) != (expected, True, True):
            wrong.append((te, with_length, status, message))
    assert wrong == []
    assert stored_spans(store, all_ids) == {}


def test_other_framings_are_refused(small: Collector, store: Any, conn_to: Any) -> None:
    body, ids = _body(1)
    n = len(body)
    conn = conn_to(small)  # chunked is HTTP/1.1 (RFC 9112 6.1)
    status, _, _ = conn.ask(_head({"Content-Type": PB, "Transfer-Encoding": "chunked"}, version="HTTP/1.0")
                            + _chunked(body, []))
    assert status == 400 and _closed(conn.sock)
    # a space before the colon or a folded line: the stdlib parser would drop the header, and
    # the body would then be read as the next request
    for header in (f"Content-Length : {n}", f"Content-Length: {n}\r\n 0",
                   f"X-A: 1\r\nBAD\r\nContent-Length: {n}"):
        conn = conn_to(small)
        status, headers, resp = conn.ask(_head({"Content-Type": PB, "X": "1\r\n" + header}) + body)
        assert status == 400 and "malformed header" in _message(headers, resp)
        assert _closed(conn.sock)
    conn = conn_to(small)
    status, headers, _ = conn.ask(_head({"Content-Type": PB}))
    assert (status, headers["connection"]) == (411, "close")
    assert stored_spans(store, ids) == {}


def test_a_body_on_a_get_is_not_read_as_the_next_request(small: Collector, store: Any, conn_to: Any) -> None:
    body, ids = _body(1)
    smuggled = _head({"Content-Type": PB, "Content-Length": str(len(body))}) + body
    conn = conn_to(small)
    status, _, ok = conn.ask(_head({"Content-Length": str(len(smuggled))}, method="GET", path="/healthz")
                             + smuggled)
    assert (status, ok) == (200, b"ok\n")
    conn.sock.sendall(_head({}, method="GET", path="/healthz"))  # the next request is this one
    assert _response(conn.sock)[0] == 200
    assert stored_spans(store, ids) == {}


# --- 3. HTTP/2 and TLS on the plain port --------------------------------------------------------

def test_http2_preface_and_tls_hello_are_closed_cleanly(small: Collector, store: Any, conn_to: Any,
                                                        no_tracebacks: None) -> None:
    conn = conn_to(small)
    status, headers, resp = conn.ask(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\0\0\0\4\0\0\0\0\0")
    assert status == 400 and "OTLP/gRPC port" in _message(headers, resp)
    assert _closed(conn.sock)
    # a real gRPC client pointed at the HTTP port fails fast, it does not hang
    started = time.monotonic()
    with grpc.insecure_channel(f"{small.addresses.host}:{small.addresses.http_port}") as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as info:
            export(_body(1)[0], timeout=8)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() - started < 5
    # a TLS client (https:// against the plain port): the handshake fails at once
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection((small.addresses.host, small.addresses.http_port), timeout=8)
    started = time.monotonic()
    with pytest.raises(OSError) as tls:
        ctx.wrap_socket(raw, server_hostname="collector")
    raw.close()
    assert not isinstance(tls.value, TimeoutError) and time.monotonic() - started < 3
    # and the collector serves the next client
    body, ids = _body(2)
    assert conn_to(small).ask(_head({"Content-Type": PB, "Content-Length": str(len(body))}) + body)[0] == 200
    assert sorted(stored_spans(store, ids)) == sorted(ids)


# --- 4. stalled bodies ----------------------------------------------------------------------------

@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_stalled_body_times_out_in_the_body_timeout(framing: str, small: Collector, store: Any,
                                                     conn_to: Any, no_tracebacks: None) -> None:
    body, ids = _body(2)
    if framing == "chunked":
        head = _head({"Content-Type": PB, "Transfer-Encoding": "chunked"})
        partial = f"{len(body):x}\r\n".encode() + body[:20]
    else:
        head = _head({"Content-Type": PB, "Content-Length": str(len(body))})
        partial = body[:20]
    before = _handler_threads()  # (other tests' connections may still be open)
    conn = conn_to(small)
    started = time.monotonic()
    conn.sock.sendall(head + partial)  # ... and nothing more
    status, headers, _ = _response(conn.sock)
    waited = time.monotonic() - started
    assert (status, headers["connection"]) == (408, "close")
    assert 0.9 < waited < 4  # body_timeout_s (1 s), not the 120 s idle timeout
    assert _closed(conn.sock, within=2)
    deadline = time.monotonic() + 3  # the connection's handler thread is gone too
    while _handler_threads() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _handler_threads() - before == set()
    assert stored_spans(store, ids) == {}


# --- 5. one auth rule -----------------------------------------------------------------------------

def test_the_bearer_scheme_is_case_insensitive_on_every_listener(tmp_settings: Any, store: Any) -> None:
    from mltrace_otel.dashboards.app import create_app, make_server

    settings = collector_settings(tmp_settings, token=TOKEN)
    with Collector(settings, store, drain_every_s=0) as c:
        LIVE.append(c)
        try:
            ids: list[str] = []
            for scheme in ("bearer", "BEARER", "Bearer"):
                body, new = _body(1)
                conn = _Conn(c)
                try:
                    head = {"Content-Type": PB, "Content-Length": str(len(body))}
                    assert conn.ask(_head({**head, "Authorization": f"{scheme} {TOKEN}"}) + body)[0] == 200
                    ids += new
                    assert conn.ask(_head({**head, "Authorization": f"{scheme} nope"}) + body)[0] == 401
                    assert conn.ask(_head({**head, "Authorization": f"Basic {TOKEN}"}) + body)[0] == 401
                    metrics = {"Authorization": f"{scheme} {TOKEN}"}
                    assert conn.ask(_head(metrics, method="GET", path="/metrics"))[0] == 200
                finally:
                    conn.close()
            with grpc.insecure_channel(c.addresses.grpc_target) as channel:
                export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
                body, new = _body(1)
                assert export(body, metadata=[("authorization", f"bearer {TOKEN}")], timeout=10) == b""
                ids += new
                with pytest.raises(grpc.RpcError) as info:
                    export(body, metadata=[("authorization", "bearer wrong")], timeout=10)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert sorted(stored_spans(store, ids)) == sorted(ids)
        finally:
            LIVE.remove(c)

    app = create_app(tmp_settings.replace(token=TOKEN), store)
    server = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def status(auth: str) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{server.server_port}/_dash-layout",
                                     headers={"Authorization": auth})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    try:
        assert status(f"bearer {TOKEN}") == 200
        assert status(f"BEARER {TOKEN}") == 200
        assert status("basic " + base64.b64encode(f"me:{TOKEN}".encode()).decode()) == 200
        assert status("bearer wrong") == 401
        assert status(f"Token {TOKEN}") == 401
    finally:
        server.shutdown()
        server.server_close()
