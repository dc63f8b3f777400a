"""With the store stalled or failing, clients get 429/503 (HTTP) or RESOURCE_EXHAUSTED/UNAVAILABLE
(gRPC) with a retry delay, never a silent drop; everything acknowledged is in the store."""

from __future__ import annotations

import http.client
import threading
from typing import Any

import grpc
import pytest

from mltrace_otel.collector.server import Collector
from mltrace_otel.errors import StoreUnavailable
from mltrace_otel.store import journal
from tests.collector.conftest import StoreWrapper, collector_settings, make_spans, run_ids, stored_runs

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class FaultyStore(StoreWrapper):
    """Failure injection around the real store: inserts block on ``gate``, or raise while ``fail``."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.gate = threading.Event()
        self.gate.set()
        self.inside = threading.Event()
        self.fail = False
        # the journaled acknowledgement: the store's journal (one object per directory, the
        # collector's too) holds its appends and fails them like inserts
        j = journal.for_store(store)
        append = j.append

        def held_append(*args: Any) -> Any:
            self._enter()
            return append(*args)

        j.append = held_append  # type: ignore[method-assign]

    def _enter(self) -> None:
        self.inside.set()
        self.gate.wait()
        if self.fail:
            raise StoreUnavailable("injected: server went away")

    def insert_columns(self, *args: Any, **kw: Any) -> None:
        self._enter()
        self.store.insert_columns(*args, **kw)

    def insert_requests(self, *args: Any, **kw: Any) -> Any:
        self._enter()
        return self.store.insert_requests(*args, **kw)

    def insert_requests_rendered(self, *args: Any, **kw: Any) -> Any:
        self._enter()
        return self.store.insert_requests_rendered(*args, **kw)


def _body(n: int) -> tuple[bytes, list[str]]:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    spans = make_spans(n)
    return encode_spans(spans).SerializeToString(), run_ids(spans)


def _post(c: Collector, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(c.addresses.host, c.addresses.http_port, timeout=60)
    try:
        conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
        r = conn.getresponse()
        r.read()
        return r.status, dict(r.getheaders())
    finally:
        conn.close()


def _retry_delay(err: grpc.RpcError) -> float:
    from google.rpc.error_details_pb2 import RetryInfo

    raw = dict(err.trailing_metadata())["google.rpc.retryinfo-bin"]
    info = RetryInfo.FromString(raw)
    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9


@pytest.mark.parametrize("ack", ["journaled", "indexed"])
def test_stalled_store_gives_429_then_503_and_loses_nothing_acknowledged(
        tmp_settings: Any, store: Any, ack: str) -> None:
    faulty = FaultyStore(store)
    settings = collector_settings(tmp_settings, queue_spans=50, batch_rows=10, batch_delay_s=0.01, ack=ack)
    acked: list[str] = []
    refused: list[int] = []
    lock = threading.Lock()

    def send(body: bytes, ids: list[str]) -> None:
        status, _ = _post(c, body)
        with lock:
            if status == 200:
                acked.extend(ids)
            else:
                refused.append(status)

    with Collector(settings, faulty, drain_every_s=0, stall_s=3600, ack_timeout_s=120) as c:
        faulty.gate.clear()
        first = _body(10)
        threads = [threading.Thread(target=send, args=first)]
        threads[0].start()
        assert faulty.inside.wait(30)  # the first batch is stuck inside the store
        for _ in range(4):  # 4 x 10 more spans fill the queue (50 = 10 in flight + 40 queued)
            t = threading.Thread(target=send, args=_body(10))
            t.start()
            threads.append(t)
        while c.queue.depth < 50:
            threading.Event().wait(0.01)

        status, headers = _post(c, _body(10)[0])
        assert status == 429 and int(headers["Retry-After"]) >= 1
        with grpc.insecure_channel(c.addresses.grpc_target) as ch:
            with pytest.raises(grpc.RpcError) as info:
                ch.unary_unary(EXPORT)(_body(3)[0], timeout=30)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert _retry_delay(info.value) >= 1

            c.queue.stall_s = 0.0  # the insert now counts as stalled: 503, not 429
            status, headers = _post(c, _body(1)[0])
            assert status == 503 and int(headers["Retry-After"]) >= 1
            with pytest.raises(grpc.RpcError) as info:
                ch.unary_unary(EXPORT)(_body(1)[0], timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert _retry_delay(info.value) > 0

        # the store comes back: every queued request is committed and acknowledged
        c.queue.stall_s = 3600
        faulty.gate.set()
        for t in threads:
            t.join(60)
        assert refused == [] and len(acked) == 50
        assert c.flush(60)  # (journaled: indexed too, so the failure below hits no index insert)

        # a failing store: the batch's clients get 503, and later requests land again
        faulty.fail = True
        assert _post(c, _body(5)[0])[0] == 503
        c.queue.retry_after_s = 0.0
        faulty.fail = False
        late = _body(5)
        assert _post(c, late[0])[0] == 200
        acked.extend(late[1])

        text = c.metrics_body()[0].decode()
        assert 'mltrace_collector_spans_dropped_total{reason="queue_full"} 13.0' in text
        assert 'mltrace_collector_spans_dropped_total{reason="store_error"} 5.0' in text
        assert "mltrace_collector_insert_failures_total 1.0" in text

    assert set(stored_runs(store, acked)) == set(acked)


def test_sigterm_like_stop_commits_everything_queued(tmp_settings: Any, store: Any) -> None:
    """stop() while requests wait in the queue: they are committed and answered 200."""
    faulty = FaultyStore(store)
    settings = collector_settings(tmp_settings, batch_rows=100_000, batch_delay_s=3600)
    results: list[int] = []
    c = Collector(settings, faulty, drain_every_s=0, linger_s=None)
    c.start()
    bodies = [_body(4) for _ in range(3)]
    threads = [threading.Thread(target=lambda b=b: results.append(_post(c, b[0])[0])) for b in bodies]
    for t in threads:
        t.start()
    while c.queue.depth < 12:  # all three wait for the (hour-long) batch delay
        threading.Event().wait(0.01)
    c.stop()
    for t in threads:
        t.join(30)
    assert results == [200, 200, 200]
    ids = [i for b in bodies for i in b[1]]
    assert set(stored_runs(store, ids)) == set(ids)


class PoisonStore(StoreWrapper):
    """Failure injection: an insert holding a span named 'poison' fails the way ClickHouse
    refuses a value its column cannot hold (a DataError); other inserts reach the real store."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.inserts: list[int] = []

    def insert_columns(self, name: str, table: str, columns: Any, column_names: Any, **kw: Any) -> None:
        from clickhouse_connect.driver.exceptions import DataError

        from mltrace_otel.errors import QueryError

        names = columns[list(column_names).index("SpanName")]
        self.inserts.append(len(names))
        if "poison" in names:
            try:
                raise DataError("Unable to create native array for column `Timestamp`")
            except DataError as e:
                raise QueryError(name, {}, str(e), data=True) from e
        self.store.insert_columns(name, table, columns, column_names, **kw)

    def insert_requests_rendered(self, payloads: Any, dedup_token: Any = None) -> Any:
        return self.insert_requests(payloads, dedup_token=dedup_token)

    def insert_requests(self, payloads: Any, spans: Any = None, dedup_token: Any = None) -> Any:
        from clickhouse_connect.driver.exceptions import DataError
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        from mltrace_otel.errors import QueryError

        names = [sp.name for p in payloads for rs in ExportTraceServiceRequest.FromString(p).resource_spans
                 for ss in rs.scope_spans for sp in ss.spans]
        self.inserts.append(len(names))
        if "poison" in names:
            try:
                raise DataError("Unable to parse the Protobuf message")
            except DataError as e:
                raise QueryError("insert_spans_native", {}, str(e), data=True) from e
        return self.store.insert_requests(payloads, spans=spans, dedup_token=dedup_token)


