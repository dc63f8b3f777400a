"""Sending serialized OTLP trace requests as they are: OTLP/HTTP protobuf and OTLP/gRPC.

The collector's forwarder (:mod:`mltrace_otel.collector.forward`) and the SDK's delivery from
its durable queue (:mod:`mltrace_otel.sdk.durable`) both hold requests as bytes (one serialized
``ExportTraceServiceRequest``, or several concatenated: that is one valid request holding all
their spans) and send them without decoding and encoding again. :class:`HttpSender` posts them
over one keep-alive connection (gzip above :data:`GZIP_MIN_BYTES`); :class:`GrpcSender` calls
``TraceService/Export`` with the raw bytes. Both answer with an :class:`Outcome` saying whether a
failure is worth retrying (OTLP's list: HTTP 429/502/503/504 and connection errors; gRPC
UNAVAILABLE, RESOURCE_EXHAUSTED, …) and after how long (``Retry-After`` / RetryInfo).

Imports :mod:`mltrace_otel.settings` (ForwardTarget) and the stdlib; grpc and the OTLP protobuf
types only where used.
"""

from __future__ import annotations

import email.utils
import gzip
import http.client
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mltrace_otel.settings import ForwardTarget

GRPC_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
"""The OTLP/gRPC trace export method."""

GZIP_MIN_BYTES = 4096
"""OTLP/HTTP bodies larger than this are sent gzip-compressed."""

MAX_RETRY_AFTER_S = 60.0
"""Longest ``Retry-After`` / RetryInfo delay honoured."""

_RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
_RETRYABLE_GRPC = frozenset({"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE",
                             "UNAVAILABLE", "DATA_LOSS", "RESOURCE_EXHAUSTED"})
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_OWN_HEADERS = frozenset({"content-type", "content-encoding", "content-length", "host"})


@dataclass(frozen=True)
class Outcome:
    """What one export attempt came to."""

    ok: bool
    retryable: bool = False
    reason: str = ""
    retry_after: float | None = None
    rejected: int = 0  # spans the receiver refused in an otherwise successful answer (partial success)
    busy: bool = False  # the receiver answered "not now" (HTTP 429/503, gRPC RESOURCE_EXHAUSTED)


def rejected_spans(response: bytes) -> tuple[int, str]:
    """(rejected_spans, error_message) of a serialized ExportTraceServiceResponse; (0, "") if none
    or unreadable."""
    if not response:
        return 0, ""
    try:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        msg = trace_service_pb2.ExportTraceServiceResponse.FromString(response)
    except Exception:  # noqa: BLE001 - an answer we cannot read still means delivered
        return 0, ""
    return int(msg.partial_success.rejected_spans), msg.partial_success.error_message


def retry_after(value: str | None) -> float | None:
    """Seconds from an HTTP ``Retry-After`` header (delay seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, min(float(value), MAX_RETRY_AFTER_S))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), MAX_RETRY_AFTER_S))


class HttpSender:
    """OTLP/HTTP protobuf over one keep-alive ``http.client`` connection."""

    def __init__(self, target: ForwardTarget, user_agent: str = "mltrace-otel") -> None:
        parts = urlsplit(target.url)
        self.user_agent = user_agent
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/v1/traces") + (f"?{parts.query}" if parts.query else "")
        self.headers = {k: v for k, v in target.headers.items() if k.lower() not in _OWN_HEADERS}
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        with self._lock:
            if self._conn is None:
                cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
                self._conn = cls(self.host, self.port, timeout=timeout)
            conn = self._conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def send(self, body: bytes, timeout: float) -> Outcome:
        headers = {**self.headers, "Content-Type": "application/x-protobuf",
                   "User-Agent": self.user_agent}
        if len(body) > GZIP_MIN_BYTES:
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        retry_stale = True
        while True:
            conn = self._connection(timeout)
            reused = conn.sock is not None
            try:
                conn.request("POST", self.path, body=body, headers=headers)
                resp = conn.getresponse()
                answer = resp.read()
                break
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if reused and retry_stale and isinstance(e, _STALE):
                    retry_stale = False  # the server closed an idle keep-alive connection: reconnect now
                    continue
                return Outcome(False, True, f"{type(e).__name__}: {e}".rstrip(": "))
        if resp.will_close:
            self.close()
        status = resp.status
        if 200 <= status < 300:
            rejected, message = rejected_spans(answer)
            return Outcome(True, reason=message, rejected=rejected)
        snippet = answer[:200].decode("utf-8", "replace").strip()
        reason = f"HTTP {status}" + (f": {snippet}" if snippet else "")
        if status in _RETRYABLE_HTTP:
            return Outcome(False, True, reason, retry_after(resp.getheader("Retry-After")),
                           busy=status in (429, 503))
        return Outcome(False, False, reason)

    def close(self) -> None:
        """Close the connection; called from another thread it interrupts a blocked request."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is None:
            return
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        conn.close()


