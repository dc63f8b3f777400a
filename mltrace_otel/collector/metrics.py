"""The collector's self-health metrics, in a prometheus_client registry of its own.

Served at ``/metrics`` on the collector's HTTP port (and by ``mltrace server``), together with
the store-derived metrics of :mod:`mltrace_otel.metrics`.

Series (all prefixed ``mltrace_collector_``):

- ``spans_received_total{protocol}``: spans in requests that parsed (http/protobuf, http/json, grpc);
- ``spans_rejected_total{reason}``: spans refused for good (not retryable): ``invalid_span``
  (bad ids, partial success), ``bad_request`` (the whole request was malformed), ``store``;
- ``spans_dropped_total{reason}``: spans refused for now, the client was told to retry:
  ``queue_full`` (429), ``unavailable`` (503: store stalled/failing, shutting down),
  ``ack_timeout`` (503 after waiting), ``store_error`` (the insert failed);
- ``spans_committed_total``, ``batches_total``, ``insert_failures_total``,
  ``spool_drained_spans_total``;
- ``spans_indexed_total`` (spans queryable), ``index_backlog_spans`` (gauge: journaled, not yet
  indexed) and ``index_duration_seconds`` (histogram: one index insert);
- ``requests_total{protocol,code}``: requests by protocol and HTTP status / gRPC code name;
- ``queue_depth_spans`` (gauge: queued, being inserted, or not yet indexed),
  ``insert_duration_seconds`` (histogram: a batch's journal append);
- ``store_retries_total{reason}``: failed writes that are being retried (never dropped):
  ``unavailable``, ``no_space``, ``too_many_parts``, ``memory``, ``timeout``, ``other``;
- ``journal_corrupt_records_total``: journal records lost because their bytes were damaged on
  disk: skipped at recovery (everything after them is kept), or found damaged (or gone) when
  the indexer read them back;
- ``spans_off_contract_total{attribute}``: spans whose mltrace attribute had a type other than
  the convention's (accepted where the meaning is unambiguous, see the span conventions);
- ``forward_spans_total{endpoint,outcome}`` (``sent``, ``dropped_queue_full``, ``failed``) and
  ``forward_queue_spans{endpoint}`` (gauge): OTLP forwarding (MLTRACE_FORWARD_OTLP_ENDPOINTS);
- ``engine_memory_bytes{kind}`` (gauge, embedded store only, read at scrape time): the engine in
  this process, ``tracked`` by its memory tracker, ``allocated`` and ``resident`` (an upper
  bound) by its allocator (resident minus allocated: freed pages not yet returned to the system).

Imports prometheus_client only.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "mltrace_collector"


class CollectorMetrics:
    """The collector's counters, gauge and histogram, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(f"{PREFIX}_spans_received", "Spans in OTLP requests that parsed",
                                ["protocol"], registry=r)
        self.rejected = Counter(f"{PREFIX}_spans_rejected", "Spans refused for good (bad data)",
                                ["reason"], registry=r)
        self.dropped = Counter(f"{PREFIX}_spans_dropped",
                               "Spans refused for now; the client was told to retry", ["reason"],
                               registry=r)
        self.committed = Counter(f"{PREFIX}_spans_committed", "Spans committed to the store",
                                 registry=r)
        self.batches = Counter(f"{PREFIX}_batches", "Insert batches committed", registry=r)
        self.insert_failures = Counter(f"{PREFIX}_insert_failures", "Insert batches that failed",
                                       registry=r)
        self.spool_drained = Counter(f"{PREFIX}_spool_drained_spans",
                                     "Spans moved from the local spool into the store", registry=r)
        self.requests = Counter(f"{PREFIX}_requests", "OTLP requests by protocol and response code",
                                ["protocol", "code"], registry=r)
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth_spans", "Spans queued or being inserted",
                                 registry=r)
        self.indexed = Counter(f"{PREFIX}_spans_indexed",
                               "Spans indexed into otel_traces and the mltrace tables (queryable)",
                               registry=r)
        self.index_backlog = Gauge(f"{PREFIX}_index_backlog_spans",
                                   "Spans journaled (acknowledged) and not yet indexed", registry=r)
        self.index_seconds = Histogram(
            f"{PREFIX}_index_duration_seconds", "Duration of one index insert of journaled requests",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=r)
        self.store_retries = Counter(f"{PREFIX}_store_retries",
                                     "Failed store writes being retried (acknowledged data is never dropped)",
                                     ["reason"], registry=r)
        self.journal_corrupt = Counter(f"{PREFIX}_journal_corrupt_records",
                                       "Journal records lost: damaged on disk (at recovery or read back)",
                                       registry=r)
        self.off_contract = Counter(f"{PREFIX}_spans_off_contract",
                                    "Spans with an mltrace attribute of another type than the convention's",
                                    ["attribute"], registry=r)
        self.forwarded = Counter(f"{PREFIX}_forward_spans", "Spans forwarded over OTLP, by outcome",
                                 ["endpoint", "outcome"], registry=r)
        self.forward_queue = Gauge(f"{PREFIX}_forward_queue_spans",
                                   "Spans waiting to be forwarded to an OTLP endpoint", ["endpoint"],
                                   registry=r)
        self.engine_memory = Gauge(f"{PREFIX}_engine_memory_bytes",
                                   "The embedded store engine's memory: tracked, allocated, resident",
                                   ["kind"], registry=r)
        self.insert_seconds = Histogram(
            f"{PREFIX}_insert_duration_seconds", "Duration of one batch insert into the store",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)

