"""OTLP/gRPC receiver: ``opentelemetry.proto.collector.trace.v1.TraceService/Export``.

Registered as a generic handler that receives the raw request bytes (no deserializer), so the
body goes through the same :func:`~.otlp.decode` check as OTLP/HTTP protobuf and the same queue.
gRPC decompresses (gzip) by itself. Status codes as :mod:`.receiver` maps them, plus
UNAUTHENTICATED (:func:`mltrace_otel.auth.token_matches`); RESOURCE_EXHAUSTED and UNAVAILABLE
carry a ``google.rpc.RetryInfo`` delay in the trailers, as OTel exporters expect.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any

import grpc

from mltrace_otel.collector import otlp
from mltrace_otel.collector.receiver import Exporter
from mltrace_otel.errors import BadRequest, QueueFull, Unavailable

log = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def _retry_trailers(code: grpc.StatusCode, message: str, seconds: float) -> list[tuple[str, bytes]]:
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import error_details_pb2, status_pb2

    delay = duration_pb2.Duration(seconds=int(seconds), nanos=int((seconds % 1) * 1e9))
    info = error_details_pb2.RetryInfo(retry_delay=delay)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return [("google.rpc.retryinfo-bin", info.SerializeToString()),
            ("grpc-status-details-bin", status.SerializeToString())]


class _Service:
    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self.stopping = False

    def _abort(self, context: Any, code: grpc.StatusCode, message: str) -> None:
        self.exporter.metrics.requests.labels("grpc", code.name).inc()
        context.abort(code, message)

    def export(self, request: bytes, context: Any) -> bytes:
        ex = self.exporter
        if not ex.authorized(dict(context.invocation_metadata() or ()).get("authorization")):
            self._abort(context, grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        try:
            if self.stopping:
                raise Unavailable("the collector is shutting down", 2.0)
            result = ex.export(request, otlp.PROTOBUF, "grpc")
        except BadRequest as e:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except (QueueFull, Unavailable) as e:
            code = (grpc.StatusCode.RESOURCE_EXHAUSTED if isinstance(e, QueueFull)
                    else grpc.StatusCode.UNAVAILABLE)
            context.set_trailing_metadata(_retry_trailers(code, str(e), e.retry_after))
            self._abort(context, code, str(e))
        ex.metrics.requests.labels("grpc", "OK").inc()
        return otlp.export_response(otlp.PROTOBUF, result.rejected, result.error)


class GrpcReceiver:
    """A grpc.Server bound to ``host:port`` (0 = a free port) serving TraceService/Export."""

    def __init__(self, host: str, port: int, exporter: Exporter, max_workers: int = 32) -> None:
        self._service = _Service(exporter)
        limit = exporter.max_body_bytes * 2 + 1024  # ours (INVALID_ARGUMENT) fires first
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="mltrace-grpc"),
            options=[("grpc.max_receive_message_length", limit), ("grpc.so_reuseport", 0)],
        )
        handler = grpc.unary_unary_rpc_method_handler(self._service.export)
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),))
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = self.server.add_insecure_port(target)
        except RuntimeError as e:
            raise OSError(f"cannot bind {target}: {e}") from None
        if not self.port:
            raise OSError(f"cannot bind {target}: address in use or not available")
        self.host = host

    def start(self) -> None:
        """Start serving."""
        self.server.start()

    def stop(self, grace: float) -> Any:
        """Refuse new RPCs; in-flight ones get ``grace`` seconds. Returns a threading.Event."""
        self._service.stopping = True
        return self.server.stop(grace)
