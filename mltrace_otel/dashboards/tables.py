"""Compact run tables with cards on demand, and the Recent page's filters and sorting.

A row of :func:`runs_table` opens the run's card in a row of its own below it when clicked
(and closes it on the next click): the callback lives in :mod:`.app` and reads the run then,
so a long table costs one row per run, not one card. :class:`RunFilter` is the Recent page's
filter (status, component, owner, tag, time range) and sort, read from and written to the URL,
so a filtered view survives a reload and can be shared; the store does the filtering
(:meth:`~mltrace_otel.store.core.Store.recent_page`, across every run).

Imports dash, :mod:`.cards`, :mod:`.routes` and :mod:`mltrace_otel.store.models` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dash import dcc, html

from mltrace_otel.dashboards.cards import fmt_duration, fmt_time, link, run_link
from mltrace_otel.dashboards.routes import Route
from mltrace_otel.errors import MltraceError
from mltrace_otel.shapes import parse_when
from mltrace_otel.store.models import RUN_STATUSES, Run

SORTS = {
    "start": lambda r: (r.start, r.id),
    "component": lambda r: (r.component, r.start),
    "duration": lambda r: (r.duration_s, r.start),
    "status": lambda r: (r.failed, r.start),
    "owner": lambda r: (r.owner, r.start),
}
"""Sortable columns of the Recent table and their keys."""

STATUSES = RUN_STATUSES
"""The status filter's values (as the CLI's JSON ``status``; ``stale`` picks stale runs)."""


def parse_time(name: str, raw: str, end: bool = False) -> datetime | None:
    """A since/until value from the URL (:func:`mltrace_otel.shapes.parse_when`: an ISO date or
    date-time, UTC unless it says otherwise, or an age such as ``7d``; a date alone as ``until``
    is the end of that day).

    Raises:
        MltraceError: not a date.
    """
    if not raw:
        return None
    try:
        return parse_when(raw, end=end)
    except ValueError:
        raise MltraceError(f"{name}={raw!r} is not a date",
                           hint="use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC), or an age like 7d") from None


@dataclass(frozen=True)
class RunFilter:
    """The Recent table's filter and sort, as URL parameters."""

    status: str = ""
    component: str = ""
    owner: str = ""
    tag: str = ""
    since: str = ""
    until: str = ""
    sort: str = "start"
    desc: bool = True

    @classmethod
    def from_route(cls, route: Route) -> RunFilter:
        """The filter a ``/recent`` URL names (unknown sort columns fall back on start).

        Raises:
            MltraceError: a status that is not one of :data:`STATUSES` (the CLI and the API
                refuse it too, rather than showing every run as if it matched).
        """
        sort = route.param("sort", "start")
        status = route.param("status").strip().lower()
        if status and status not in STATUSES:
            raise MltraceError(f"status={route.param('status')!r} is not one of " + ", ".join(STATUSES),
                               hint="use ok, failed or stale, or no status")
        return cls(status=status, component=route.param("component"),
                   owner=route.param("owner"), tag=route.param("tag"), since=route.param("since"),
                   until=route.param("until"), sort=sort if sort in SORTS else "start",
                   desc=route.param("order", "desc") != "asc")

    @property
    def active(self) -> bool:
        """Any filter set (sorting is not a filter)."""
        return any((self.status, self.component, self.owner, self.tag, self.since, self.until))

    def params(self, **change: str) -> tuple[tuple[str, str], ...]:
        """URL parameters of this filter with ``change`` applied ("" drops one)."""
        values = {"status": self.status, "component": self.component, "owner": self.owner,
                  "tag": self.tag, "since": self.since, "until": self.until,
                  "sort": "" if self.sort == "start" else self.sort,
                  "order": "" if self.desc else "asc"}
        values.update(change)
        if values.get("sort") == "start":
            values["sort"] = ""
        return tuple((k, v) for k, v in values.items() if v)

    def sorted(self, runs: list[Run]) -> list[Run]:
        """The runs in this filter's order."""
        return sorted(runs, key=SORTS[self.sort], reverse=self.desc)


def row_ids(key: str, run_id: str) -> tuple[dict, dict]:
    """The ids of a table row and of the card slot below it."""
    return ({"type": "run-row", "key": key, "run": run_id},
            {"type": "run-slot", "key": key, "run": run_id})


