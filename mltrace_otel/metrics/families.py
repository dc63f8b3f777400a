"""The metric families /metrics exposes, built from a :class:`Snapshot` of pipeline health.

Both sources fill the same :class:`Snapshot` and render it here, so they expose the same series:
the store (:mod:`.store_collector`, at scrape time) and a long-running process's own finished runs
(:mod:`.process`). Cardinality is bounded by :class:`LabelLimiter`: label values come only from
component, output, column and test names, each label of each metric keeps at most ``cap``
distinct values, and every series the cap cuts is counted in
``mltrace_metrics_series_dropped_total{metric}``.

Imports prometheus_client and mltrace_otel.sdk.stats (the sketch) only.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from mltrace_otel.sdk.stats import Sketch

DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
)
"""Upper bounds (seconds) of the run-duration histogram buckets (+Inf is added)."""
QUANTILES: tuple[float, ...] = (0.01, 0.1, 0.5, 0.9, 0.99)
"""Quantiles exposed for every output distribution."""
DEFAULT_WINDOW_RUNS = 10
"""Runs merged for the wider output-distribution window (``window="last_10_runs"``)."""
STALE_RULES: tuple[str, ...] = ("old_input", "fresher_run", "newer_upstream", "upstream_failed",
                                "upstream_stale")
"""Values of the ``rule`` label of mltrace_component_stale_runs (plus ``other``): the store's
staleness kinds (``fresher_run`` is the kind ``fresher_upstream``, named as before);
``upstream_stale`` is staleness inherited from a run upstream."""
CAPPED_LABELS = frozenset({"component", "output", "column", "test", "method"})
"""Labels whose values come from user names and are capped."""


def window_label(runs: int) -> str:
    """The ``window`` label of a merge over the newest ``runs`` runs."""
    return "last_run" if runs == 1 else f"last_{runs}_runs"


def stale_rule(message: str) -> str:
    """The staleness rule a message (mltrace's wording) reports, read after "(ID ...)" so a
    component's own name cannot mislead it."""
    at = message.find("(ID ")
    end = message.find(")", at) if at >= 0 else -1
    m = (message[end + 1:] if end >= 0 else message).lower()
    if ", which is stale: " in m:  # "report (ID …) read x from clean (ID …), which is stale: …"
        return "upstream_stale"
    if m.lstrip().startswith("failed:"):  # "clean (ID …) failed: ValueError: …"
        return "upstream_failed"
    if m.lstrip().startswith("was run "):  # "was run 40 days ago." / "... 3 hours ago."
        return "old_input"
    if "fresher run" in m:
        return "fresher_run"
    if "newer" in m:
        return "newer_upstream"
    return "other"


# --- the snapshot -----------------------------------------------------------------------------
@dataclass
class RunSeries:
    """Runs of one component with one status."""

    runs: int = 0
    duration_sum_s: float = 0.0
    bucket_counts: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    last_end: float = 0.0


@dataclass
class OutputSeries:
    """One (component, output, column) distribution: the latest run's summary, and quantiles
    per window (window label -> {quantile -> value})."""

    count: int
    nulls: int
    min: float | None
    max: float | None
    mean: float | None
    sum: float | None
    last_start: float
    quantiles: dict[str, dict[float, float]] = field(default_factory=dict)


@dataclass
class Snapshot:
    """Pipeline health at one moment, keyed by label values."""

    runs: dict[tuple[str, str], RunSeries] = field(default_factory=dict)  # (component, status)
    tests: dict[tuple[str, str, str, str], int] = field(default_factory=dict)  # comp, test, method, result
    stale: dict[tuple[str, str], int] | None = None  # (component, rule); None = not available
    flagged_total: int | None = None
    flagged: dict[str, int] = field(default_factory=dict)  # component -> flagged outputs it wrote
    outputs: dict[tuple[str, str, str], OutputSeries] = field(default_factory=dict)

    def components(self) -> list[str]:
        """Every component the snapshot knows, sorted."""
        return sorted({c for c, _ in self.runs} | {k[0] for k in self.tests} | {k[0] for k in self.outputs})


def parse_sketch(text: str) -> Sketch | None:
    """A sketch from its JSON, None when it does not parse (another format, garbage)."""
    try:
        return Sketch.from_json(text)
    except (ValueError, TypeError, AttributeError, KeyError):
        return None


def merged_quantiles(sketches: Iterable[Sketch | None], lo: float | None, hi: float | None
                     ) -> dict[float, float]:
    """QUANTILES of the merged sketches (None entries skipped), clamped to [lo, hi];
    {} when they hold nothing."""
    parts = [s for s in sketches if s is not None]
    if len(parts) == 1:
        merged = parts[0]
    else:
        merged = Sketch()
        for s in parts:
            merged.merge(s)
    values = merged.quantiles(QUANTILES)
    if values[0] is None:
        return {}
    out = {}
    for q, v in zip(QUANTILES, values, strict=True):
        if lo is not None:
            v = max(v, lo)
        if hi is not None:
            v = min(v, hi)
        out[q] = v
    return out


def window_quantiles(runs: Sequence[Any], windows: Iterable[int]) -> dict[str, dict[float, float]]:
    """Quantiles per window label for one output series; ``runs`` newest first, each with
    ``min``, ``max`` and ``sketch`` (JSON). Each sketch is parsed once."""
    parsed = [parse_sketch(r.sketch) for r in runs]
    out = {}
    for n in sorted(set(windows)):
        part = runs[:n]
        qs = merged_quantiles(parsed[:n], min((r.min for r in part if r.min is not None), default=None),
                              max((r.max for r in part if r.max is not None), default=None))
        if qs:
            out[window_label(n)] = qs
    return out


# --- cardinality ------------------------------------------------------------------------------
class LabelLimiter:
    """Per metric and capped label, admit at most ``cap`` distinct values; count what is cut.

    ``dropped`` accumulates over the limiter's life (a counter): each render adds the series it
    cut. Thread-safe.
    """

    def __init__(self, cap: int) -> None:
        self.cap = max(1, int(cap))
        self.dropped: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, metric: str, labels: Sequence[str], rows: Iterable[tuple[Sequence[str], object]]
              ) -> Iterator[tuple[list[str], object]]:
        """Yield the rows (label values, payload) whose values fit the cap, in the given order;
        a row whose value is new on a full label is dropped and counted."""
        seen: dict[int, set[str]] = {i: set() for i, n in enumerate(labels) if n in CAPPED_LABELS}
        cut = 0
        for values, payload in rows:
            ok = True
            for i, vals in seen.items():
                if values[i] not in vals and len(vals) >= self.cap:
                    ok = False
                    break
            if not ok:
                cut += 1
                continue
            for i, vals in seen.items():
                vals.add(values[i])
            yield list(values), payload
        if cut:
            with self._lock:
                self.dropped[metric] = self.dropped.get(metric, 0) + cut

    def family(self) -> CounterMetricFamily:
        """mltrace_metrics_series_dropped_total{metric}."""
        fam = CounterMetricFamily("mltrace_metrics_series_dropped",
                                  "Series left out because a label reached the cardinality cap "
                                  "(MLTRACE_METRICS_LABEL_CAP)", labels=["metric"])
        with self._lock:
            for metric, n in sorted(self.dropped.items()):
                fam.add_metric([metric], n)
        return fam


