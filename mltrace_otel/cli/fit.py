"""Tables that fit the terminal without splitting a word.

rich folds a cell that is narrower than a word character by character ("inpu/ts", file names
four characters a line). Here every cell is laid out before rich sees it, at a width chosen
for it: text wraps at spaces, a list of names wraps between names, a name wraps after a path
separator (``data/`` + ``raw.csv``), and a name or word still wider than its column is
shortened in the middle (``wine_fe…v3.csv``). Columns are given their minimum first; when even
the minimums do not fit, the least useful columns are dropped (each table says which go first).

Pure layout over plain strings that :func:`~mltrace_otel.cli.render.clean` has made safe: cells
become rich ``Text`` (never markup), so a user's ``[bold]`` is shown as typed.

May import: rich.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.console import OverflowMethod
from rich.table import Table
from rich.text import Text

ELLIPSIS = "…"
SEPARATORS = "/\\"
"""A name may wrap after these (path separators)."""

Piece = tuple[str, str | None]
"""A run of text and its rich style (None: the cell's)."""


@dataclass
class Item:
    """One unit of a cell: ``text`` is kept whole when it fits (wrapped after a path separator
    or shortened in the middle when it does not), ``tail`` (styled pieces, e.g. `` @1a2b3c4d``,
    `` ⚑``) follows it on its last line when there is room, else on a line of its own."""

    text: str
    style: str | None = None
    tail: tuple[Piece, ...] = ()


@dataclass
class Cell:
    """A cell's content: ``lines`` of items. Items of one line may wrap onto further lines
    (joined by ``sep`` when they share a line); each entry of ``lines`` starts a new line."""

    lines: list[list[Item]] = field(default_factory=list)
    sep: str = " "

    @classmethod
    def words(cls, text: str, style: str | None = None) -> Cell:
        """Text that wraps at spaces (each line of ``text`` starts a new line)."""
        return cls([[Item(w, style) for w in line.split()] for line in text.split("\n")], " ")

    @classmethod
    def names(cls, items: Sequence[Item]) -> Cell:
        """A comma-separated list of names that wraps between names."""
        return cls([list(items)], ", ")

    @classmethod
    def one(cls, text: str, style: str | None = None) -> Cell:
        """One unit (an id, a status): shortened in the middle if it must be."""
        return cls([[Item(text, style)]])


@dataclass
class Column:
    """A column of a :func:`fit_table`: ``header`` (kept whole: the column is at least that
    wide), ``drop`` (columns with a higher number are dropped first when the table does not
    fit; 0: never dropped), ``grow`` (columns with a lower number get room first), ``floor``
    (a names or text column is not made narrower than this unless its content is), ``whole``
    (short text such as a time: it wants room for one line, not just its longest word),
    ``weight`` (its share of the room while columns grow together), ``cap`` (0: none; a width
    past which the column grows only once every column has room for its longest unit)."""

    header: str
    drop: int = 0
    grow: int = 0
    floor: int = 12
    justify: str = "left"
    whole: bool = False
    weight: int = 1
    cap: int = 0


def shorten_middle(text: str, width: int) -> str:
    """``text`` at most ``width`` cells wide, its middle replaced by ``…`` when it is wider."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    room = width - 1
    head_w = (room + 1) // 2
    head, used = [], 0
    for ch in text:
        w = cell_len(ch)
        if used + w > head_w:
            break
        head.append(ch)
        used += w
    tail, tail_w = [], room - used
    used = 0
    for ch in reversed(text):
        w = cell_len(ch)
        if used + w > tail_w:
            break
        tail.append(ch)
        used += w
    return "".join(head) + ELLIPSIS + "".join(reversed(tail))


_AFTER_SEPARATOR = re.compile(r"[^/\\]*[/\\]+|[^/\\]+$")


def _fold(text: str, width: int) -> list[str]:
    lines, line, used = [], "", 0
    for ch in text:
        w = cell_len(ch)
        if line and used + w > width:
            lines.append(line)
            line, used = "", 0
        line += ch
        used += w
    return [*lines, line] if line else lines


def split_name(text: str, width: int, shorten: bool = True) -> list[str]:
    """``text`` as lines at most ``width`` wide: whole when it fits, else wrapped after path
    separators (``data/``, ``raw.csv``), and each part still too wide shortened in the middle
    (``shorten``; else folded, where every character must be shown: ``inspect``)."""
    if cell_len(text) <= width:
        return [text]
    lines: list[str] = []
    line = ""
    for part in _AFTER_SEPARATOR.findall(text):
        if line and cell_len(line + part) > width:
            lines.append(line)
            line = ""
        line += part
    if line:
        lines.append(line)
    if shorten:
        return [shorten_middle(ln, width) for ln in lines]
    return [part for ln in lines for part in _fold(ln, width)]


def min_width(cell: Cell) -> int:
    """The width below which the cell's widest unit would have to be shortened."""
    return max((max(cell_len(it.text), _tail_len(it) - 1) for line in cell.lines for it in line), default=0)


def natural_width(cell: Cell) -> int:
    """The width of the cell with nothing wrapped."""
    return max((_line_len(line, cell.sep) for line in cell.lines), default=0)


def _tail_len(item: Item) -> int:
    return sum(cell_len(t) for t, _ in item.tail)


def _line_len(items: Sequence[Item], sep: str) -> int:
    return sum(cell_len(it.text) + _tail_len(it) for it in items) + cell_len(sep) * max(0, len(items) - 1)


def layout(cell: Cell, width: int, shorten: bool = True) -> Text:
    """The cell as rich Text no line of which is wider than ``width``, no unit split inside
    (``shorten`` False: a unit with no separator that is wider than ``width`` is folded)."""
    trail_str = cell.sep.rstrip()  # "," stays with the name it follows
    gap = cell_len(cell.sep) - cell_len(trail_str)  # spaces between units sharing a line
    out: list[list[Piece]] = []
    for line_items in cell.lines:
        cur: list[Piece] = []
        cur_w = 0
        for i, it in enumerate(line_items):
            extra: list[Piece] = list(it.tail)
            if trail_str and i < len(line_items) - 1:
                extra.append((trail_str, None))
            extra_w = sum(cell_len(t) for t, _ in extra)
            unit_w = cell_len(it.text) + extra_w
            if cur and cur_w + gap + unit_w <= width:
                cur += [(" " * gap, None), (it.text, it.style), *extra]
                cur_w += gap + unit_w
                continue
            if cur:
                out.append(cur)
            if unit_w <= width:
                cur, cur_w = [(it.text, it.style), *extra], unit_w
                continue
            # wider than the column: wrap after path separators, shorten in the middle
            keep_extra = extra_w and width - extra_w >= max(4, width // 2)
            parts = split_name(it.text, width - extra_w if keep_extra else width, shorten)
            out += [[(p, it.style)] for p in parts[:-1]]
            cur, cur_w = [(parts[-1], it.style)], cell_len(parts[-1])
            if keep_extra or cur_w + extra_w <= width:
                cur += extra
                cur_w += extra_w
            elif extra:
                out.append(cur)
                cur = [(extra[0][0].lstrip(), extra[0][1]), *extra[1:]]
                cur_w = sum(cell_len(t) for t, _ in cur)
        out.append(cur)
    return _lines_text(out, "crop")


def _lines_text(lines: list[list[tuple[str, str | None]]], overflow: OverflowMethod) -> Text:
    """Styled pieces, one list per line, as one non-wrapping Text."""
    text = Text(no_wrap=True, overflow=overflow)
    for n, pieces in enumerate(lines):
        if n:
            text.append("\n")
        for t, style in pieces:
            text.append(t, style=style or "")
    return text


_TOKENS = re.compile(r"\n|[^\S\n]+|\S+")


def _words(pieces: Sequence[Piece]) -> list[tuple[str, list[Piece]] | None]:
    """(the spaces before it, its styled parts) of each word of ``pieces`` (a word may span
    pieces); None for a line break."""
    words: list[tuple[str, list[Piece]] | None] = []
    space, glued = "", False
    for text, style in pieces:
        for m in _TOKENS.finditer(text):
            t = m.group()
            if t == "\n":
                words.append(None)
                space, glued = "", False
            elif t.isspace():
                space, glued = space + t, False
            elif glued and words and words[-1] is not None:
                words[-1][1].append((t, style))
            else:
                words.append((space, [(t, style)]))
                space, glued = "", True
    return words


def fit_pieces(pieces: Sequence[Piece], width: int) -> Text:
    """Styled text (a tree's label) as rich Text no line of which is wider than ``width``:
    wrapped at spaces (the spaces inside a line kept as given, ``\\n`` starts a line), and a
    word wider than ``width`` wrapped after path separators and shortened in the middle
    (:func:`split_name`), never folded inside a word."""
    width = max(width, 1)
    lines: list[list[Piece]] = [[]]
    used = 0
    for word in _words(pieces):
        if word is None:
            lines.append([])
            used = 0
            continue
        space, parts = word
        w = sum(cell_len(t) for t, _ in parts)
        if used and used + cell_len(space) + w <= width:
            lines[-1] += [(space, None), *parts]
            used += cell_len(space) + w
            continue
        if used:
            lines.append([])
        if w > width:  # a long name: after separators, then shortened in the middle
            cut = split_name("".join(t for t, _ in parts), width)
            for part in cut[:-1]:
                lines[-1].append((part, parts[0][1]))
                lines.append([])
            parts, w = [(cut[-1], parts[0][1])], cell_len(cut[-1])
        lines[-1] += parts
        used = w
    return _lines_text(lines, "ellipsis")


def table_overhead(columns: int) -> int:
    """Cells a rich Table with edges and padding 1 spends besides its columns' contents."""
    return 3 * columns + 1


def choose_widths(columns: Sequence[Column], cells: Sequence[Sequence[Cell]],
                  width: int) -> dict[int, int]:
    """The width of each kept column (index → width): dropped columns are missing."""
    n = len(columns)
    mins, wants, naturals = [], [], []
    for i, col in enumerate(columns):
        head = cell_len(col.header)
        unit = max((min_width(row[i]) for row in cells), default=0)
        nat = max((natural_width(row[i]) for row in cells), default=0)
        mins.append(max(head, min(unit, col.floor)))
        want = max(head, nat if col.whole else unit)
        wants.append(max(mins[-1], min(want, col.cap)) if col.cap else want)
        naturals.append(max(head, nat, unit))
    kept = list(range(n))
    while len(kept) > 1 and sum(mins[i] for i in kept) + table_overhead(len(kept)) > width:
        worst = max(kept, key=lambda i: (columns[i].drop, i))
        if columns[worst].drop == 0:
            break
        kept.remove(worst)
    widths = {i: mins[i] for i in kept}
    room = width - table_overhead(len(kept)) - sum(widths.values())
    order = sorted(kept, key=lambda i: (columns[i].grow, i))
    for target in (wants, naturals):  # the columns grow together, by weight, in grow order
        while room > 0:
            grew = False
            for i in order:
                step = min(room, columns[i].weight, target[i] - widths[i])
                if step > 0:
                    widths[i] += step
                    room -= step
                    grew = True
            if not grew:
                break
    return widths


def fit_table(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int,
              title: str | None = None, row_styles: Sequence[str | None] = ()) -> Table:
    """A rich Table at most ``width`` wide whose cells split no word (see the module doc)."""
    widths = choose_widths(columns, rows, width)
    table = Table(title=title, header_style="bold", expand=False)
    kept = sorted(widths)
    for i in kept:
        col = columns[i]
        table.add_column(col.header, justify=col.justify, no_wrap=True, overflow="crop",  # type: ignore[arg-type]
                         width=widths[i])
    for r, row in enumerate(rows):
        style = row_styles[r] if r < len(row_styles) else None
        table.add_row(*(layout(row[i], widths[i]) for i in kept), style=style)
    return table
