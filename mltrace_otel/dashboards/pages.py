"""Pages of the triage UI: a :class:`~.routes.Route` plus the store in, Dash components out.

``render(route, store)`` is what the page callback runs; it asks the store only through its
public query methods (no SQL here) and turns :class:`~mltrace_otel.errors.MltraceError` into a
readable error panel. Every store string reaches the page as text (React escapes it).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, time, timedelta, timezone

from dash import dcc, html

from mltrace_otel.dashboards.cards import (
    flag_toggle,
    fmt_duration,
    fmt_time,
    link,
    pointer_link,
    run_card,
    run_link,
    short_version,
)
from mltrace_otel.dashboards.diffs import next_run_id, page_diff
from mltrace_otel.dashboards.graph import lineage_figure
from mltrace_otel.dashboards.outputs import output_charts
from mltrace_otel.dashboards.routes import ACTIONS, PAGES, Route
from mltrace_otel.dashboards.tables import (
    RunFilter,
    card_rows,
    filter_form,
    parse_time,
    runs_table,
    stale_text,
    status_text,
)
from mltrace_otel.errors import AmbiguousRunId, MltraceError, NotFound
from mltrace_otel.store.models import FlaggedOutput, Lineage, Run, RunPage

log = logging.getLogger(__name__)


def error_panel(err: Exception) -> html.Div:
    """An error as one readable box; ambiguous run ids list their candidates as links."""
    parts: list = [html.Strong(getattr(err, "message", str(err)))]
    hint = getattr(err, "hint", None)
    if hint:
        parts.append(html.P(hint, className="muted"))
    if isinstance(err, AmbiguousRunId):
        parts.append(html.Ul([html.Li(run_link(c)) for c in err.candidates[:50]]))
    return html.Div(parts, className="error", id="page-error")


def _title(text: str, *extra: object) -> html.H2:
    return html.H2([text, *extra], id="page-title")


def _parse_day(name: str, raw: str, end: bool) -> datetime | None:
    if not raw:
        return None
    try:
        t = datetime.fromisoformat(raw)
    except ValueError:
        raise MltraceError(f"{name}={raw!r} is not a date", hint="use YYYY-MM-DD") from None
    if len(raw) <= 10 and end:
        t = datetime.combine(t.date(), time.max)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def status_cell(run: Run) -> html.Td:
    """The status column, in the CLI's words (``mltrace review --json``): failed or ok
    (staleness has its own column)."""
    return html.Td(status_text(run), className="status " + ("fail" if run.failed else "ok"))


def stale_cell(run: Run) -> html.Td:
    """The stale column, as the CLI marks it: ``⚠ stale`` for a direct cause, ``⚠ stale
    (inherited)`` when only runs upstream are stale; every message in the tooltip."""
    return html.Td(stale_text(run), className="stale-cell", title="\n".join(run.stale))


_AGE = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_since(raw: str) -> datetime | None:
    """A review's ``since``: an age as the CLI takes it (``12h``, ``7d``) or a date."""
    r = raw.strip().lower()
    if len(r) > 1 and r[-1] in _AGE and r[:-1].replace(".", "", 1).isdigit():
        return datetime.now(timezone.utc) - timedelta(seconds=float(r[:-1]) * _AGE[r[-1]])
    return _parse_day("since", raw, False)


def _run_table(runs: list[Run], *, depth: dict[str, int] | None = None) -> html.Table:
    head = (["depth"] if depth is not None else []) + ["start", "component", "run", "duration",
                                                        "status", "stale"]
    rows = []
    for r in runs:
        cells = [html.Td(depth[r.id])] if depth is not None else []
        cells += [html.Td(fmt_time(r.start)), html.Td(link(Route("history", r.component), r.component)),
                  html.Td(run_link(r.id)), html.Td(fmt_duration(r.duration_s)),
                  status_cell(r), stale_cell(r)]
        rows.append(html.Tr(cells, className="failed" if r.failed else ""))
    return html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
                      className="runs")


def _recent_runs(f: RunFilter, store, limit: int, before: str | None) -> RunPage:
    """The rows of a Recent page (newest first) and where older matching runs start: one
    store query that searches every run (:meth:`~mltrace_otel.store.core.Store.recent_page`)."""
    page = store.recent_page(limit, before, component=f.component or None, status=f.status or None,
                             owner=f.owner or None, tag=f.tag or None,
                             since=parse_time("since", f.since), until=parse_time("until", f.until, end=True))
    return page


