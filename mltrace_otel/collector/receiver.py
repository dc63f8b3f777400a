"""The protocol-independent part of a receiver: decode, queue, wait for the commit, answer.

The HTTP and gRPC servers both call :meth:`Exporter.export` with a (decompressed) body and map
its exceptions to their status codes:

======================  ===================  =================================
exception (errors.py)   HTTP                 gRPC
======================  ===================  =================================
BadRequest              400                  INVALID_ARGUMENT
PayloadTooLarge         413                  INVALID_ARGUMENT
UnsupportedMediaType    415                  (n/a)
QueueFull               429 + Retry-After    RESOURCE_EXHAUSTED + RetryInfo
Unavailable             503 + Retry-After    UNAVAILABLE + RetryInfo
Rejected                400                  INVALID_ARGUMENT
======================  ===================  =================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mltrace_otel.auth import token_matches
from mltrace_otel.collector import otlp
from mltrace_otel.collector.metrics import CollectorMetrics
from mltrace_otel.collector.pipeline import IngestQueue
from mltrace_otel.errors import AckTimeout, BadRequest, PayloadTooLarge, QueueFull, Rejected, Unavailable


@dataclass(frozen=True)
class Exported:
    """A request's outcome: spans rejected as invalid (partial success) and why."""

    accepted: int
    rejected: int
    error: str


class Exporter:
    """Decode → queue → wait for the commit, with metrics. Thread-safe."""

    def __init__(self, queue: IngestQueue, metrics: CollectorMetrics, *, max_body_bytes: int,
                 ack_timeout_s: float, token: str | None,
                 forward: Callable[[bytes, int], None] | None = None) -> None:
        self.queue = queue
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.ack_timeout_s = ack_timeout_s
        self._token = token
        self._forward = forward

    def authorized(self, header: str | None) -> bool:
        """True when no token is configured or ``header`` is ``Bearer <token>`` (any case of
        the scheme, RFC 7235)."""
        return token_matches(header, self._token)

    def export(self, body: bytes, media: str, protocol: str) -> Exported:
        """Check ``body`` (already decompressed), queue its good spans, wait for the commit.

        Raises:
            BadRequest / PayloadTooLarge: the request is refused for good.
            QueueFull / Unavailable: refused for now; the client should retry.
        """
        m = self.metrics
        try:
            if len(body) > self.max_body_bytes:
                raise PayloadTooLarge(
                    f"request body of {len(body)} bytes exceeds the limit of {self.max_body_bytes} bytes",
                    hint="send smaller batches or raise MLTRACE_MAX_BODY_BYTES")
            decoded = otlp.decode(body, media)
        except BadRequest:
            m.rejected.labels("bad_request").inc()
            raise
        m.received.labels(protocol).inc(decoded.spans + decoded.rejected)
        if decoded.rejected:
            m.rejected.labels("invalid_span").inc(decoded.rejected)
        for attribute, n in decoded.off_contract.items():
            m.off_contract.labels(attribute).inc(n)
        if not decoded.spans:
            return Exported(0, decoded.rejected, decoded.error)
        try:
            pending = self.queue.submit(decoded.payload, decoded.spans)
        except (QueueFull, Unavailable) as e:
            m.dropped.labels("queue_full" if isinstance(e, QueueFull) else "unavailable").inc(decoded.spans)
            raise
        try:
            committed = pending.wait(self.ack_timeout_s)
        except AckTimeout:
            m.dropped.labels("ack_timeout").inc(decoded.spans)
            raise
        except Rejected as e:
            raise BadRequest(str(e)) from None
        if self._forward is not None:  # after the acknowledgement: a retried request is not sent twice
            self._forward(decoded.payload, decoded.spans)
        error = decoded.error
        if committed.store_rejected:
            note = (f"the store rejected {committed.store_rejected} span(s) of the batch this "
                    f"request joined: {committed.store_error}")
            error = f"{error}; {note}" if error else note
        return Exported(decoded.spans, decoded.rejected, error)