class GrpcSender:
    """OTLP/gRPC: the raw request bytes through ``TraceService/Export`` (no re-encoding)."""

    def __init__(self, target: ForwardTarget) -> None:
        import grpc

        self._grpc = grpc
        # reconnect soon after the endpoint comes back (gRPC's default backoff reaches 120 s)
        options = [("grpc.initial_reconnect_backoff_ms", 500), ("grpc.max_reconnect_backoff_ms", 5000)]
        if target.tls:
            self._channel = grpc.secure_channel(target.url, grpc.ssl_channel_credentials(), options)
        else:
            self._channel = grpc.insecure_channel(target.url, options)
        self._export = self._channel.unary_unary(GRPC_METHOD, request_serializer=None,
                                                 response_deserializer=None)
        self.metadata: list[tuple[str, str | bytes]] = [
            (k.lower(), v.encode() if k.lower().endswith("-bin") else v) for k, v in target.headers.items()]

    def send(self, body: bytes, timeout: float) -> Outcome:
        grpc = self._grpc
        try:
            answer = self._export(body, timeout=timeout, metadata=self.metadata or None)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
            name = code.name if code is not None else "UNKNOWN"
            details = e.details() if hasattr(e, "details") else ""
            reason = f"gRPC {name}" + (f": {details}" if details else "")
            if name in _RETRYABLE_GRPC:
                trailers = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
                return Outcome(False, True, reason, grpc_retry_delay(trailers),
                               busy=name == "RESOURCE_EXHAUSTED")
            return Outcome(False, False, reason)
        except Exception as e:  # noqa: BLE001 - e.g. metadata gRPC refuses: every call would fail
            return Outcome(False, False, f"{type(e).__name__}: {e}")
        rejected, message = rejected_spans(answer or b"")
        return Outcome(True, reason=message, rejected=rejected)

    def close(self) -> None:
        """Close the channel; in-flight calls end (CANCELLED)."""
        try:
            self._channel.close()
        except Exception:  # noqa: BLE001 - closing twice / during shutdown
            pass


def grpc_retry_delay(trailers: Any) -> float | None:
    """The ``google.rpc.RetryInfo`` delay in a failed call's status details, if any."""
    for key, value in trailers or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        try:
            from google.rpc import error_details_pb2, status_pb2

            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    d = info.retry_delay
                    return max(0.0, min(d.seconds + d.nanos / 1e9, MAX_RETRY_AFTER_S))
        except Exception:  # noqa: BLE001 - unreadable details: use our own backoff
            return None
    return None


def sender_for(target: ForwardTarget, user_agent: str = "mltrace-otel") -> HttpSender | GrpcSender:
    """The sender for a target's protocol."""
    return GrpcSender(target) if target.protocol == "grpc" else HttpSender(target, user_agent)


def exporter_sender(protocol: str, endpoint: str, headers: dict[str, str],
                    user_agent: str = "mltrace-otel-sdk") -> HttpSender | GrpcSender | JsonSender:
    """The sender for an OTLP exporter's settings: ``OTEL_EXPORTER_OTLP_PROTOCOL``
    (``http/protobuf``, ``http/json``, ``grpc``), the traces endpoint (a URL; for gRPC
    ``host:port`` or a URL whose scheme says TLS) and ``OTEL_EXPORTER_OTLP_HEADERS``.

    Raises:
        ImportError: gRPC without the ``grpc`` extra.
    """
    if protocol == "grpc":
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        target = ForwardTarget(f"{parts.hostname}:{parts.port or 4317}", "grpc", parts.scheme == "https",
                               {k.lower(): v for k, v in headers.items()})
        return GrpcSender(target)
    if protocol == "http/json":
        return JsonSender(endpoint, headers, user_agent)
    return HttpSender(ForwardTarget(endpoint, "http/protobuf", endpoint.startswith("https://"), headers),
                      user_agent)


class JsonSender:
    """OTLP/HTTP with JSON bodies: the request bytes rendered per the OTLP/JSON rules
    (lowerCamelCase fields, hex trace and span ids, integer enums)."""

    def __init__(self, url: str, headers: dict[str, str], user_agent: str = "mltrace-otel") -> None:
        self.url = url
        self.headers = {**headers, "Content-Type": "application/json", "User-Agent": user_agent}

    def send(self, body: bytes, timeout: float) -> Outcome:
        import json
        import urllib.error
        import urllib.request

        from google.protobuf.json_format import MessageToDict
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        doc = MessageToDict(ExportTraceServiceRequest.FromString(body), use_integers_for_enums=True)
        for rs in doc.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for sp in ss.get("spans", []):
                    _hex_ids(sp, ("traceId", "spanId", "parentSpanId"))
                    for lk in sp.get("links", []):
                        _hex_ids(lk, ("traceId", "spanId"))
        req = urllib.request.Request(self.url, data=json.dumps(doc).encode(), method="POST",
                                     headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the configured endpoint
                resp.read()
                return Outcome(True)
        except urllib.error.HTTPError as e:
            retryable = e.code in _RETRYABLE_HTTP
            return Outcome(False, retryable, f"HTTP {e.code}", retry_after(e.headers.get("Retry-After")),
                           busy=e.code in (429, 503))
        except OSError as e:
            return Outcome(False, True, f"{type(e).__name__}: {e}")

    def close(self) -> None:
        pass


def _hex_ids(d: dict, keys: tuple[str, ...]) -> None:
    """OTLP/JSON carries ids as hex; protobuf's JSON mapping writes bytes as base64."""
    import base64

    for k in keys:
        if k in d:
            d[k] = base64.b64decode(d[k]).hex()