def page_recent(route: Route, store) -> list:
    limit = route.limit()
    before = route.param("before") or None
    f = RunFilter.from_route(route)
    page = _recent_runs(f, store, limit, before)
    runs = list(page.runs)
    comps = store.components()
    keep: dict[str, object] = {k: v for k, v in (("limit", route.param("limit")),
                              ("sort", "" if f.sort == "start" else f.sort),
                              ("order", "" if f.desc else "asc")) if v}
    keep["current"] = [[k, v] for k, v in f.params() if k not in ("sort", "order")]
    form = filter_form(f, [c.name for c in comps], [c.owner for c in comps if c.owner], store.tags(), keep)
    base = (("limit", str(limit)),) + f.params()
    nav: list = []
    if before:
        nav.append(link(Route("recent", params=base), "⇤ newest"))
    if page.more:
        nav.append(link(Route("recent", params=(("before", page.next_before),) + base), "older runs →",
                        id="older"))
    shown = f"{len(runs)} shown" + (" matching the filters" if f.active else "")
    body: list = [_title("Recent runs", html.Span(f" {shown}", className="muted")), form]
    if not runs:
        body.append(html.P("No stale runs among the runs looked at so far: older runs → looks further."
                           if page.more else "No runs match these filters." if f.active else
                           "No runs yet. Log a component run and it shows up here.",
                           className="muted", id="recent-empty"))
    else:
        body.append(runs_table(f.sorted(runs), "recent", table_id="runs-table", f=f,
                               base=Route("recent", params=(("limit", route.param("limit")),)
                                          if route.param("limit") else ())))
        body.append(html.P("Click a row to open its card; click a column name to sort this page.",
                           className="muted hint"))
    body.append(html.Div(nav, className="pager"))
    return body


# ISO times on the date axis at every zoom (the date under the first tick, as plotly does)
_ISO_TICKS = [
    {"dtickrange": [None, 1000], "value": "%H:%M:%S.%L\n%Y-%m-%d"},
    {"dtickrange": [1000, 60000], "value": "%H:%M:%S\n%Y-%m-%d"},
    {"dtickrange": [60000, 86400000], "value": "%H:%M\n%Y-%m-%d"},
    {"dtickrange": [86400000, None], "value": "%Y-%m-%d"},
]
_UNITS = (("ms", 0.001), ("s", 1.0), ("min", 60.0), ("h", 3600.0))


def duration_unit(seconds: list[float]) -> tuple[str, float]:
    """The unit that fits the longest duration (ms below 1 s, s below 2 min, min below 2 h)."""
    top = max(seconds, default=0.0)
    if top < 1:
        return _UNITS[0]
    if top < 120:
        return _UNITS[1]
    return _UNITS[2] if top < 7200 else _UNITS[3]


def _history_figure(runs: list[Run]) -> dict:
    """Durations over time (failed runs marked ✕, in a unit that fits) above runs and failures
    per day (or hour) as two series side by side, as a plain plotly figure dict."""
    ok = [r for r in reversed(runs) if not r.failed]
    bad = [r for r in reversed(runs) if r.failed]
    span = (runs[0].start - runs[-1].start).total_seconds() if runs else 0
    fmt, unit = ("%Y-%m-%d", "day") if span > 2 * 86400 else ("%Y-%m-%d %H:00", "hour")
    total = Counter(r.start.strftime(fmt) for r in runs)
    failed = Counter(r.start.strftime(fmt) for r in bad)
    buckets = sorted(total)
    name, scale = duration_unit([r.duration_s for r in runs])

    def iso(rs: list[Run]) -> list[str]:
        return [r.start.isoformat() for r in rs]

    def dur(rs: list[Run]) -> list[float]:
        return [round(r.duration_s / scale, 3) for r in rs]

    data = [
        {"type": "scatter", "x": iso(ok), "y": dur(ok), "mode": "lines+markers",
         "name": f"duration ({name})", "customdata": [r.id for r in ok], "line": {"color": "#3b7dd8"}},
        {"type": "scatter", "x": iso(bad), "y": dur(bad), "mode": "markers",
         "name": "failed run", "customdata": [r.id for r in bad],
         "marker": {"symbol": "x", "size": 12, "color": "#d64545"}},
        {"type": "bar", "x": buckets, "y": [total[b] for b in buckets],
         "name": f"runs per {unit}", "marker": {"color": "#8fb3e8"}, "xaxis": "x2", "yaxis": "y2"},
        {"type": "bar", "x": buckets, "y": [failed[b] for b in buckets], "name": f"failures per {unit}",
         "marker": {"color": "#d64545"}, "xaxis": "x2", "yaxis": "y2"},
    ]
    layout = {
        "height": 420, "margin": {"l": 60, "r": 20, "t": 30, "b": 40}, "barmode": "group",
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)", "font": {"color": "#7f8a9a"},
        "legend": {"orientation": "h", "y": 1.1},
        "xaxis": {"anchor": "y", "domain": [0, 1], "type": "date", "tickformatstops": _ISO_TICKS},
        "yaxis": {"anchor": "x", "domain": [0.4, 1], "title": {"text": f"duration ({name})"},
                  "rangemode": "tozero"},
        "xaxis2": {"anchor": "y2", "domain": [0, 1], "type": "category"},
        "yaxis2": {"anchor": "x2", "domain": [0, 0.27], "title": {"text": f"per {unit}"},
                   "rangemode": "tozero"},
    }
    return {"data": data, "layout": layout}