# --- rendering --------------------------------------------------------------------------------
def render(snap: Snapshot, limiter: LabelLimiter, window_runs: int = DEFAULT_WINDOW_RUNS) -> list[Metric]:
    """Every metric family of a snapshot (the dropped-series counter is not included)."""
    out: list[Metric] = []
    comp = ["component"]

    # Both statuses (and both test results) are exposed from a component's (test's) first run on,
    # at 0 when none: a counter that appears at 1 is invisible to increase() and to alerts.
    runs = CounterMetricFamily("mltrace_component_runs", "Component runs, by final status "
                               "(error = the function or a test raised)", labels=comp + ["status"])
    run_counts = {(c, st): 0 for c, _ in snap.runs for st in ("ok", "error")}
    run_counts.update({k: v.runs for k, v in snap.runs.items()})
    for lv, n in limiter.admit("mltrace_component_runs", comp + ["status"], sorted(run_counts.items())):
        runs.add_metric(lv, n)
    out.append(runs)

    per_comp: dict[str, RunSeries] = {}
    last_ok: dict[str, float] = {}
    for (c, status), rs in sorted(snap.runs.items()):
        agg = per_comp.setdefault(c, RunSeries())
        agg.runs += rs.runs
        agg.duration_sum_s += rs.duration_sum_s
        agg.bucket_counts = [a + b for a, b in zip(agg.bucket_counts, rs.bucket_counts, strict=True)]
        if status == "ok" and rs.runs:
            last_ok[c] = max(last_ok.get(c, 0.0), rs.last_end)
    hist = HistogramMetricFamily("mltrace_component_run_duration_seconds",
                                 "Wall time of component runs", labels=comp)
    for lv, rs in limiter.admit("mltrace_component_run_duration_seconds", comp,
                                (([c], rs) for c, rs in sorted(per_comp.items()))):
        buckets = [(_le(b), n) for b, n in zip(DURATION_BUCKETS, rs.bucket_counts, strict=True)]
        hist.add_metric(lv, buckets + [("+Inf", rs.runs)], rs.duration_sum_s)
    out.append(hist)

    fresh = GaugeMetricFamily("mltrace_component_last_success_timestamp_seconds",
                              "End time of the component's latest run that did not fail", labels=comp)
    for lv, t in limiter.admit("mltrace_component_last_success_timestamp_seconds", comp,
                               (([c], t) for c, t in sorted(last_ok.items()))):
        fresh.add_metric(lv, t)
    out.append(fresh)

    tl = comp + ["test", "method", "result"]
    tests = CounterMetricFamily("mltrace_component_tests", "Test method executions by outcome "
                                "(result = passed | failed)", labels=tl)
    test_counts = {(c, t, m, r): 0 for c, t, m, _ in snap.tests for r in ("passed", "failed")}
    test_counts.update(snap.tests)
    for lv, n in limiter.admit("mltrace_component_tests", tl, sorted(test_counts.items())):
        tests.add_metric(lv, n)
    out.append(tests)

    if snap.stale is not None:
        stale = GaugeMetricFamily("mltrace_component_stale_runs", "Latest runs of the component that "
                                  "are stale now, by staleness rule", labels=comp + ["rule"])
        rows: dict[tuple[str, str], int] = {(c, r): 0 for c in snap.components() for r in STALE_RULES}
        rows.update(snap.stale)
        for lv, n in limiter.admit("mltrace_component_stale_runs", comp + ["rule"], sorted(rows.items())):
            stale.add_metric(lv, n)
        out.append(stale)

    if snap.flagged_total is not None:
        out.append(GaugeMetricFamily("mltrace_flagged_outputs", "Outputs flagged for review",
                                     value=snap.flagged_total))
        flagged = GaugeMetricFamily("mltrace_component_flagged_outputs",
                                    "Flagged outputs the component wrote", labels=comp)
        rows2 = {c: 0 for c in snap.components()}
        rows2.update(snap.flagged)
        for lv, n in limiter.admit("mltrace_component_flagged_outputs", comp,
                                   (([c], n) for c, n in sorted(rows2.items()))):
            flagged.add_metric(lv, n)
        out.append(flagged)

    out.extend(_output_families(snap, limiter))
    return out


