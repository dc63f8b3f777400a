"""The mltrace-otel collector: OTLP/HTTP and OTLP/gRPC receivers writing spans into the store.

Modules: :mod:`.otlp` (decode and check requests, OTLP/JSON to protobuf), :mod:`.pipeline`
(bounded queue, batching, the one writer thread), :mod:`.receiver` (decode → queue → ack),
:mod:`.http_server`, :mod:`.grpc_server`, :mod:`.metrics` (self-health metrics),
:mod:`.indexer` (journaled requests into the store), :mod:`.forward` (OTLP forwarding),
:mod:`.server` (:class:`Collector`). The processes ``mltrace collector`` and ``mltrace server``
(collector + UI) are composed in :mod:`mltrace_otel.server`, above this package.

May import: settings, errors, auth, store; never the SDK or the UI. grpc and the store load only
when used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Collector"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mltrace_otel.collector import server

        return getattr(server, name)
    raise AttributeError(f"module 'mltrace_otel.collector' has no attribute {name!r}")