def test_a_request_the_store_refuses_does_not_sink_its_batch(tmp_settings: Any, store: Any) -> None:
    """Indexed acknowledgement: the refused request is answered 400 alone."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    poison = make_spans(1, component="poison")
    good = [_body(3) for _ in range(3)]
    bodies = [b for b, _ in good] + [encode_spans(poison).SerializeToString()]
    # the batch closes when all four are in (10 spans), so they share one insert
    settings = collector_settings(tmp_settings, batch_delay_s=30, batch_rows=10, ack="indexed")
    results: dict[int, int] = {}
    faulty = PoisonStore(store)
    with Collector(settings, faulty, drain_every_s=0, linger_s=None) as c:
        threads = [threading.Thread(target=lambda i=i, b=b: results.__setitem__(i, _post(c, b)[0]))
                   for i, b in enumerate(bodies)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        text = c.metrics_body()[0].decode()
    assert faulty.inserts[0] == 10  # all four joined one batch, which failed ...
    assert results == {0: 200, 1: 200, 2: 200, 3: 400}  # ... then each went alone
    ids = [i for _, ids in good for i in ids]
    assert set(stored_runs(store, ids)) == set(ids)
    assert 'mltrace_collector_spans_rejected_total{reason="store"} 1.0' in text


class FirstInsertStuck(StoreWrapper):
    """The first insert blocks on ``gate`` before reaching the real store; later ones go through
    (the journal, which every request passes first, is the real store's)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.gate = threading.Event()
        self.inside = threading.Event()
        self.calls = 0
        self.lock = threading.Lock()

    def insert_requests(self, *args: Any, **kw: Any) -> Any:
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            self.inside.set()
            self.gate.wait(120)
        return self.store.insert_requests(*args, **kw)


def test_a_slow_insert_does_not_hold_back_the_next_batch(tmp_settings: Any, store: Any) -> None:
    """Two writers: while one insert hangs, the next request is committed and answered by the
    other, and the hung one still lands when the store answers."""
    stuck = FirstInsertStuck(store)
    results: dict[str, int] = {}
    first, second = _body(5), _body(5)
    settings = collector_settings(tmp_settings, ack="indexed")  # two writers, answered once indexed
    with Collector(settings, stuck, drain_every_s=0, native_min_spans=0) as c:
        t = threading.Thread(target=lambda: results.setdefault("first", _post(c, first[0])[0]))
        t.start()
        assert stuck.inside.wait(30)
        assert _post(c, second[0])[0] == 200
        assert set(stored_runs(store, second[1])) == set(second[1])
        assert "first" not in results  # still waiting for its commit
        stuck.gate.set()
        t.join(60)
        assert results["first"] == 200
    assert set(stored_runs(store, first[1] + second[1])) == set(first[1] + second[1])


def test_journaled_a_request_the_store_refuses_is_counted_and_its_group_mates_land(
        tmp_settings: Any, store: Any) -> None:
    """Journaled acknowledgement: every request is answered 200 once journaled; the index insert
    holding the refused one fails, each request is then indexed alone, the good ones land. The
    refused one is tried by the other renderer, then span by span, then stripped; a span the
    store refuses even bare is kept in the journal's rejected/ directory, logged and counted
    (never retried forever, never silently dropped)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from mltrace_otel.store import journal

    poison = make_spans(1, component="poison")
    good = [_body(3) for _ in range(3)]
    bodies = [b for b, _ in good] + [encode_spans(poison).SerializeToString()]
    # index only when all four are journaled (10 spans): one index group holds them all
    settings = collector_settings(tmp_settings, batch_delay_s=30, index_spans=10, ack="journaled")
    faulty = PoisonStore(store)
    with Collector(settings, faulty, drain_every_s=0, native_min_spans=0) as c:
        assert [_post(c, b)[0] for b in bodies] == [200, 200, 200, 200]
        assert c.flush(60)
        text = c.metrics_body()[0].decode()
    assert faulty.inserts[0] == 10  # all four in one index insert, which the engine refused ...
    # ... then by the Python renderer (store.writer: one fallback for every path), then each
    # alone; the poison request: engine, Python, its one span, that span stripped
    assert sorted(faulty.inserts[1:]) == [1, 1, 1, 1, 3, 3, 3, 10]
    ids = [i for _, ids in good for i in ids]
    assert set(stored_runs(store, ids)) == set(ids)
    assert 'mltrace_collector_spans_rejected_total{reason="store"} 1.0' in text
    assert "mltrace_collector_spans_indexed_total 9.0" in text
    kept = list((journal.for_store(store).directory / "rejected").glob("*.otlp"))
    assert len(kept) == 1
    req = ExportTraceServiceRequest.FromString(kept[0].read_bytes())
    assert [sp.name for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans] == ["poison"]
    assert kept[0].stat().st_mode & 0o777 == 0o600
