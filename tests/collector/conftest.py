"""Collector fixtures: a real collector on free local ports, writing into the test's store."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mltrace_otel import conventions as C
from mltrace_otel.collector.server import Collector
from mltrace_otel.settings import Settings
from mltrace_otel.store import journal
from mltrace_otel.store.models import Recovered
from tests.collector.live import LIVE, flush_live


def collector_settings(settings: Settings, **changes: Any) -> Settings:
    """Free ports (0), short batch delay so tests do not wait a second per request."""
    base = dict(otlp_http_port=0, otlp_grpc_port=0, batch_delay_s=0.05)
    base.update(changes)
    return settings.replace(**base)


@pytest.fixture(params=["journaled-engine", "journaled-python", "indexed-engine"])
def collector(request: pytest.FixtureRequest, tmp_settings: Settings, store: Any) -> Iterator[Collector]:
    """A started collector (HTTP + gRPC on port 0) over the test's store; every test runs with
    each acknowledgement and ingest path: journaled (answered once in the ingest journal, then
    indexed) with ClickHouse or Python rendering each index insert, and indexed (answered once
    queryable) with ClickHouse rendering every batch. :func:`stored_runs` and
    :func:`stored_spans` flush it (index what it acknowledged) before reading."""
    ack, render = request.param.split("-")
    native_min_spans = 0 if render == "engine" else 10**9
    c = Collector(collector_settings(tmp_settings, ack=ack), store, drain_every_s=0,
                  native_min_spans=native_min_spans)
    c.start()
    LIVE.append(c)
    try:
        yield c
    finally:
        LIVE.remove(c)
        c.stop()


def make_spans(n: int, component: str = "etl", service: str = "pipeline", prefix: str = "data/x",
               plain: bool = False) -> list[Any]:
    """``n`` finished spans from the plain OpenTelemetry SDK carrying mltrace.* attributes."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    mem = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracer = provider.get_tracer("plain-otel-test")
    for i in range(n):
        with tracer.start_as_current_span(component) as span:
            if not plain:
                span.set_attribute(C.COMPONENT_NAME, component)
                span.set_attribute(C.COMPONENT_OWNER, "team-a")
                span.set_attribute(C.RUN_INPUTS, [f"{prefix}/in-{i}.csv"])
                span.set_attribute(C.RUN_OUTPUTS, [f"{prefix}/out-{i}.csv"])
    provider.shutdown()
    return list(mem.get_finished_spans())


def run_ids(spans: list[Any]) -> list[str]:
    """The run ids (span ids as 16 hex chars) of SDK spans."""
    return [format(s.context.span_id, "016x") for s in spans]


def stored_runs(store: Any, ids: list[str]) -> dict[str, str]:
    """{run id: component} of the given runs as the store's run table holds them."""
    flush_live()
    rows = store.query(
        "test_stored_runs",
        "SELECT RunId, any(Component) FROM mltrace_runs WHERE RunId IN {ids:Array(String)} GROUP BY RunId",
        {"ids": ids},
    )
    return dict(rows)


def stored_span_counts(store: Any, span_ids: list[str]) -> dict[str, int]:
    """{span id: rows in otel_traces} of the given spans that are there (1 each: stored once)."""
    flush_live()
    rows = store.query("test_stored_span_counts", "SELECT SpanId, count() FROM otel_traces "
                       "WHERE SpanId IN {ids:Array(String)} GROUP BY SpanId", {"ids": span_ids})
    return dict(rows)


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``check`` until it holds (True) or ``timeout`` seconds pass (its last answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def stored_spans(store: Any, span_ids: list[str]) -> dict[str, tuple]:
    """{span id: (trace id, parent, name, service)} of rows in otel_traces."""
    flush_live()
    rows = store.query(
        "test_stored_spans",
        "SELECT SpanId, TraceId, ParentSpanId, SpanName, ServiceName FROM otel_traces "
        "WHERE SpanId IN {ids:Array(String)}",
        {"ids": span_ids},
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def recovered(store: Any) -> Recovered:
    """What the store's ingest journal holds unindexed, as a collector starting now would find it."""
    return journal.recover(store, journal.for_store(store))


class StoreWrapper:
    """Failure injection around the real store: what a subclass does not override reaches the
    real store, except ``sibling()`` (so the indexer's inserts come through the wrapper too)."""

    store: Any

    def __getattr__(self, name: str) -> Any:
        if name == "sibling":
            raise AttributeError(name)
        return getattr(self.store, name)
