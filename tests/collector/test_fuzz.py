"""Fuzzing the real collector: over 300 malformed HTTP requests on raw sockets and over 50
malformed gRPC messages, generated from a seeded ``random.Random`` (the same cases every run),
with good requests between them. Every malformed request gets the 4xx it deserves (or a close),
never a server error, a hang or a logged traceback; every good request is answered 200 / OK and
its spans are stored exactly once."""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import random
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from mltrace_otel.collector.server import Collector
from tests.collector.conftest import collector_settings, make_spans, run_ids, stored_span_counts
from tests.collector.live import LIVE

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

MAX_BODY = 64 * 1024
PB = "application/x-protobuf"
JS = "application/json"
CLOSED = None  # the outcome "connection closed without an answer"
ANY_4XX = frozenset(range(400, 500))
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass(frozen=True)
class Case:
    """One malformed request: its raw bytes and the answers it may get."""

    what: str
    data: bytes
    expect: frozenset[int | None]
    stall: bool = False  # keep the connection open (the body timeout must end it)


def _valid() -> bytes:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return encode_spans(make_spans(1)).SerializeToString()


def _request(headers: dict[str, str], body: bytes = b"", line: str = "POST /v1/traces HTTP/1.1") -> bytes:
    head = [line, "Host: collector", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _post(body: bytes, ctype: str = PB, **headers: str) -> bytes:
    return _request({"Content-Type": ctype, "Content-Length": str(len(body)), **headers}, body)


def _chunks(body: bytes, rng: random.Random) -> bytes:
    out, i = [], 0
    while i < len(body):
        n = rng.randrange(1, 200)
        out.append(b"%x\r\n" % len(body[i:i + n]) + body[i:i + n] + b"\r\n")
        i += n
    return b"".join(out) + b"0\r\n\r\n"


def _garbage_pb(rng: random.Random) -> bytes:
    return b"\x0f" + rng.randbytes(rng.randrange(0, 80))  # wire type 7 does not exist


def _tls_hello() -> bytes:
    """A real TLS ClientHello, as an https:// exporter sends it first."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="collector")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _token(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(n))


def http_cases(rng: random.Random) -> list[Case]:
    """The malformed HTTP requests, deterministic for a given ``rng``."""
    valid = _valid()
    cases: list[Case] = []

    def add(what: str, data: bytes, *expect: int | None, stall: bool = False) -> None:
        cases.append(Case(what, data, frozenset(expect), stall))

    # request lines
    for _ in range(8):  # an unknown method: 501 (RFC 9110 9.1)
        method = "X" + _token(rng, rng.randrange(2, 8))
        add("unknown method", _request({}, line=f"{method} /v1/traces HTTP/1.1"), 501)
    for version in ("HTTX/1.1", "HTTP/1", "HTTP/1.1.1", "HTTP/a.b", "HTTP/12345678901.1", "http/1.1"):
        add("bad version", _request({}, line=f"POST /v1/traces {version}"), 400)
    for version in ("HTTP/2.0", "HTTP/3.0"):
        add("HTTP version 2+", _request({}, line=f"POST /v1/traces {version}"), 505)
    for line in ("POST", "POST /v1/traces HTTP/1.1 extra", "POST  /v1/traces HTTP/1.1 x y", "GET /"):
        add("bad request line", _request({}, line=line), 400)
    add("empty request line", b"\r\n", CLOSED)
    for _ in range(8):
        add("long URI", _request({}, line=f"GET /{'a' * rng.randrange(65537, 70000)} HTTP/1.1"), 414)
    for _ in range(8):  # no whitespace: it would split the request line
        path = "/v1/" + "".join(chr(rng.choice([*range(0x21, 0x7F), 0xE9, 0xFF])) for _ in range(12))
        add("other path", _post(valid).replace(b"/v1/traces", path.encode("latin-1"), 1), 404)
    # header sections
    for _ in range(8):
        add("header line without colon", _post(valid, **{"X-A": f"1\r\n{_token(rng, 6)}"}), 400)
    for _ in range(6):
        spaced = {"Content-Type": PB, "Content-Length ": str(len(valid))}
        add("space before colon", _request(spaced, valid), 400)
    for _ in range(6):
        add("folded header", _post(valid, **{"X-A": "1\r\n  folded"}), 400)
    for _ in range(4):
        add("NUL in a header name", _post(valid, **{"X\0A": "1"}), 400)
    for _ in range(4):
        add("header line too long", _post(valid, **{"X-A": "a" * rng.randrange(65537, 70000)}), 431)
    for _ in range(4):
        many = {f"X-{i}": "1" for i in range(rng.randrange(101, 150))}
        add("too many headers", _post(valid, **many), 431)
    for _ in range(4):
        add("unreadable Content-Type", _post(valid, ctype=f"application/x-\xff{_token(rng, 3)}"), 415)
    # Content-Length
    for _ in range(30):
        n = len(valid)
        form = rng.choice([f"+{n}", "_".join(str(n)), f"{n} 1", "-1", f"0x{n:x}", f"{n}.0", f"{n}e0",
                           f"{n}\xb2", "", f"{n},{n + 1}", f"{n};", f"{n}a"])
        add("bad Content-Length", _request({"Content-Type": PB, "Content-Length": form}, valid), 400)
    for _ in range(6):
        negative = {"Content-Type": PB, "Content-Length": f"-{rng.randrange(1, 99)}"}
        add("negative Content-Length", _request(negative, valid), 400)
    for _ in range(6):
        n = rng.randrange(MAX_BODY + 1, 1 << 40)
        add("oversized Content-Length", _request({"Content-Type": PB, "Content-Length": str(n)}, valid), 413)
    for _ in range(6):
        head = _request({"Content-Type": PB, "Content-Length": str(len(valid))})[:-2]
        add("two Content-Lengths", head + b"Content-Length: %d\r\n\r\n" % rng.randrange(0, 500) + valid, 400)
    for _ in range(4):
        add("Content-Length with chunked",
            _request({"Content-Type": PB, "Content-Length": str(len(valid)), "Transfer-Encoding": "chunked"},
                     _chunks(valid, rng)), 400)
    for te in ("gzip, chunked", "deflate,chunked"):
        add("unsupported transfer coding", _request({"Content-Type": PB, "Transfer-Encoding": te},
                                                    _chunks(valid, rng)), 501)
    for te in ("gzip", "identity", "chunked, chunked", "chunked, gzip"):
        add("chunked not last or twice", _request({"Content-Type": PB, "Transfer-Encoding": te},
                                                  _chunks(valid, rng)), 400)
    # chunked bodies broken by one edit of the framing (the data is not protobuf, so no edit
    # can make it a valid request)
    chunk_head = _request({"Content-Type": PB, "Transfer-Encoding": "chunked"})
    for _ in range(40):
        body = _chunks(_garbage_pb(rng) + rng.randbytes(300), rng)
        i = rng.randrange(len(body))
        edit = rng.choice(["flip", "drop", "insert", "cut"])
        if edit == "flip":
            body = body[:i] + bytes([rng.randrange(256)]) + body[i + 1:]
        elif edit == "drop":
            body = body[:i] + body[i + 1:]
        elif edit == "insert":
            body = body[:i] + rng.choice([b"\r", b"\n", b";", b" ", b"g", b"\0"]) + body[i:]
        else:
            body = body[:i]
        add("broken chunked encoding", chunk_head + body, 400, 413)
    for _ in range(6):
        add("chunk over the limit", chunk_head + b"%x\r\n" % rng.randrange(MAX_BODY + 1, 1 << 48), 413)
    for _ in range(4):
        add("bad chunk size", chunk_head + rng.choice([b"-1\r\n", b"0x5\r\nhello\r\n0\r\n\r\n", b"z\r\n",
                                                       b"5\nhello\r\n0\r\n\r\n"]), 400)
    # bodies cut short: at the end of the stream (400), or stalled with the connection open (408)
    for _ in range(20):
        full = _post(valid)
        add("truncated body", full[:len(full) - rng.randrange(1, len(valid))], 400)
    for _ in range(3):
        add("stalled body", _post(valid)[:-rng.randrange(1, len(valid))], 408, stall=True)
        add("stalled chunked body", (chunk_head + _chunks(valid, rng))[:-rng.randrange(6, len(valid))],
            408, stall=True)
    # bodies that parse as HTTP but not as OTLP
    for _ in range(30):
        add("garbage protobuf", _post(_garbage_pb(rng)), 400)
    for _ in range(30):
        doc = rng.choice([
            lambda: json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x" * 40}]}]}]})[
                :rng.randrange(1, 60)],
            lambda: "".join(rng.choice('{}[]",:0123456789 truefalsnul') for _ in range(rng.randrange(1, 80))),
            lambda: json.dumps([rng.random(), {"resourceSpans": rng.randrange(9)}]),
            lambda: "\ufeff{" + "".join(chr(rng.randrange(32, 0x3000)) for _ in range(20)),
        ])()
        add("garbage JSON", _post(doc.encode("utf-8", "surrogatepass"), ctype=JS), 400)
    for _ in range(15):
        bad = rng.choice([valid, gzip.compress(valid)[:-rng.randrange(1, 15)], rng.randbytes(40),
                          b"\x1f\x8b" + rng.randbytes(30)])
        add("wrong gzip", _post(bad, **{"Content-Encoding": rng.choice(["gzip", "deflate"])}), 400)
    for _ in range(5):
        add("gzip of garbage", _post(gzip.compress(_garbage_pb(rng)), **{"Content-Encoding": "gzip"}), 400)
        deflated = zlib.compress(_garbage_pb(rng))
        add("deflate of garbage", _post(deflated, **{"Content-Encoding": "deflate"}), 400)
    for _ in range(15):
        ctype = rng.choice(["text/plain", "application/xml", "application/grpc", "multipart/form-data",
                            "application/protobuf-x", f"{_token(rng, 4)}/{_token(rng, 4)}", "*/*", ";"])
        add("bad Content-Type", _post(valid, ctype=ctype), 415)
    for _ in range(5):
        encoding = rng.choice(["br", "zstd", "x"])
        add("unknown Content-Encoding", _post(valid, **{"Content-Encoding": encoding}), 415)
    # other methods and paths
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        line = f"{method} /v1/traces HTTP/1.1"
        add("other method", _request({"Content-Length": "3"}, b"abc", line=line), 405)
    for _ in range(4):
        add("GET with a body", _request({"Content-Length": "3"}, b"abc", line="GET /v1/traces HTTP/1.1"), 405)
    # not HTTP/1.1 at all
    for _ in range(30):
        junk = rng.randbytes(rng.randrange(1, 3000))
        if rng.random() < 0.5:
            junk = b"POST /v1/traces HTTP/1.1\r\n" + junk
        cases.append(Case("random bytes", junk, ANY_4XX | {CLOSED}))
    for _ in range(5):
        add("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\0\0\0\4\0\0\0\0\0", 400)
        add("TLS ClientHello", _tls_hello(), CLOSED)
    return cases


def _exchange(c: Collector, case: Case) -> int | None | str:
    """Send one case on a fresh connection; the status, CLOSED, or a string naming a failure."""
    sock = socket.create_connection((c.addresses.host, c.addresses.http_port), timeout=10)
    try:
        try:
            sock.sendall(case.data)
            if not case.stall:
                sock.shutdown(socket.SHUT_WR)  # the end of the stream ends a truncated request
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before reading it all: the answer is still to be read
        resp = http.client.HTTPResponse(sock)
        try:
            resp.begin()
            resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return CLOSED
        except TimeoutError:
            return "no answer within 10 s"
        except http.client.HTTPException as e:
            return f"not an HTTP answer: {e!r}"
        return resp.status
    finally:
        sock.close()


def _good_http(c: Collector, rng: random.Random, kind: int) -> tuple[int, list[str]]:
    """A good request, in one of four forms; (status, span ids)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    spans = make_spans(rng.randrange(1, 4), component="fuzz-good")
    ids = run_ids(spans)
    body = encode_spans(spans).SerializeToString()
    conn = http.client.HTTPConnection(c.addresses.host, c.addresses.http_port, timeout=30)
    try:
        if kind == 0:
            conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": PB})
        elif kind == 1:
            conn.request("POST", "/v1/traces", body=iter([body[:7], body[7:]]), encode_chunked=True,
                         headers={"Content-Type": PB})
        elif kind == 2:
            conn.request("POST", "/v1/traces", body=iter([gzip.compress(body)]), encode_chunked=True,
                         headers={"Content-Type": PB, "Content-Encoding": "gzip"})
        else:
            doc = {"resourceSpans": [{"scopeSpans": [{"spans": [
                {"traceId": format(s.context.trace_id, "032x"), "spanId": format(s.context.span_id, "016x"),
                 "name": "fuzz-good", "startTimeUnixNano": str(s.start_time),
                 "endTimeUnixNano": str(s.end_time)} for s in spans]}]}]}
            conn.request("POST", "/v1/traces", body=json.dumps(doc).encode(), headers={"Content-Type": JS})
        r = conn.getresponse()
        r.read()
        return r.status, ids
    finally:
        conn.close()


@pytest.fixture
def fuzzed(tmp_settings: Any, store: Any, caplog: pytest.LogCaptureFixture) -> Iterator[Collector]:
    """One collector (journaled, engine-rendered: one ingest mode keeps the fuzz fast) with a
    64 KiB body limit and a 0.5 s body timeout; fails the test if it logged an error."""
    caplog.set_level(logging.WARNING)
    with Collector(collector_settings(tmp_settings, max_body_bytes=MAX_BODY), store, drain_every_s=0) as c:
        c._http.body_timeout_s = 0.5
        LIVE.append(c)
        try:
            yield c
        finally:
            LIVE.remove(c)
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]


