"""The write: serialized OTLP requests into ``otel_traces``, one insert, the one way every path uses.

The collector (:mod:`mltrace_otel.store.indexer`) and the spool drain
(:func:`mltrace_otel.store.ingest.drain_spool`) store requests through :func:`write`, so which
renderer stores a batch is decided here once: the engine (:mod:`.otlp_native`, no Python per
span, but ~100 ms of view analysis per insert) for a batch of at least :func:`engine_min_spans`
spans; the Python renderer (:mod:`.ingest`, ~25 µs per span) for smaller batches, for a cluster
(rows must go through the Distributed ``otel_traces``), with ``MLTRACE_NATIVE_INGEST=false``, and
for a batch the engine refused for its data. Both give byte-identical rows
(``tests/store/test_otlp_native.py``).

Imports :mod:`mltrace_otel.errors`, :mod:`mltrace_otel.settings`, :mod:`.models` and
:mod:`.protocols` only: the renderers are reached through the store (:class:`~.protocols.SpanSink`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mltrace_otel.errors import store_failure
from mltrace_otel.settings import Settings
from mltrace_otel.store.models import IngestResult
from mltrace_otel.store.protocols import SpanSink

log = logging.getLogger(__name__)

ENGINE_MIN_SPANS = 4000
"""On the embedded store, batches of fewer spans are rendered in Python: the engine's view
analysis (~100 ms per insert) costs more than rendering them (~25 µs a span)."""


def engine_min_spans(settings: Settings) -> int | None:
    """The smallest batch the engine renders under these settings; None: never the engine
    (a cluster, or ``MLTRACE_NATIVE_INGEST=false``). A ClickHouse server renders every batch
    (its own cores do the work); the embedded engine batches of ``ENGINE_MIN_SPANS`` or more."""
    if not settings.native_ingest or settings.cluster:
        return None
    return ENGINE_MIN_SPANS if settings.is_embedded else 0


def write(store: SpanSink, payloads: Sequence[bytes], spans: int, min_engine_spans: int | None, *,
          dedup_token: str | None = None) -> IngestResult:
    """Store checked, serialized ExportTraceServiceRequests in one insert.

    Args:
        store: an open store.
        payloads: the requests, each already checked (ids, times: ``collector.otlp.decode``).
        spans: how many spans they hold.
        min_engine_spans: the smallest batch the engine renders (:func:`engine_min_spans`);
            None: never the engine.
        dedup_token: the insert's ``insert_deduplication_token`` (the same requests written
            again with it are stored once); the Python fallback after an engine refusal uses
            ``<token>-py``.

    Raises:
        QueryError / StoreUnavailable: the insert failed (:func:`mltrace_otel.errors.store_failure`
            tells storage trouble, to retry, from refused data).
    """
    if min_engine_spans is None or spans < min_engine_spans:
        return store.insert_requests_rendered(payloads, dedup_token=dedup_token)
    try:
        return store.insert_requests(payloads, spans=spans, dedup_token=dedup_token)
    except Exception as e:
        if store_failure(e)[0] != "data":
            raise
        log.warning("the engine refused a batch of %d spans (%s); rendering it in Python", spans, e)
        return store.insert_requests_rendered(payloads, dedup_token=dedup_token and f"{dedup_token}-py")
