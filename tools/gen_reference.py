"""Generate the span-conventions and settings tables in docs/reference.md from the code.

    python tools/gen_reference.py           # rewrite the generated sections of docs/reference.md
    python tools/gen_reference.py --check   # exit 1 when docs/reference.md is out of date

Each table sits between its BEGIN/END markers; everything else in docs/reference.md is
hand-written. The conventions table comes from mltrace_otel/conventions.py (names and their
docstrings), the settings table from settings.ENV_VARS. tests/test_docs.py fails when the
page is stale.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "reference.md"


def _markers(name: str) -> tuple[str, str]:
    return (f"<!-- BEGIN GENERATED {name} by tools/gen_reference.py: do not edit -->",
            f"<!-- END GENERATED {name} -->")


def conventions_table() -> str:
    """Markdown table of every span attribute and event name with its docstring."""
    from mltrace_otel import conventions as c

    tree = ast.parse(Path(c.__file__).read_text(encoding="utf-8"))
    docs: dict[str, str] = {}
    body = tree.body
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and i + 1 < len(body):
            nxt = body[i + 1]
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = " ".join(str(nxt.value.value).split())
    by_value = {getattr(c, n): n for n in dir(c) if n.isupper() and isinstance(getattr(c, n), str)}
    rows = ["| name | kind | meaning |", "|---|---|---|"]
    for value in c.ALL_ATTRIBUTES:
        kind = "link attribute" if value == c.LINK_IO_NAME else (
            "event attribute" if value.startswith(("mltrace.test.", "mltrace.output.")) else "span attribute")
        rows.append(f"| `{value}` | {kind} | {docs.get(by_value[value], '').replace('|', '/')} |")
    for value in c.ALL_EVENTS:
        rows.append(f"| `{value}` | span event | {docs.get(by_value[value], '').replace('|', '/')} |")
    return "\n".join(rows)


def settings_table() -> str:
    """Markdown table of every environment variable settings.py reads."""
    from mltrace_otel.settings import ENV_VARS

    rows = ["| variable | meaning |", "|---|---|"]
    rows += [f"| `{k}` | {v.replace('|', '/')} |" for k, v in ENV_VARS.items()]
    return "\n".join(rows)


SECTIONS = {"conventions": conventions_table, "settings": settings_table}


def update(text: str) -> str:
    """``text`` (docs/reference.md) with every generated section replaced."""
    for name, table in SECTIONS.items():
        begin, end = _markers(name)
        if begin not in text or end not in text:
            raise SystemExit(f"{DOC}: the markers of the {name} section are missing")
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = f"{head}{begin}\n\n{table()}\n\n{end}{tail}"
    return text


def main(argv: list[str]) -> int:
    current = DOC.read_text(encoding="utf-8")
    new = update(current)
    if "--check" in argv:
        if new != current:
            print(f"{DOC} is out of date: run python tools/gen_reference.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
