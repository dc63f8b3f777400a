"""Prometheus metrics: pipeline health and output distributions.

- :func:`register_store_metrics` (collector, ``mltrace server``): series read from the store at
  scrape time: runs by status, run durations, test outcomes, stale runs, flagged outputs,
  freshness, and the distributions of component outputs (latest run and last N runs).
- :func:`serve_process_metrics` / :class:`MetricsSpanProcessor` (long-running processes such as
  endpoint components): the same series from the process's own finished runs.

Series, labels and the cardinality cap are documented in ``docs/metrics.md``.
May import: the store (via the Store it is given), prometheus_client, opentelemetry-sdk,
mltrace_otel.settings / conventions / sdk.stats / sdk.export. Importing this package is cheap
(submodules load on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "register_store_metrics": "mltrace_otel.metrics.store_collector",
    "StoreCollector": "mltrace_otel.metrics.store_collector",
    "serve_process_metrics": "mltrace_otel.metrics.process",
    "MetricsSpanProcessor": "mltrace_otel.metrics.process",
    "ProcessMetrics": "mltrace_otel.metrics.process",
    "LabelLimiter": "mltrace_otel.metrics.families",
    "Snapshot": "mltrace_otel.metrics.families",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'mltrace_otel.metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
