"""Run cards: one run rendered as Dash components, every store string as plain text.

A card shows the run id, component, owner, start, duration, status, git commit and tags, inputs
and outputs (each a link to its trace; each output with a flag toggle), dependencies, test
results, the exception, staleness warnings, the code snapshot (highlighted by ``dcc.Markdown``
inside a code fence, never as HTML), editable notes, and coverage when reached from review.

Ids of interactive parts are pattern-matching dicts that carry a ``scope`` (so the same run
shown twice on one page never duplicates an id); a flag toggle carries the run whose version
it flags. The run's own card also says what changed since the component's previous run
(inputs, outputs, code); staleness warnings list direct causes, then inherited ones marked.
The callbacks live in :mod:`.app`.
Imports dash and :mod:`mltrace_otel.store.models` only.
"""

from __future__ import annotations

import re
from datetime import datetime

from dash import dcc, html

from mltrace_otel.dashboards.routes import Route
from mltrace_otel.store.models import Change, Pointer, Run


def fmt_time(t: datetime | None) -> str:
    """A UTC timestamp as ``YYYY-MM-DD HH:MM:SS UTC``."""
    return t.strftime("%Y-%m-%d %H:%M:%S UTC") if t else "—"


def fmt_duration(seconds: float) -> str:
    """A duration people read at a glance: 850 ms, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def link(route: Route, text: str, **kw: object) -> dcc.Link:
    """A client-side link to a page."""
    return dcc.Link(text, href=route.url, **kw)


def run_link(run_id: str, text: str | None = None, **params: str) -> dcc.Link:
    """A link to a run's card."""
    return link(Route("inspect", run_id, tuple(params.items())), text or run_id, className="run-id")


def pointer_link(name: str) -> dcc.Link:
    """A link to a pointer's trace."""
    return link(Route("trace", name), name, className="pointer")


def status_badge(run: Run) -> html.Span:
    """FAILED (status ERROR) or OK (status OK or UNSET: nothing raised) as a coloured badge."""
    label = "FAILED" if run.failed else "OK"
    return html.Span(label, className=f"badge status-{label.lower()}",
                     title=f"span status {run.status or 'UNSET'}")


def flag_toggle(pointer: str, run_id: str, key: str, flagged: bool) -> list:
    """A flag checkbox for the version of ``pointer`` that run ``run_id`` wrote ("" = the newest
    version), and the span its callback writes the outcome into."""
    return [
        dcc.Checklist(
            id={"type": "flag", "key": key, "p": pointer, "run": run_id},
            options=[{"label": " flagged", "value": "flagged"}],
            value=["flagged"] if flagged else [],
            inline=True, className="flag-toggle",
        ),
        html.Span(id={"type": "flag-status", "key": key, "p": pointer, "run": run_id}, className="muted"),
    ]


def short_version(version: str) -> str:
    """A content version's short form (8 characters, as the CLI shows it)."""
    return version[:8]


def _pointers(title: str, pointers: tuple[Pointer, ...], key: str, outputs: bool, full: bool,
              run_id: str = "") -> html.Div:
    items = []
    for i, p in enumerate(pointers):
        parts: list = [pointer_link(p.name), html.Span(p.type, className="badge type")]
        if p.version and full:
            parts.append(html.Span("@" + short_version(p.version), className="muted mono version",
                                   title=p.version))
        if outputs:
            parts += flag_toggle(p.name, run_id, f"{key}|{i}", p.flagged)
        elif p.flagged:
            parts.append(html.Span("flagged", className="badge flagged"))
        items.append(html.Li(parts))
    return html.Div([html.H4(title), html.Ul(items) if items else html.P("none", className="muted")],
                    className=f"io {title.lower()}")


def _fence(code: str, lang: str = "python") -> str:
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{code}\n{fence}"


def code_block(code: str, lang: str = "python") -> dcc.Markdown:
    """Source (python, or a unified ``diff``), highlighted, always literal (a fenced block; HTML
    is never allowed)."""
    return dcc.Markdown(_fence(code, lang), className="code", dangerously_allow_html=False)