def page_history(route: Route, store) -> list:
    since_raw, until_raw = route.param("since"), route.param("until")
    since = _parse_day("since", since_raw, False)
    until = _parse_day("until", until_raw, True)
    limit = route.limit()
    runs = store.history(route.arg, limit, since, until)
    failures = sum(r.failed for r in runs)
    form = html.Div([
        # text, not type=date: a browser shows its locale's date form (mm/dd/yyyy), the UI is ISO
        html.Label(["since ", dcc.Input(id="hist-since", type="text", value=since_raw[:10],
                                        placeholder="YYYY-MM-DD", pattern=r"\d{4}-\d{2}-\d{2}")]),
        html.Label(["until ", dcc.Input(id="hist-until", type="text", value=until_raw[:10],
                                        placeholder="YYYY-MM-DD", pattern=r"\d{4}-\d{2}-\d{2}")]),
        html.Label(["runs ", dcc.Input(id="hist-limit", type="number", min=1, max=1000, value=limit)]),
        html.Button("Apply", id="hist-apply", className="button"),
        dcc.Store(id="hist-component", data=route.arg),
    ], className="range-form")
    body: list = [_title(f"History of {route.arg}"), form,
                  html.P(f"{len(runs)} run{'' if len(runs) == 1 else 's'}, {failures} failed"
                         + (" (newest shown; raise the run count for more)" if len(runs) == limit else ""),
                         className="muted")]
    if runs:
        body.append(dcc.Graph(id="history-chart", figure=_history_figure(runs),
                              config={"displaylogo": False}))
        body += output_charts(store, route.arg, runs, _ISO_TICKS)
        body.append(_run_table(runs))
    else:
        body.append(html.P("No runs of this component in that range.", className="muted"))
    return body


def review_coverage(store, run_id: str) -> tuple[tuple[int, int], tuple[str, ...]] | None:
    """A run's (count, flagged) coverage and why in the current review; None if not in it."""
    review = store.review(None)
    for e in review.entries:
        if e.run.id == run_id:
            return (e.count, len(review.flagged)), e.why
    return None


def page_inspect(route: Route, store) -> list:
    run = store.get_run(route.arg)
    found = review_coverage(store, run.id) if route.param("from") == "review" else None
    coverage, why = found if found else (None, ())
    return [_title(f"Run {run.id}"), run_card(run, scope="inspect", full=True, coverage=coverage, why=why,
                                              next_run=next_run_id(store, run))]


def lineage_view(lineage: Lineage) -> list:
    """Graph, run table and the card of the selected run (the walk's start until a click)."""
    depth = {n.run.id: n.depth for n in lineage.nodes}
    runs = [n.run for n in lineage.nodes]
    failed = sum(r.failed for r in runs)
    stale = sum(bool(r.stale) for r in runs)
    first = min(lineage.nodes, key=lambda n: n.depth).run if lineage.nodes else None
    body: list = [html.P(f"{len(runs)} runs, {len(lineage.edges)} edges, {failed} failed, {stale} stale. "
                         "Click a node to open its full card (with its code), an edge's label for "
                         "the outputs it carries.", className="muted")]
    body.append(dcc.Graph(id="lineage-graph", figure=lineage_figure(lineage),
                          config={"displaylogo": False, "scrollZoom": True}))
    # the walk's start, as the walk read it (no code snapshot: a click on a node reads the full run)
    selected = [run_card(first, scope="graph", full=True)] if first else []
    body.append(html.Div(selected, id="selected-card"))
    body.append(html.H3("Runs"))
    body.append(_run_table(runs, depth=depth))
    return body


