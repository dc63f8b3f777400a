"""A prometheus_client Collector that reads pipeline health from the store at scrape time.

A handful of aggregate queries (:mod:`mltrace_otel.store.metrics_queries`) fill a
:class:`~.families.Snapshot`; the result is cached for ``cache_s`` seconds so a scrape storm
(several Prometheus replicas, a dashboard refresh) costs one round of queries. A store error never
fails the scrape: the last good snapshot is served, ``mltrace_metrics_store_up`` drops to 0 and
``mltrace_metrics_store_errors_total{query}`` counts it.

Imports the store's metrics queries (run on the Store it is given), prometheus_client and
.families.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from mltrace_otel.metrics.families import (
    DEFAULT_WINDOW_RUNS,
    DURATION_BUCKETS,
    LabelLimiter,
    OutputSeries,
    RunSeries,
    Snapshot,
    render,
    stale_rule,
    window_quantiles,
)
from mltrace_otel.settings import Settings
from mltrace_otel.store import metrics_queries as mq

if TYPE_CHECKING:  # pragma: no cover
    from mltrace_otel.store.core import Store

log = logging.getLogger(__name__)

DEFAULT_CACHE_S = 5.0
"""Seconds a snapshot of the store is reused across scrapes."""
DEFAULT_OUTPUT_LOOKBACK_S = 30 * 86400
"""Output statistics are read from runs that started within this many seconds (30 days)."""


class StoreCollector(Collector):
    """Pipeline-health series read from a :class:`~mltrace_otel.store.core.Store`.

    Args:
        store: an open store (it must stay open while the collector is registered).
        settings: for ``metrics_label_cap``.
        cache_s: seconds a snapshot is reused.
        window_runs: runs merged for the wider output-distribution window.
        output_lookback_s: how far back output statistics are read.
    """

    def __init__(self, store: Store, settings: Settings, *, cache_s: float = DEFAULT_CACHE_S,
                 window_runs: int = DEFAULT_WINDOW_RUNS,
                 output_lookback_s: int = DEFAULT_OUTPUT_LOOKBACK_S) -> None:
        self.store = store
        self.limiter = LabelLimiter(settings.metrics_label_cap)
        self.cache_s = cache_s
        self.window_runs = max(1, int(window_runs))
        self.output_lookback_s = int(output_lookback_s)
        self.refreshes = 0
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._at = -float("inf")
        self._up = 0
        self._errors: dict[str, int] = defaultdict(int)
        self._refresh_s = 0.0

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not query the store."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The cached families (refreshed when older than ``cache_s``) plus self-health."""
        with self._lock:
            if time.monotonic() - self._at >= self.cache_s:
                self._refresh()
            families = list(self._families)
            up, refresh_s, errors = self._up, self._refresh_s, dict(self._errors)
        yield from families
        yield self.limiter.family()
        yield GaugeMetricFamily("mltrace_metrics_store_up",
                                "1 when the last read of the store for /metrics succeeded", value=up)
        yield GaugeMetricFamily("mltrace_metrics_refresh_duration_seconds",
                                "Time the last read of the store for /metrics took", value=refresh_s)
        err = CounterMetricFamily("mltrace_metrics_store_errors",
                                  "Failed store queries while serving /metrics", labels=["query"])
        for q, n in sorted(errors.items()):
            err.add_metric([q], n)
        yield err

    def invalidate(self) -> None:
        """Drop the cached snapshot: the next scrape reads the store again."""
        with self._lock:
            self._at = -float("inf")

    # --- reading the store ----------------------------------------------------------------
    def _refresh(self) -> None:
        t0 = time.perf_counter()
        snap = Snapshot()
        ok = True
        for name, step in (("run_totals", self._runs), ("test_totals", self._tests),
                           ("stale_runs", self._stale), ("flagged_outputs", self._flagged),
                           ("output_stats", self._outputs)):
            try:
                step(snap)
            except (NotImplementedError, ImportError):  # a store query not built: leave it out
                continue
            except Exception as e:  # noqa: BLE001 - a scrape must not fail on the store
                ok = False
                self._errors[name] += 1
                log.warning("mltrace /metrics: %s failed: %s", name, e)
        self.refreshes += 1
        self._refresh_s = time.perf_counter() - t0
        self._at = time.monotonic()
        self._up = int(ok)
        if ok or not self._families:
            self._families = render(snap, self.limiter, self.window_runs)

    def _runs(self, snap: Snapshot) -> None:
        for r in mq.run_totals(self.store, DURATION_BUCKETS):
            snap.runs[(r.component, r.status)] = RunSeries(r.runs, r.duration_sum_s,
                                                           list(r.bucket_counts), r.last_end)

    def _tests(self, snap: Snapshot) -> None:
        for t in mq.test_totals(self.store):
            key = (t.component, t.test, t.method, "passed" if t.passed else "failed")
            snap.tests[key] = snap.tests.get(key, 0) + t.count

    def _stale(self, snap: Snapshot) -> None:
        runs = self.store.stale_runs(None, limit=max(100, self.limiter.cap))
        stale: dict[tuple[str, str], int] = {}
        for run in runs:
            for rule in sorted({stale_rule(m) for m in run.stale}):
                stale[(run.component, rule)] = stale.get((run.component, rule), 0) + 1
        snap.stale = stale

    def _flagged(self, snap: Snapshot) -> None:
        snap.flagged_total, snap.flagged = mq.flagged_outputs(self.store)

    def _outputs(self, snap: Snapshot) -> None:
        rows = mq.output_stats(self.store, self.window_runs, self.output_lookback_s)
        series: dict[tuple[str, str, str], list[mq.OutputStatsRow]] = defaultdict(list)
        for r in rows:  # newest first within a series
            series[(r.component, r.output, r.column)].append(r)
        for key, rs in series.items():
            latest = rs[0]
            s = OutputSeries(latest.count, latest.nulls, latest.min, latest.max, latest.mean,
                             latest.sum, latest.start)
            s.quantiles = window_quantiles(rs, (1, self.window_runs))
            snap.outputs[key] = s


def register_store_metrics(registry: CollectorRegistry, store: Store, settings: Settings | None = None,
                           *, cache_s: float = DEFAULT_CACHE_S,
                           window_runs: int = DEFAULT_WINDOW_RUNS,
                           output_lookback_s: int = DEFAULT_OUTPUT_LOOKBACK_S) -> StoreCollector:
    """Expose the store's pipeline-health series on a prometheus_client registry.

    The collector (``mltrace server``, the collector's /metrics) calls this once with its
    registry; series are read from the store at scrape time (cached a few seconds).

    Args:
        registry: a ``prometheus_client.CollectorRegistry`` (e.g. ``prometheus_client.REGISTRY``).
        store: an open Store.
        settings: for ``metrics_label_cap``; ``store.settings`` when None.
        cache_s, window_runs, output_lookback_s: see :class:`StoreCollector`.

    Returns:
        The registered :class:`StoreCollector` (``invalidate()`` forces a fresh read).
    """
    settings = settings or getattr(store, "settings", None) or Settings.from_env()
    collector = StoreCollector(store, settings, cache_s=cache_s, window_runs=window_runs,
                               output_lookback_s=output_lookback_s)
    registry.register(collector)
    return collector