def _tests(run: Run) -> html.Div | None:
    if not run.tests:
        return None
    rows = [html.Tr([html.Td(t.phase), html.Td(t.name), html.Td(t.method),
                     html.Td("passed" if t.passed else "FAILED",
                             className="pass" if t.passed else "fail"),
                     html.Td(t.message, className="mono")]) for t in run.tests]
    head = html.Tr([html.Th(h) for h in ("phase", "test", "method", "result", "message")])
    return html.Div([html.H4("Tests"), html.Table([html.Thead(head), html.Tbody(rows)])],
                    className="tests")


def _meta(run: Run) -> html.Dl:
    pairs: list[tuple[str, object]] = [
        ("owner", run.owner or "—"),
        ("start", fmt_time(run.start)),
        ("duration", fmt_duration(run.duration_s)),
        ("git commit", html.Span(run.git_hash[:12] or "—", title=run.git_hash, className="mono")),
        ("git tags", ", ".join(run.git_tags) or "—"),
        ("component tags", ", ".join(run.tags) or "—"),
    ]
    if run.code_function or run.code_file:
        pairs.append(("code", html.Span(f"{run.code_file} :: {run.code_function}", className="mono")))
    if run.service_name:
        pairs.append(("service", run.service_name))
    items: list = []
    for k, v in pairs:
        items += [html.Dt(k), html.Dd(v)]
    return html.Dl(items, className="meta")


def _meta_line(run: Run) -> html.Div:
    """The metadata as one line of text (list cards: few components keep long pages fast)."""
    parts = [f"owner {run.owner or '—'}", fmt_time(run.start), fmt_duration(run.duration_s),
             f"git {run.git_hash[:12] or '—'}"]
    if run.git_tags:
        parts.append("git tags " + ", ".join(run.git_tags))
    if run.tags:
        parts.append("tags " + ", ".join(run.tags))
    return html.Div("  ·  ".join(parts), className="meta-line")


def _notes(run: Run, key: str, full: bool) -> html.Div:
    view = html.Pre(run.notes, id={"type": "notes-view", "key": key, "run": run.id}, className="notes-view")
    if not full:  # list cards show the notes; they are edited on the run's own card
        return html.Div([html.Span("Notes ", className="label"), view,
                         run_link(run.id, "edit notes ›")], className="notes-box compact")
    return html.Div([
        html.H4("Notes"), view,
        dcc.Textarea(id={"type": "notes", "key": key, "run": run.id}, value=run.notes,
                     className="notes", rows=3, placeholder="add notes for this run…"),
        html.Button("Save notes", id={"type": "notes-save", "key": key, "run": run.id}, className="button"),
        html.Span(id={"type": "notes-status", "key": key, "run": run.id}, className="muted"),
    ], className="notes-box")


def stale_box(run: Run) -> html.Div:
    """The run's staleness warnings: direct causes, then inherited ones marked as such."""
    direct = [html.Li(r.message, className="stale-direct") for r in run.stale_direct]
    inherited = [html.Li(["inherited: ", r.message], className="stale-inherited")
                 for r in run.stale_reasons if r.inherited]
    if not run.stale_reasons:
        direct = [html.Li(m, className="stale-direct") for m in run.stale]
    return html.Div([html.Strong("Staleness warnings"), html.Ul(direct + inherited)],
                    className="warning")


def change_text(change: Change) -> str:
    """One change since the previous run, as the CLI words it."""
    name = f"{change.what} {change.name}".strip()
    if not change.previous:
        return f"new {name}"
    return f"{name} {short_version(change.previous)} → {short_version(change.current)}"


def _changes(run: Run) -> html.Div:
    if not run.previous_run:
        return html.Div([html.H4("Changed since the previous run"),
                         html.P("no previous run of this component", className="muted")],
                        className="changes")
    items = [html.Li(change_text(c)) for c in run.changes]
    return html.Div([
        html.H4(["Changed since the previous run ", run_link(run.previous_run, run.previous_run[:8])]),
        html.Ul(items) if items else html.P("nothing", className="muted")], className="changes")