def status_text(run: Run) -> str:
    """``failed`` or ``ok``, the CLI's words (``mltrace review --json``'s ``status``)."""
    return "failed" if run.failed else "ok"


def stale_text(run: Run) -> str:
    """The stale column as the CLI marks it: ``⚠ stale``, ``⚠ stale (inherited)`` or ""."""
    if not run.stale:
        return ""
    return "⚠ stale (inherited)" if run.stale_inherited_only else "⚠ stale"


def card_rows(key: str, run: Run, cells: list, width: int, extra_class: str = "") -> list[html.Tr]:
    """A clickable row and the (empty) row its card opens in."""
    row_id, slot_id = row_ids(key, run.id)
    cls = "run-row" + (" failed" if run.failed else "") + (f" {extra_class}" if extra_class else "")
    return [html.Tr(cells, id=row_id, n_clicks=0, className=cls, title="click to open the run's card"),
            html.Tr(html.Td(id=slot_id, colSpan=width), className="card-slot")]


def _head(label: str, f: RunFilter | None, base: Route | None) -> html.Th:
    if f is None or base is None or label not in SORTS:
        return html.Th(label)
    desc = not f.desc if f.sort == label else label in ("start", "duration")
    arrow = (" ▼" if f.desc else " ▲") if f.sort == label else ""
    params = f.params(sort=label, order="" if desc else "asc")
    keep = tuple((k, v) for k, v in base.params if k == "limit")
    return html.Th(link(Route(base.command, base.arg, keep + params), label + arrow,
                        className="sort", id=f"sort-{label}"))


def runs_table(runs: list[Run], key: str, *, table_id: str, f: RunFilter | None = None,
               base: Route | None = None) -> html.Table:
    """A compact table of runs (start, component, run, duration, status, stale, owner, tags);
    a click on a row opens its card below it. With ``f`` and ``base`` the headers sort."""
    head = ["start", "component", "run", "duration", "status", "stale", "owner", "tags"]
    rows: list = []
    for r in runs:
        stale = stale_text(r)
        cells = [html.Td(fmt_time(r.start), className="nowrap"),
                 html.Td(link(Route("history", r.component), r.component)),
                 html.Td(run_link(r.id), className="mono"),
                 html.Td(fmt_duration(r.duration_s), className="num"),
                 html.Td(status_text(r), className="status " + ("fail" if r.failed else "ok")),
                 html.Td(stale, className="stale-cell", title="\n".join(r.stale)),
                 html.Td(r.owner), html.Td(", ".join(r.tags))]
        rows += card_rows(key, r, cells, len(head))
    return html.Table([html.Thead(html.Tr([_head(h, f, base) for h in head])), html.Tbody(rows)],
                      className="runs compact", id=table_id)


def filter_form(f: RunFilter, components: list[str], owners: list[str], tags: list[str],
                keep: dict[str, object]) -> html.Div:
    """The Recent page's filters; changing one rewrites the URL (the callback is in :mod:`.app`),
    keeping ``keep`` (sort, order, limit) and starting again from the newest run."""
    def drop(name: str, value: str, options: list[str]) -> html.Label:
        opts = sorted(set(options) | ({value} if value else set()))
        return html.Label([name, dcc.Dropdown(
            id=f"rf-{name}", options=[{"label": o, "value": o} for o in opts], value=value or None,
            placeholder="any", clearable=True, className="filter-drop")])

    return html.Div([
        html.Label(["status", dcc.RadioItems(
            id="rf-status", options=[{"label": s, "value": s} for s in ("any", *STATUSES)],
            value=f.status or "any", inline=True, className="radio")]),
        drop("component", f.component, components),
        drop("owner", f.owner, owners),
        drop("tag", f.tag, tags),
        html.Label(["since", dcc.Input(id="rf-since", type="text", value=f.since, debounce=True,
                                       placeholder="YYYY-MM-DD", className="date")]),
        html.Label(["until", dcc.Input(id="rf-until", type="text", value=f.until, debounce=True,
                                       placeholder="YYYY-MM-DD", className="date")]),
        dcc.Store(id="rf-keep", data=keep),
        link(Route("recent"), "clear", id="rf-clear") if f.active else None,
    ], className="filters", id="recent-filters")
