"""200 malformed, truncated, oversized and wrongly typed requests each get the right 4xx, and the
collector still serves correct requests afterwards."""

from __future__ import annotations

import gzip
import http.client
import json
import random
import secrets
import socket
import zlib
from typing import Any

import grpc
import pytest

from mltrace_otel.collector.server import Collector
from tests.collector.conftest import collector_settings, make_spans, run_ids, stored_runs
from tests.collector.live import LIVE

MAX_BODY = 64 * 1024
PB = "application/x-protobuf"
JS = "application/json"


def _valid_request(n: int = 3) -> Any:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return encode_spans(make_spans(n))


def _json_doc(spans: list) -> dict:
    return {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}


def _bad_requests(rng: random.Random) -> list[tuple[str, str, bytes, dict, int]]:
    """(what, content type, body, extra headers, expected status) × 200."""
    valid = _valid_request().SerializeToString()  # one resource_spans: any cut inside it is corrupt
    good_json = json.dumps(_json_doc([{"traceId": secrets.token_hex(16), "spanId": secrets.token_hex(8),
                                       "name": "ok"}]))
    tid, sid = secrets.token_hex(16), secrets.token_hex(8)
    cases: list[tuple[str, str, bytes, dict, int]] = []
    for _ in range(40):
        cut = rng.randrange(1, len(valid))
        cases.append(("truncated protobuf", PB, valid[:cut], {}, 400))
    for _ in range(20):
        junk = bytes([0x0F]) + rng.randbytes(rng.randrange(0, 50))  # wire type 7 does not exist
        cases.append(("garbage protobuf", PB, junk, {}, 400))
    for _ in range(10):
        n = rng.randrange(10, 200)
        cases.append(("length past the end", PB, b"\x0a" + bytes([n]) + rng.randbytes(n // 2), {}, 400))
    for _ in range(30):
        cut = rng.randrange(1, len(good_json) - 1)
        cases.append(("truncated JSON", JS, good_json[:cut].encode(), {}, 400))
    wrong_types = [
        {"resourceSpans": "x"}, [1, 2], {"resourceSpans": [{"scopeSpans": {"spans": []}}]},
        _json_doc([1]), _json_doc([{"traceId": tid, "spanId": sid, "name": 5}]),
        _json_doc([{"traceId": tid, "spanId": sid, "startTimeUnixNano": "soon"}]),
        _json_doc([{"traceId": tid, "spanId": sid, "attributes": {"a": 1}}]),
        _json_doc([{"traceId": tid, "spanId": sid, "status": {"code": "red"}}]),
        "just a string", 42,
    ]
    for _ in range(2):
        for doc in wrong_types:
            cases.append(("wrongly typed JSON", JS, json.dumps(doc).encode(), {}, 400))
    bad_ids = [
        _json_doc([{"traceId": "xyz", "spanId": sid}]),
        _json_doc([{"traceId": tid, "spanId": "0011"}]),
        _json_doc([{"traceId": tid}]),
        _json_doc([{"traceId": "AAECAwQFBgcICQoLDA0ODw==", "spanId": sid}]),  # base64, not hex
        _json_doc([{"traceId": "0" * 32, "spanId": sid}]),
    ]
    for _ in range(2):
        for doc in bad_ids:
            cases.append(("invalid ids (every span)", JS, json.dumps(doc).encode(), {}, 400))
    req = _valid_request(2)
    for sp in req.resource_spans[0].scope_spans[0].spans:
        sp.span_id = b"\x01\x02"
    for _ in range(5):
        cases.append(("invalid protobuf ids", PB, req.SerializeToString(), {}, 400))
    for _ in range(15):
        big = rng.randbytes(MAX_BODY + rng.randrange(1, 4096))
        cases.append(("oversized", PB, big, {}, 413))
    bomb = gzip.compress(b"\0" * (MAX_BODY * 64))
    deflate_bomb = zlib.compress(b"\0" * (MAX_BODY * 8))
    for _ in range(5):
        cases.append(("gzip bomb", PB, bomb, {"Content-Encoding": "gzip"}, 413))
        cases.append(("deflate bomb", PB, deflate_bomb, {"Content-Encoding": "deflate"}, 413))
        cases.append(("not gzip", PB, valid, {"Content-Encoding": "gzip"}, 400))
        cases.append(("cut gzip", PB, gzip.compress(valid)[:-12], {"Content-Encoding": "gzip"}, 400))
        cases.append(("unknown encoding", PB, valid, {"Content-Encoding": "br"}, 415))
    for ctype in ("text/plain", "application/xml", "", "application/grpc", "multipart/form-data"):
        for _ in range(3):
            cases.append(("wrong content type", ctype, valid, {}, 415))
    for _ in range(5):
        cases.append(("JSON sent as protobuf", PB, good_json.encode(), {}, 400))
        cases.append(("protobuf sent as JSON", JS, valid, {}, 400))
    assert len(cases) == 200, len(cases)
    return cases


def _post(c: Collector, body: bytes, ctype: str, headers: dict,
          path: str = "/v1/traces") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(c.addresses.host, c.addresses.http_port, timeout=30)
    try:
        h = dict(headers)
        if ctype:
            h["Content-Type"] = ctype
        conn.request("POST", path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.fixture
def small_collector(tmp_settings: Any, store: Any) -> Any:
    with Collector(collector_settings(tmp_settings, max_body_bytes=MAX_BODY), store, drain_every_s=0) as c:
        LIVE.append(c)  # stored_runs flushes it first
        try:
            yield c
        finally:
            LIVE.remove(c)


def test_200_bad_requests_get_the_right_4xx_and_the_collector_keeps_serving(
        small_collector: Collector, store: Any) -> None:
    rng = random.Random(4)
    wrong = []
    for what, ctype, body, headers, expected in _bad_requests(rng):
        status, resp = _post(small_collector, body, ctype, headers)
        if status != expected:
            wrong.append((what, expected, status, resp[:200]))
        elif expected == 400 and ctype == JS:
            assert json.loads(resp)["message"]  # a google.rpc.Status naming the problem
    assert wrong == []

    # other refusals of the HTTP layer
    assert _post(small_collector, b"x", PB, {}, path="/v1/metrics")[0] == 404
    conn = http.client.HTTPConnection(small_collector.addresses.host, small_collector.addresses.http_port)
    conn.request("GET", "/v1/traces")
    assert conn.getresponse().status == 405
    conn.close()
    with socket.create_connection((small_collector.addresses.host, small_collector.addresses.http_port)) as s:
        s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 411")

    # ... and correct requests still land, over both protocols
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    spans = make_spans(4)
    assert _post(small_collector, encode_spans(spans).SerializeToString(), PB, {})[0] == 200
    assert set(stored_runs(store, run_ids(spans))) == set(run_ids(spans))
    with grpc.insecure_channel(small_collector.addresses.grpc_target) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as info:
            export(b"\x0f\x01", timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            export(rng.randbytes(MAX_BODY + 10), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "exceeds the limit" in info.value.details()
        more = make_spans(2)
        assert export(encode_spans(more).SerializeToString(), timeout=10) == b""
    assert set(stored_runs(store, run_ids(more))) == set(run_ids(more))
