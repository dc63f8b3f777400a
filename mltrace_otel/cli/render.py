"""Human output of the CLI: durations, local times, short ids, rich tables and trees.

Pure formatting over the store's result types (:mod:`mltrace_otel.store.models`); no queries.
Imported by command bodies only (it loads rich), so ``mltrace --help`` stays fast.

Every user string (component names, owners, descriptions, tags, pointers, notes, test names and
messages, exceptions, code) reaches the terminal through :func:`clean` (for rich ``Text``) or
:func:`escape` (for rich markup strings): control characters and bidi controls are shown as
Python escapes (``\\x1b``, ``\\u202e``), never written raw, and rich markup in them is not
interpreted. :func:`json_safe` does the same for ``--json`` output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from rich.markup import escape as _markup_escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from mltrace_otel.cli.fit import Cell, Column, Item, Piece, fit_pieces, fit_table, layout

if TYPE_CHECKING:  # pragma: no cover
    from mltrace_otel.store.models import Change, ComponentInfo, Lineage, Pointer, Review, Run

SHORT_ID = 8
"""Run ids are shown this many characters long in human output (full in --json)."""

# C0 controls, DEL, C1 controls (U+0080-U+009F: 0x9B is a one-byte CSI to some terminals) and
# Unicode's Bidi_Control characters (U+061C, U+200E/F, the embeddings and overrides U+202A-E,
# the isolates U+2066-9), which can make one name display as another ("Trojan Source").
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# The same, less newline and tab: for fields that legitimately hold several lines.
_UNSAFE_MULTILINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# What json.dumps(ensure_ascii=False) leaves raw (it escapes U+0000-U+001F itself).
_UNSAFE_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape_char(m: re.Match[str]) -> str:
    ch = m.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: object, multiline: bool = False) -> str:
    """``text`` safe to write to a terminal: control and bidi characters as Python escapes.

    A name like ``"\\x1b[2J"`` would clear the user's screen, ``"\\x1b]0;t\\x07"`` retitle the
    window, ``"\\u202e"`` display a different name; shown escaped, the user still sees what is
    there. ``multiline`` keeps newline and tab, for fields that hold several lines (notes,
    descriptions, messages, exceptions, code; ``\\r\\n`` becomes ``\\n``); every other field is one
    line, where a newline or tab would break the table, so they are escaped too. The result
    is plain text: pass it to rich as ``Text``, or through :func:`escape` as markup.
    """
    s = text if isinstance(text, str) else str(text)
    if multiline:
        return _UNSAFE_MULTILINE.sub(_escape_char, s.replace("\r\n", "\n"))
    return _UNSAFE.sub(_escape_char, s)


def escape(text: object, multiline: bool = False) -> str:
    """``text`` for a rich markup string: :func:`clean`, then ``[`` escaped so that ``[bold]``
    in a user string is shown, not interpreted."""
    return _markup_escape(clean(text, multiline))


def json_safe(dumped: str) -> str:
    """JSON text (``json.dumps(..., ensure_ascii=False)``) with DEL, C1 and bidi controls as
    ``\\uXXXX``: json.dumps escapes only U+0000-U+001F, and those characters can only occur
    inside JSON strings, where ``\\uXXXX`` means the same character (the data is unchanged)."""
    return _UNSAFE_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", dumped)


def format_duration(seconds: float) -> str:
    """A duration as people say it: 0.25 → "250ms", 2.5 → "2.5s", 90 → "1m 30s",
    3725 → "1h 2m 5s", 93600 → "1d 2h". Negative values (clock skew) print as 0ms."""
    if seconds < 0:
        seconds = 0.0
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 10:
        return f"{seconds:.1f}".rstrip("0").rstrip(".") + "s"
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        parts = [(days, "d"), (hours, "h"), (minutes, "m")]
    else:
        parts = [(hours, "h"), (minutes, "m"), (secs, "s")]
    while parts and parts[0][0] == 0:
        parts.pop(0)
    while len(parts) > 1 and parts[-1][0] == 0:
        parts.pop()
    return " ".join(f"{n}{unit}" for n, unit in parts)


def format_time(dt: datetime | None) -> str:
    """A datetime in the machine's local time with the zone name, e.g. 2026-11-28 07:05:02 CET.
    Naive datetimes are taken as UTC (the store's convention)."""
    if dt is None:
        return "-"
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def short_id(run_id: str) -> str:
    """The first 8 characters of a run id (a unique prefix almost always; full ids in --json)."""
    return run_id[:SHORT_ID]


def short_version(version: str) -> str:
    """A content version's short form (8 characters; full in --json), "" when unknown."""
    return version[:SHORT_ID]


def _status(run: Run) -> Text:
    """failed, stale (a direct cause), stale (inherited) (only runs upstream are stale: walks
    carry those, lists do not), or ok -- the UI's words."""
    if run.failed:
        return Text("failed", style="bold red")
    if run.stale:
        return Text("stale (inherited)" if run.stale_inherited_only else "stale", style="yellow")
    return Text("ok", style="green")


def _pointers(names: Iterable[str], flagged: Iterable[bool] = (), versions: Iterable[str] = ()) -> str:
    out = []
    flags = list(flagged)
    vers = list(versions)
    for i, name in enumerate(names):
        mark = " [red]⚑[/red]" if i < len(flags) and flags[i] else ""
        ver = f" [dim]@{escape(short_version(vers[i]))}[/dim]" if i < len(vers) and vers[i] else ""
        out.append(escape(name) + ver + mark)
    return ", ".join(out)


def change_text(change: Change) -> str:
    """One change since the previous run, e.g. ``input data/raw.csv 1a2b3c4d → 5e6f7a8b``,
    ``new input rules.yaml``, ``code 0f1e2d3c → 4b5a6978`` (plain text: pass through
    :func:`clean`)."""
    name = f"{change.what} {change.name}".strip()
    if not change.previous:
        return f"new {name}"
    return f"{name} {short_version(change.previous)} → {short_version(change.current)}"


def stale_lines(run: Run, direct: str = "⚠ ", inherited: str = "↳ inherited: ") -> list[Text]:
    """The run's staleness reasons, one line each: direct causes first (``direct`` prefix),
    then inherited ones marked as such (``inherited`` prefix)."""
    out = []
    for r in run.stale_reasons or ():
        if r.inherited:
            out.append(Text(f"{inherited}{clean(r.message)}", style="dim yellow"))
        else:
            out.append(Text(f"{direct}{clean(r.message)}", style="yellow"))
    if not run.stale_reasons:  # runs built without reasons: the messages alone
        out += [Text(f"{direct}{clean(m)}", style="yellow") for m in run.stale]
    return out


def _width(width: int | None) -> int:
    if width is not None:
        return width
    from rich.console import Console

    return Console().width


def _names(names: Iterable[str], flagged: Iterable[bool] = ()) -> Cell:
    flags = list(flagged)
    return Cell.names([Item(clean(n), tail=((" ⚑", "red"),) if i < len(flags) and flags[i] else ())
                       for i, n in enumerate(names)])


def _status_cell(run: Run) -> Cell:
    status = _status(run)
    return Cell.words(status.plain, str(status.style))  # "stale (inherited)" wraps, never cut


RUN_COLUMNS = (
    Column("run"), Column("component", grow=1, whole=True, cap=24),
    Column("start", drop=3, grow=4, whole=True),
    Column("duration", drop=5, grow=5, justify="right", whole=True), Column("status", grow=1, whole=True),
    Column("inputs", drop=4, grow=3, floor=16, weight=2),
    Column("outputs", drop=2, grow=2, floor=16, weight=2),
)
"""runs_table's columns: when narrow, duration goes first, then inputs, start and outputs."""


def runs_table(runs: Sequence[Run], title: str | None = None, width: int | None = None) -> Table:
    """Runs as a table: id, component, start (local), duration, status, inputs, outputs, fitted
    to ``width`` (the terminal's) without splitting a word (:mod:`~mltrace_otel.cli.fit`).
    Failed runs are red; flagged outputs carry a red ⚑."""
    rows = [[Cell.one(short_id(run.id)), Cell.words(clean(run.component)), Cell.words(format_time(run.start)),
             Cell.words(format_duration(run.duration_s)), _status_cell(run),
             _names(p.name for p in run.inputs),
             _names((p.name for p in run.outputs), (p.flagged for p in run.outputs))]
            for run in runs]
    return fit_table(RUN_COLUMNS, rows, _width(width), title=title,
                     row_styles=["red" if run.failed else None for run in runs])


_DETAIL_KEY = "changed since the previous run"
"""The widest key of inspect's panel."""


def run_detail(run: Run, width: int | None = None) -> list[object]:
    """Everything about one run (inspect): metadata table, tests, staleness, notes, code;
    names wrap after path separators (never cut: inspect shows every character)."""
    from rich.panel import Panel
    from rich.syntax import Syntax

    # the values wrap after spaces, between names and after path separators, never inside a
    # word unless it is wider than the panel (inspect shows every character: folded, not cut)
    value_w = _width(width) - 4 - len(_DETAIL_KEY) - 2

    def words(text: str) -> Text | str:
        return layout(Cell.words(clean(text)), value_w, shorten=False) if value_w >= 20 else escape(text)

    def names(items: Iterable[str]) -> Text | str:
        items = list(items)
        return layout(_names(items), value_w, shorten=False) if value_w >= 20 else escape(", ".join(items))

    def pointers(ps: Sequence[Pointer]) -> Text | str:
        if value_w < 20:
            return _pointers((p.name for p in ps), (p.flagged for p in ps), (p.version for p in ps))
        return layout(Cell.names([Item(clean(p.name), tail=(
            *(((f" @{clean(short_version(p.version))}", "dim"),) if p.version else ()),
            *(((" ⚑", "red"),) if p.flagged else ()))) for p in ps]), value_w, shorten=False)

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    status = _status(run)
    if run.failed and run.status_message:
        status.append(f"  {clean(run.status_message, multiline=True)}", style="red")
    rows: list[tuple[str, object]] = [
        ("run id", escape(run.id)),
        ("component", words(run.component)),
        ("status", status),
        ("start", format_time(run.start)),
        ("end", format_time(run.end)),
        ("duration", format_duration(run.duration_s)),
        ("owner", escape(run.owner) or "-"),
        ("description", escape(run.description, multiline=True) or "-"),
        ("tags", names(run.tags) if run.tags else "-"),
        ("git commit", escape(run.git_hash) or "-"),
        ("git tags", names(run.git_tags) if run.git_tags else "-"),
        ("code", words(f"{run.code_file} {run.code_function}".strip()) or "-"),
        ("service", escape(run.service_name) or "-"),
        ("trace id", escape(run.trace_id)),
        ("inputs", pointers(run.inputs) if run.inputs else "-"),
        ("outputs", pointers(run.outputs) if run.outputs else "-"),
        ("code hash", escape(short_version(run.code_hash)) or "-"),
        ("depends on", ", ".join(short_id(d) for d in run.dependencies) or "-"),
        ("previous run", short_id(run.previous_run) or "-"),
        ("changed since the previous run",
         words("; ".join(change_text(c) for c in run.changes)) if run.changes
         else ("nothing" if run.previous_run else "-")),
        ("notes", escape(run.notes, multiline=True) or "-"),
    ]
    for k, v in rows:
        grid.add_row(k, v)
    title = Text.assemble((clean(run.component), "bold"), "  ", (clean(short_id(run.id)), "cyan"))
    border = "red" if run.failed else ("yellow" if run.stale else "blue")
    parts: list[object] = [Panel(grid, title=title, title_align="left", border_style=border)]
    if run.tests:
        tests = Table(title="tests", header_style="bold")
        for col in ("test", "method", "phase", "result", "message"):
            tests.add_column(col, overflow="fold")
        for t in run.tests:
            result = Text("passed", style="green") if t.passed else Text("FAILED", style="bold red")
            tests.add_row(escape(t.name), escape(t.method), escape(t.phase), result,
                          escape(t.message, multiline=True))
        parts.append(tests)
    parts += stale_lines(run, "⚠ stale: ", "↳ stale (inherited): ")
    if run.exception:
        parts.append(Panel(Text(clean(run.exception, multiline=True), style="red"), title="exception",
                           border_style="red"))
    if run.code_snapshot:
        parts.append(Panel(Syntax(clean(run.code_snapshot, multiline=True), "python", line_numbers=False,
                                  word_wrap=True),
                           title="code snapshot", title_align="left"))
    return parts


def _run_label(run: Run, via: str | None = None, arrow: str = "←") -> list[Piece]:
    label: list[Piece] = []
    if via:
        label += [(f"{clean(via)} ", "magenta"), (f"{arrow} ", "dim")]
    label.append((clean(run.component), "bold red" if run.failed else "bold"))
    label.append((f"  {short_id(run.id)}", "cyan"))
    label.append((f"  {format_time(run.start)}  {format_duration(run.duration_s)}", "dim"))
    if run.failed:
        label.append(("  ✗ failed", "bold red"))
        if run.status_message:
            label.append((f": {clean(run.status_message, multiline=True)}", "red"))
    return label


TREE_INDENT = 4
"""Cells a rich Tree indents each level by (its guide, ``├── ``)."""

_MIN_LABEL = 24
"""The narrowest a deeply indented label is laid out (rich crops what is past the edge)."""


def lineage_tree(lineage: Lineage, max_depth: int = 50, width: int | None = None) -> Tree:
    """A trace (upstream) or impact (downstream) walk as a rich Tree, fitted to ``width`` (the
    terminal's): each label wraps at spaces, long names after path separators and shortened in
    the middle with ``…`` (:func:`~mltrace_otel.cli.fit.fit_pieces`), never inside a word.

    Each run is expanded once; a run reached again (a diamond) shows as a one-line reference.
    Staleness warnings are inline under their run, failed runs are marked in red. Runs more
    than ``max_depth`` levels down are counted, not drawn (the terminal would be all indent).
    """
    total = _width(width)

    def fit(pieces: list[Piece], indent: int) -> Text:
        return fit_pieces(pieces, max(total - indent, _MIN_LABEL))

    def fit_text(text: Text, indent: int) -> Text:
        return fit([(text.plain, str(text.style) or None)], indent)

    upstream = lineage.direction == "trace"
    runs = {n.run.id: n.run for n in lineage.nodes}
    children: dict[str, list[tuple[str, str]]] = {}
    for e in lineage.edges:
        parent, child = (e.consumer, e.producer) if upstream else (e.producer, e.consumer)
        if parent in runs and child in runs:
            via = f"{e.pointer} @{short_version(e.version)}" if e.version else e.pointer
            children.setdefault(parent, []).append((child, via))
    for kids in children.values():
        kids.sort(key=lambda kv: (runs[kv[0]].start, kv[1]), reverse=True)

    heading = "produced by" if upstream else "feeds"
    arrow = "←" if upstream else "→"  # pointer ← the run that wrote it / pointer → the run that read it
    if any(n.run.id == lineage.root for n in lineage.nodes):  # walked from a run, not a pointer
        title = fit([("run ", "dim"), (short_id(lineage.root), "bold cyan"),
                     ("  upstream" if upstream else "  downstream", "dim")], 0)
    else:
        title = fit([(clean(lineage.root), "bold magenta"), (f"  {heading}", "dim")], 0)
    tree = Tree(title)
    shown: set[str] = set()
    # depth-first, each run expanded at its first visit; iterative, so a long chain (a model
    # retrained daily from yesterday's model) cannot hit the recursion limit
    roots = [n.run.id for n in lineage.nodes if n.depth == 0]
    reached, todo = set(roots), list(roots)
    while todo:
        for child, _ in children.get(todo.pop(), []):
            if child not in reached:
                reached.add(child)
                todo.append(child)
    roots += [n.run.id for n in lineage.nodes if n.run.id not in reached]  # never drop a run
    stack: list[tuple[Tree, str, str | None, int]] = [(tree, rid, None, 0) for rid in reversed(roots)]
    while stack:
        branch, run_id, via, level = stack.pop()
        run = runs[run_id]
        here, below = TREE_INDENT * (level + 1), TREE_INDENT * (level + 2)
        if run_id in shown:
            ref: list[Piece] = [(f"{clean(via)} {arrow} ", "magenta")] if via else []
            ref.append((f"{clean(run.component)}  {short_id(run_id)}  (shown above)", "dim"))
            branch.add(fit(ref, here))
            continue
        if level >= max_depth:
            continue
        shown.add(run_id)
        node = branch.add(fit(_run_label(run, via, arrow), here))
        for line in stale_lines(run):
            node.add(fit_text(line, below))
        for t in run.tests:
            if not t.passed:
                node.add(fit([(f"✗ test {clean(t.name)}.{clean(t.method)} failed: "
                               f"{clean(t.message, multiline=True)}", "red")], below))
        if not upstream:
            outs = [p.name for p in run.outputs]
            if outs:
                node.add(fit([("writes " + ", ".join(clean(o) for o in outs), "magenta")], below))
        for child, pointer in reversed(children.get(run_id, [])):
            stack.append((node, child, pointer, level + 1))
    hidden = len(runs) - len(shown)
    if hidden:
        tree.add(fit([(f"… {hidden} more run(s) deeper than {max_depth} levels (all of them are in --json)",
                       "dim")], TREE_INDENT))
    return tree


COMPONENT_COLUMNS = (
    Column("component", cap=24), Column("owner", drop=2, grow=1, cap=16),
    Column("tags", drop=3, grow=2, cap=24),
    Column("runs", justify="right"), Column("last run", drop=4, grow=4, whole=True),
    Column("description", drop=5, grow=3, floor=16, weight=2, whole=True),
)
"""components_table's columns: when narrow, description goes first, then last run, tags, owner."""


def components_table(components: Sequence[ComponentInfo], width: int | None = None) -> Table:
    """Components: name, owner, tags, number of runs, last run (local time), description,
    fitted to ``width`` without splitting a word."""
    rows = [[Cell.words(clean(c.name)), Cell.words(clean(c.owner) or "-"),
             _names(c.tags) if c.tags else Cell.one("-"), Cell.one(str(c.runs)),
             Cell.words(format_time(c.last_run)), Cell.words(clean(c.description, multiline=True))]
            for c in components]
    return fit_table(COMPONENT_COLUMNS, rows, _width(width))


def coverage_line(count: int, coverage: float) -> str:
    """mltrace's review wording for one run (the long form, kept in --json and the API)."""
    from mltrace_otel.store.review import coverage_sentence

    return coverage_sentence(count, coverage)


def coverage_short(count: int, flagged: int) -> str:
    """The review's coverage as one short figure, as the UI shows it: ``44% · 4/9``."""
    pct = 100.0 * count / flagged if flagged else 0.0
    return f"{pct:.0f}% · {count}/{flagged}"


REVIEW_COLUMNS = (
    Column("#", drop=4), Column("run"), Column("component", grow=1, whole=True, cap=24),
    Column("start", drop=5, grow=4, whole=True),
    Column("status", grow=1, whole=True), Column("coverage", drop=3),
    Column("why", grow=2, floor=20, weight=2, whole=True),
)
"""review_table's columns: when narrow, start goes first, then the rank, then coverage."""


def review_table(review: Review, width: int | None = None) -> Table:
    """Review entries ranked by coverage, then evidence: run, component, start, status,
    coverage (short figure) and why the run ranks where it does, fitted to ``width``."""
    n = len(review.flagged)
    rows = []
    for i, e in enumerate(review.entries, 1):
        why = Cell.words("\n".join(clean(w) for w in e.why), "yellow") if e.why else Cell.one("—", "dim")
        rows.append([Cell.one(str(i)), Cell.one(short_id(e.run.id)), Cell.words(clean(e.run.component)),
                     Cell.words(format_time(e.run.start)), _status_cell(e.run),
                     Cell.one(coverage_short(e.count, n)), why])
    return fit_table(REVIEW_COLUMNS, rows, _width(width),
                     row_styles=["red" if e.run.failed else None for e in review.entries])


STALE_COLUMNS = (Column("run"), Column("component", grow=1, whole=True, cap=24),
                 Column("start", drop=2, grow=3, whole=True),
                 Column("why", grow=2, floor=20, weight=2, whole=True))
"""stale_table's columns: when narrow, start goes."""


def stale_table(runs: Sequence[Run], width: int | None = None) -> Table:
    """Stale runs with each staleness message on its own line, inherited ones marked, fitted to
    ``width`` without splitting a word."""
    rows = []
    for run in runs:
        why = Cell([])
        for line in stale_lines(run):
            style = str(line.style)
            why.lines += Cell.words(line.plain, style).lines
        rows.append([Cell.one(short_id(run.id)), Cell.words(clean(run.component)),
                     Cell.words(format_time(run.start)), why])
    return fit_table(STALE_COLUMNS, rows, _width(width),
                     row_styles=["red" if run.failed else None for run in runs])
