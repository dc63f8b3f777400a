"""The history page's output charts: one chart per numeric output (or DataFrame column) of a
component, one point per run, from the ``mltrace.output.stats`` events the SDK records.

Each chart plots the run's mean and, when the recorded sketches give quantiles, p50 and p95
(clamped to the run's min/max, as ``/metrics`` does); without a readable sketch it plots mean,
min and max. x = run start (ISO, UTC); the y axis has no unit (the SDK records none).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from dash import dcc, html

from mltrace_otel.sdk.stats import Sketch
from mltrace_otel.store import metrics_queries as mq
from mltrace_otel.store.models import Run

MAX_CHARTS = 12
"""Most output charts on one history page (outputs and columns, by name)."""
_CACHE_SIZE = 64
_cache: OrderedDict[tuple, list[mq.OutputStatsRow]] = OrderedDict()
_cache_lock = threading.Lock()
_COLORS = {"mean": "#3b7dd8", "p50": "#2f9e6e", "p95": "#d68a1f", "min": "#8f9bb3", "max": "#8f9bb3"}


@dataclass
class OutputSeries:
    """One output (or column) of a component over its runs, oldest first."""

    output: str
    column: str
    x: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    stats: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"{self.output} · {self.column}" if self.column else self.output


def _quantiles(row: mq.OutputStatsRow) -> tuple[float | None, float | None] | None:
    """(p50, p95) of a row's sketch clamped to its min/max; None when the sketch is unreadable."""
    try:
        sketch = Sketch.from_json(row.sketch)
    except (ValueError, TypeError, AttributeError, KeyError):
        return None
    if sketch.count == 0:
        return None
    out = []
    for q in sketch.quantiles((0.5, 0.95)):
        if q is not None and row.min is not None:
            q = max(q, row.min)
        if q is not None and row.max is not None:
            q = min(q, row.max)
        out.append(q)
    return out[0], out[1]


def _stats_rows(store, component: str, runs: Sequence[Run]) -> list[mq.OutputStatsRow]:
    """The runs' output-stats rows, from a small cache: a run's events come in its one span, so
    the rows of a set of stored runs never change (re-applying a date range reads nothing)."""
    key = (id(store), getattr(store, "database", ""), component, tuple(sorted(r.id for r in runs)))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    lo = min(r.start for r in runs) - timedelta(seconds=1)
    hi = max(r.start for r in runs) + timedelta(seconds=1)
    rows = mq.run_output_stats(store, component, [r.id for r in runs],
                               int(lo.timestamp() * 1e9), int(hi.timestamp() * 1e9))
    with _cache_lock:
        _cache[key] = rows
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return rows


def output_series(store, component: str, runs: Sequence[Run]) -> list[OutputSeries]:
    """The series of ``runs``' numeric outputs (one query), sorted by output and column."""
    if not runs:
        return []
    rows = _stats_rows(store, component, runs)
    by_id = {r.id: r for r in runs}
    grouped: dict[tuple[str, str], list[tuple[mq.OutputStatsRow, tuple | None]]] = {}
    for row in rows:
        if row.mean is None and row.count == row.nulls:
            continue  # every value null: nothing to plot
        grouped.setdefault((row.output, row.column), []).append((row, _quantiles(row)))
    out = []
    for (name, column), items in sorted(grouped.items()):
        items.sort(key=lambda it: (by_id[it[0].run_id].start if it[0].run_id in by_id else None,
                                   it[0].start))
        s = OutputSeries(name, column)
        with_q = any(q is not None for _, q in items)
        keys = ("mean", "p50", "p95") if with_q else ("mean", "min", "max")
        s.stats = {k: [] for k in keys}
        for row, q in items:
            run = by_id.get(row.run_id)
            s.x.append(run.start.isoformat() if run else "")
            s.runs.append(row.run_id)
            s.stats["mean"].append(row.mean)
            if with_q:
                s.stats["p50"].append(q[0] if q else None)
                s.stats["p95"].append(q[1] if q else None)
            else:
                s.stats["min"].append(row.min)
                s.stats["max"].append(row.max)
        out.append(s)
    return out


def output_figure(s: OutputSeries, iso_ticks: list[dict]) -> dict:
    """One output's chart as a plain plotly figure dict (mean, p50/p95 or min/max per run)."""
    data = [{"type": "scatter", "x": s.x, "y": ys, "name": k, "customdata": s.runs,
             "mode": "lines+markers", "connectgaps": False,
             "line": {"color": _COLORS[k], "dash": "solid" if k == "mean" else "dot"},
             "hovertemplate": f"{k} %{{y}}<br>%{{x}}<br>run %{{customdata}}<extra></extra>"}
            for k, ys in s.stats.items()]
    layout = {
        "height": 260, "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
        "title": {"text": s.title, "x": 0, "xanchor": "left", "font": {"size": 14}},
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)", "font": {"color": "#7f8a9a"},
        "legend": {"orientation": "h", "y": 1.2, "x": 0.35, "xanchor": "left", "yanchor": "bottom"},
        "xaxis": {"type": "date", "tickformatstops": iso_ticks},
        "yaxis": {"automargin": True},
    }
    return {"data": data, "layout": layout}


def output_charts(store, component: str, runs: Sequence[Run], iso_ticks: list[dict]) -> list:
    """The history page's section of output charts ([] when no run recorded a numeric output)."""
    series = output_series(store, component, runs)
    if not series:
        return []
    shown = series[:MAX_CHARTS]
    body: list = [html.H3("Outputs over time", id="outputs-title"),
                  html.P("One point per run: the mean of each numeric output and, from its "
                         "recorded quantile sketch, p50 and p95 (mean, min and max when no sketch "
                         "is readable)." + (f" The first {MAX_CHARTS} of {len(series)} shown."
                                            if len(series) > MAX_CHARTS else ""),
                         className="muted")]
    body += [dcc.Graph(id=f"output-chart-{i}", className="output-chart",
                       figure=output_figure(s, iso_ticks), config={"displaylogo": False})
             for i, s in enumerate(shown)]
    return body