def pointer_panel(store, data: list) -> html.Div:
    """What a click on an edge label (``["edge", producer, consumer, [pointer, ...]]``) or on the
    output node (``["output", name]``) of a lineage graph opens: the pointers, each with links to
    its trace and impact, and the runs on either side of the edge."""
    kind = data[0] if data else ""
    names = [str(n) for n in (data[3] if kind == "edge" and len(data) > 3 else data[1:2])]
    ends = [str(x) for x in data[1:3]] if kind == "edge" else []
    runs = {r.id: r for r in store.get_runs([e for e in ends if e])} if ends else {}

    def end(rid: str, fallback: str) -> object:
        r = runs.get(rid)
        return html.Span([r.component, " ", run_link(r.id, r.id[:8])]) if r else fallback

    head: list = [html.Strong("Output of this walk" if kind == "output" else "Edge")]
    if kind == "edge":
        head += [" ", end(ends[0], "this walk's input"), " → ", end(ends[1], "this walk's output")]
    items = [html.Li([pointer_link(n), html.Span(" · ", className="muted"),
                      link(Route("impact", n), "impact", className="to-impact")]) for n in names]
    return html.Div([html.Div(head), html.Ul(items, className="pointer-list")],
                    className="card pointer-panel", id="pointer-panel")


def _looks_like_run_id(s: str) -> bool:
    return 4 <= len(s) <= 16 and all(c in "0123456789abcdef" for c in s.lower())


def page_trace(route: Route, store) -> list:
    try:
        lineage = store.trace(route.arg)
        title = f"Trace of {route.arg}"
    except NotFound:
        if not _looks_like_run_id(route.arg):
            raise
        lineage = store.trace_run(route.arg)
        title = f"Trace of run {lineage.root}"
    return [_title(title), *lineage_view(lineage)]


def page_impact(route: Route, store) -> list:
    lineage = store.impact(route.arg)
    body: list = [_title(f"Impact of {route.arg}"), *lineage_view(lineage)]
    if lineage.outputs:
        body += [html.H3(f"Outputs downstream ({len(lineage.outputs)})"),
                 html.Ul([html.Li(pointer_link(p)) for p in lineage.outputs], className="pointer-list")]
    return body


def _component_list(components) -> html.Div:
    rows = [html.Tr([html.Td(link(Route("history", c.name), c.name)), html.Td(c.owner),
                     html.Td(c.description), html.Td(", ".join(c.tags)), html.Td(c.runs),
                     html.Td(fmt_time(c.last_run))]) for c in components]
    head = html.Tr([html.Th(h) for h in ("component", "owner", "description", "tags", "runs", "last run")])
    return html.Table([html.Thead(head), html.Tbody(rows)], className="runs")


def page_tag(route: Route, store) -> list:
    if not route.arg:
        tags = store.tags()
        return [_title("Tags"), html.Ul([html.Li(link(Route("tag", t), t)) for t in tags])
                if tags else html.P("No component has a tag.", className="muted")]
    comps = store.components(None, route.arg)
    return [_title(f"Components tagged {route.arg}"),
            _component_list(comps) if comps else html.P("No component has that tag.", className="muted")]


def page_components(route: Route, store) -> list:
    comps = store.components(route.param("owner") or None, route.param("tag") or None)
    return [_title("Components"), _component_list(comps)]