def test_malformed_http_requests_get_4xx_and_good_ones_between_them_land_once(
        fuzzed: Collector, store: Any) -> None:
    rng = random.Random(20261205)
    cases = http_cases(rng)
    assert len(cases) >= 300
    rng.shuffle(cases)
    wrong: list[tuple[str, Any, Any]] = []
    good: list[str] = []
    started = time.monotonic()
    for i, case in enumerate(cases):
        outcome = _exchange(fuzzed, case)
        if outcome not in case.expect:
            wrong.append((case.what, sorted(case.expect, key=str), outcome, case.data[:160]))
        if i % 8 == 7 or i == len(cases) - 1:  # the collector still takes spans
            status, ids = _good_http(fuzzed, rng, i // 8 % 4)
            assert status == 200, (i, case.what)
            good += ids
    assert wrong == [], "\n".join(map(str, wrong))
    assert time.monotonic() - started < 60
    assert stored_span_counts(store, good) == {i: 1 for i in good}


def grpc_cases(rng: random.Random) -> list[tuple[str, bytes]]:
    """Malformed serialized ExportTraceServiceRequests, deterministic for a given ``rng``."""
    cases = [("random bytes", rng.randbytes(rng.randrange(1, 400))) for _ in range(15)]
    cases += [("garbage protobuf", _garbage_pb(rng)) for _ in range(10)]
    for _ in range(15):
        valid = _valid()  # one resource_spans: any cut inside it is corrupt
        cases.append(("truncated request", valid[:rng.randrange(1, len(valid))]))
    for _ in range(15):
        data = bytearray(_valid())
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cases.append(("mutated request", bytes(data)))
    cases += [("oversized", rng.randbytes(MAX_BODY + rng.randrange(1, 1000))) for _ in range(5)]
    return cases


def test_malformed_grpc_messages_are_refused_and_good_ones_between_them_land_once(
        fuzzed: Collector, store: Any) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    rng = random.Random(4317)
    cases = grpc_cases(rng)
    assert len(cases) >= 50
    # a mutated request may still parse (then it is OK, its spans land); nothing is a server error
    allowed = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}
    wrong: list[tuple[str, Any]] = []
    good: list[str] = []
    with grpc.insecure_channel(fuzzed.addresses.grpc_target) as channel:
        export: Callable[..., bytes] = channel.unary_unary(EXPORT)  # raw bytes in and out
        for i, (what, data) in enumerate(cases):
            compression = grpc.Compression.Gzip if i % 3 == 0 else None
            try:
                export(data, timeout=10, compression=compression)
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                code = e.code()
            if code not in allowed:
                wrong.append((what, code))
            if i % 5 == 4 or i == len(cases) - 1:
                spans = make_spans(2, component="fuzz-good")
                assert export(encode_spans(spans).SerializeToString(), timeout=10) == b"", (i, what)
                good += run_ids(spans)
    assert wrong == []
    assert stored_span_counts(store, good) == {i: 1 for i in good}