def run_links(run: Run, next_run: str | None) -> html.Nav:
    """Where to go from a run: its trace and impact, the component's previous and next runs
    (``next_run`` "" when there is none, None when not looked up) and the diff against the
    previous run."""
    sep = html.Span(" · ", className="muted")
    items: list = [link(Route("trace", run.id), "trace of this run", className="to-trace"),
                   link(Route("impact", run.id), "impact of this run", className="to-impact")]
    if run.previous_run:
        items += [link(Route("inspect", run.previous_run), "← previous run", className="to-previous",
                       title=run.previous_run),
                  link(Route("diff", run.id), "diff with previous run", className="to-diff")]
    else:
        items.append(html.Span("first run of this component", className="muted"))
    if next_run:
        items.append(link(Route("inspect", next_run), "next run →", className="to-next", title=next_run))
    elif next_run == "":
        items.append(html.Span("latest run of this component", className="muted no-next"))
    out: list = []
    for i, item in enumerate(items):
        out += [sep, item] if i else [item]
    return html.Nav(out, className="run-links")


def run_card(run: Run, *, scope: str = "main", full: bool = False,
             coverage: tuple[int, int] | None = None, why: tuple[str, ...] = (),
             next_run: str | None = None) -> html.Div:
    """One run as a card.

    Args:
        run: the run (``code_snapshot`` is shown when present).
        scope: distinguishes cards of the same run on one page (part of every interactive id).
        full: the run's own card (inspect, a clicked graph node): every detail, the code open and
            the notes editor; otherwise a compact card for lists (metadata on one line, test
            summary, notes shown with a link to edit them), so pages of many cards stay fast.
        coverage: (count, flagged) when the card is reached from review.
        why: the review's evidence for this run (shown with the coverage).
        next_run: the component's next run ("" none; None not looked up), for the full card's
            links (trace, impact, previous/next run, diff against the previous run).
    """
    key = f"{scope}|{run.id}"
    header: list = [
        link(Route("history", run.component), run.component, className="component"),
        run_link(run.id), status_badge(run),
    ]
    if run.stale:
        header.append(html.Span("STALE", className="badge stale"))
    if coverage is not None:
        count, flagged = coverage
        pct = 100.0 * count / flagged if flagged else 0.0
        header.append(html.Span(f"coverage {pct:.0f}% ({count}/{flagged} flagged)",
                                className="badge coverage"))
    body: list = [html.Div(header, className="card-head"), _meta(run) if full else _meta_line(run)]
    if full:
        body.append(run_links(run, next_run))
    if coverage is not None:
        body.append(html.Div([html.Strong("Why it ranks here: "),
                              "; ".join(why) if why else "no evidence: coverage, then newest"],
                             className="review-why"))
    if run.description and full:
        body.append(html.P(run.description, className="muted"))
    if run.stale:
        body.append(stale_box(run))
    if run.exception or run.status_message:
        body.append(html.Div([html.Strong("Failure"),
                              html.Pre(run.exception or run.status_message)], className="error"))
    if full or run.inputs or run.outputs:
        body.append(html.Div([_pointers("Inputs", run.inputs, key, False, full),
                              _pointers("Outputs", run.outputs, key, True, full, run.id)],
                             className="io-row"))
    if full:
        body.append(_changes(run))
    if run.dependencies and full:
        body.append(html.Div([html.H4("Depends on"),
                              html.Span([run_link(d) for d in run.dependencies], className="deps")]))
    if full:
        tests = _tests(run)
        if tests is not None:
            body.append(tests)
    elif run.tests:
        failed = [f"{t.name}.{t.method}" for t in run.tests if not t.passed]
        body.append(html.Div(f"tests: {len(run.tests) - len(failed)} passed"
                             + (f", FAILED: {', '.join(failed)}" if failed else ""),
                             className="fail" if failed else "muted"))
    if run.code_snapshot:
        body.append(html.Details([html.Summary("Code snapshot"), code_block(run.code_snapshot)],
                                 open=full, className="code-snapshot"))
    body.append(_notes(run, key, full))
    return html.Div(body, className="card" + (" failed" if run.failed else "")
                    + (" stale" if run.stale else ""), id=f"card-{scope}-{run.id}")
