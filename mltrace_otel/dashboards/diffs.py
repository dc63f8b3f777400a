"""Run to run: the next run of a component, and a run's diff against its previous run.

``next_run_id(store, run)`` finds the run a component ran after this one (the store gives each
run its ``previous_run``; the next one is asked for by time windows). ``page_diff`` is the
``/diff/RUN`` page: inputs and outputs side by side with their versions, and the code as a
unified diff (literal text in a fenced block, never HTML).

Imports dash, :mod:`.cards`, :mod:`.routes` and :mod:`mltrace_otel.store.models` only.
"""

from __future__ import annotations

import difflib
from datetime import timedelta

from dash import html

from mltrace_otel.dashboards.cards import (
    code_block,
    fmt_duration,
    fmt_time,
    pointer_link,
    run_link,
    short_version,
    status_badge,
)
from mltrace_otel.dashboards.routes import Route
from mltrace_otel.store.models import Pointer, Run

_WINDOW = 200
_SPANS = (timedelta(minutes=1), timedelta(hours=1), timedelta(days=1), timedelta(days=30),
          timedelta(days=365), None)


def next_run_id(store, run: Run) -> str:
    """The id of the component's run right after ``run`` (ordered by start, then id), or ""."""
    for span in _SPANS:
        until = run.start + span if span else None
        for _ in range(20):  # a full window may hide the oldest runs: narrow it to them
            window = store.history(run.component, _WINDOW, run.start, until)
            later = [r for r in window if r.id != run.id and (r.start, r.id) > (run.start, run.id)]
            if len(window) < _WINDOW or not later:
                break
            oldest = min(r.start for r in window)
            if until is not None and oldest >= until:
                break
            until = oldest
        if later:
            return min(later, key=lambda r: (r.start, r.id)).id
    return ""


def _change(before: Pointer | None, now: Pointer | None) -> str:
    if before is None:
        return "added"
    if now is None:
        return "removed"
    if not before.version or not now.version:
        return "version unknown"
    return "same" if before.version == now.version else "changed"


def _version(p: Pointer | None) -> html.Span | str:
    if p is None:
        return "—"
    return html.Span("@" + short_version(p.version), title=p.version, className="mono") if p.version else "?"


def pointer_diff(title: str, before: tuple[Pointer, ...], now: tuple[Pointer, ...]) -> html.Div:
    """One table of the pointers of two runs: name, previous version, this version, change."""
    old = {p.name: p for p in before}
    new = {p.name: p for p in now}
    names = [p.name for p in now] + [p.name for p in before if p.name not in new]
    rows = []
    for name in names:
        change = _change(old.get(name), new.get(name))
        rows.append(html.Tr([html.Td(pointer_link(name)), html.Td(_version(old.get(name))),
                             html.Td(_version(new.get(name))), html.Td(change, className=f"change {change}")],
                            className="same" if change == "same" else "differs"))
    head = html.Tr([html.Th(h) for h in ("name", "previous run", "this run", "change")])
    table = (html.Table([html.Thead(head), html.Tbody(rows)], className="runs compact diff-table",
                        id=f"diff-{title.lower()}") if rows
             else html.P("none in either run", className="muted", id=f"diff-{title.lower()}"))
    return html.Div([html.H3(title), table])


def code_diff(before: Run, now: Run) -> html.Div:
    """The code snapshots of two runs as a unified diff (or why there is none)."""
    if not before.code_snapshot and not now.code_snapshot:
        body: object = html.P("No code snapshot recorded for either run.", className="muted")
    elif before.code_snapshot == now.code_snapshot:
        body = html.P("Code unchanged.", className="muted", id="code-unchanged")
    else:
        lines = difflib.unified_diff(before.code_snapshot.splitlines(), now.code_snapshot.splitlines(),
                                     fromfile=f"previous run {before.id[:8]}",
                                     tofile=f"this run {now.id[:8]}", lineterm="")
        body = code_block("\n".join(lines), "diff")
    return html.Div([html.H3("Code"), body], id="diff-code")


def page_diff(route: Route, store) -> list:
    """``/diff/RUN``: what changed between a run and its component's previous run."""
    run = store.get_run(route.arg)
    title = html.H2(f"Diff of run {run.id}", id="page-title")
    if not run.previous_run:
        return [title, html.P(["No previous run of ", run.component, ": nothing to compare ",
                               run_link(run.id), " with."], className="muted", id="diff-none")]
    before = store.get_run(run.previous_run)
    gap = fmt_duration((run.start - before.start).total_seconds())

    def side(label: str, r: Run) -> html.Div:
        return html.Div([html.Span(label, className="label"), " ", run_link(r.id), " ", status_badge(r),
                         html.Span(f" {fmt_time(r.start)}", className="muted")])

    return [title,
            html.Div([side("previous run", before), side("this run", run),
                      html.Span(f"{gap} apart · component {run.component}", className="muted")],
                     className="diff-head"),
            pointer_diff("Inputs", before.inputs, run.inputs),
            pointer_diff("Outputs", before.outputs, run.outputs),
            code_diff(before, run)]