def page_review(route: Route, store) -> list:
    since = route.param("since") or None
    component = route.param("component") or None
    tag = route.param("tag") or None
    when = _parse_since(since) if since else None
    review = store.review(route.limit(), when, component, tag)
    n = len(review.flagged)
    flagged = []
    versions = review.flagged_versions or tuple(FlaggedOutput(p) for p in review.flagged)
    for i, f in enumerate(versions):
        key = f"review|{i}"
        where = []
        if f.run:
            where = [html.Span(f" @{short_version(f.version)}", className="muted mono version",
                               title=f.version) if f.version else None,
                     " written by ", run_link(f.run, f.run[:8])]
        flagged.append(html.Li([
            pointer_link(f.pointer), *where,
            *flag_toggle(f.pointer, f.run, key, True),
            html.Span(" (no run produced this)", className="muted") if not f.run else None,
        ]))
    scope = [f"{k} {v}" for k, v in review.scope.items()]
    body: list = [_title("Review"), html.H3(f"Flagged outputs ({n})"),
                  html.Ul(flagged, id="flagged-list") if flagged else
                  html.P("Nothing is flagged. Flag an output on a run card or type 'flag OUTPUT'.",
                         className="muted", id="flagged-list")]
    if review.unproduced:
        body.append(html.P(f"{len(review.unproduced)} flagged output(s) have no producing run.",
                           className="warning"))
    if scope:
        body.append(html.P("Only runs with " + ", ".join(scope) + ".", className="muted",
                           id="review-scope"))
    if review.entries:
        body.append(html.H3("Runs ranked by coverage, then evidence"))
        head = ("#", "coverage", "component", "run", "start", "status", "stale", "why")
        rows: list = []
        for k, e in enumerate(review.entries):
            cells = [html.Td(k + 1),
                     html.Td(f"{100 * e.coverage:.0f}% · {e.count}/{n}", className="coverage-pct",
                             title=e.coverage_text),
                     html.Td(link(Route("history", e.run.component), e.run.component)),
                     html.Td(run_link(e.run.id, None, **{"from": "review"}), className="mono"),
                     html.Td(fmt_time(e.run.start), className="nowrap"), status_cell(e.run),
                     stale_cell(e.run),
                     html.Td(html.Ul([html.Li(w) for w in e.why]) if e.why else "—", className="why")]
            rows += card_rows("review", e.run, cells, len(head))
        body.append(html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
                               className="runs compact", id="review-table"))
        body.append(html.P("Click a row to open the run's card.", className="muted hint"))
    elif scope and review.flagged:
        body.append(html.P("No run in that scope is in the flagged outputs' traces.", className="muted"))
    return body


def page_stale(route: Route, store) -> list:
    component = route.param("component") or None
    direct = route.param("direct") in ("1", "true")
    runs = store.stale_runs(component, route.limit(), direct)
    title = "Stale runs" + (f" of {component}" if component else "") + (" (direct causes)" if direct else "")
    if not runs:
        return [_title(title), html.P("No stale runs: every latest run used fresh inputs.",
                                      className="muted")]
    other = Route("stale", "", tuple((k, v) for k, v in (("component", component or ""),
                                                          ("direct", "" if direct else "1")) if v))
    toggle = link(other, "show inherited staleness too" if direct else "only direct causes",
                  id="stale-direct")
    return [_title(title, html.Span(f" {len(runs)}", className="muted")), html.P(toggle),
            _run_table(runs), *[run_card(r, scope="stale") for r in runs]]


def page_help(route: Route, store) -> list:
    body: list = [_title("Commands")]
    unknown = route.param("unknown")
    if unknown:
        body.append(html.Div(f"No page at {unknown}.", className="error", id="page-error"))
    rows = [html.Tr([html.Td(html.Code(usage.split(" — ")[0])), html.Td(usage.split(" — ")[1]),
                     html.Td(html.Code(f"/{cmd}") if cmd in PAGES else "")])
            for cmd, usage in {**PAGES, **ACTIONS}.items()]
    body.append(html.Table([html.Thead(html.Tr([html.Th("command"), html.Th("what it shows"),
                                                html.Th("URL")])), html.Tbody(rows)], className="runs"))
    body.append(html.P("Every page is a URL: reload it or share it. Quote names with spaces: "
                       "trace \"my file.csv\".", className="muted"))
    return body


_PAGES = {
    "recent": page_recent, "history": page_history, "inspect": page_inspect, "trace": page_trace,
    "impact": page_impact, "tag": page_tag, "components": page_components, "review": page_review,
    "stale": page_stale, "help": page_help, "diff": page_diff,
}


def render(route: Route, store) -> list:
    """The components of one page; store errors become an error panel, never a traceback."""
    try:
        return _PAGES[route.command](route, store)
    except MltraceError as e:
        return [_title(route.text), error_panel(e)]
    except Exception as e:  # a bug or an unexpected store failure: show it, log it
        log.exception("page %s failed", route.url)
        return [_title(route.text), error_panel(MltraceError(f"{type(e).__name__}: {e}",
                                                             hint="see the server log"))]