def _output_families(snap: Snapshot, limiter: LabelLimiter) -> list[Metric]:
    ol = ["component", "output", "column"]
    doc = "of the output's values in the component's latest run that reported it"
    fams = {
        "count": GaugeMetricFamily("mltrace_output_count", f"Number {doc} (nulls included)", labels=ol),
        "nulls": GaugeMetricFamily("mltrace_output_nulls", f"Null / NaN count {doc}", labels=ol),
        "min": GaugeMetricFamily("mltrace_output_min", f"Smallest {doc}", labels=ol),
        "max": GaugeMetricFamily("mltrace_output_max", f"Largest {doc}", labels=ol),
        "mean": GaugeMetricFamily("mltrace_output_mean", f"Mean {doc}", labels=ol),
        "sum": GaugeMetricFamily("mltrace_output_sum", f"Sum {doc}", labels=ol),
        "last_start": GaugeMetricFamily("mltrace_output_last_run_timestamp_seconds",
                                        "Start time of the latest run that reported the output", labels=ol),
    }
    ql = ol + ["window", "quantile"]
    quant = GaugeMetricFamily("mltrace_output_quantile", "Quantiles of the output's values, from the "
                              "merged sketches of the newest runs (window = last_run | last_N_runs; "
                              "within 1% relative accuracy)", labels=ql)
    admitted = list(limiter.admit("mltrace_output", ol, sorted(snap.outputs.items())))
    for lv, s in admitted:
        for key, fam in fams.items():
            v = getattr(s, key)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                fam.add_metric(lv, v)
        for window, qs in sorted(s.quantiles.items()):
            for q, v in qs.items():
                quant.add_metric(lv + [window, _le(q)], v)
    return list(fams.values()) + [quant]


def _le(x: float) -> str:
    return repr(float(x)) if x != int(x) else f"{x:.1f}"
