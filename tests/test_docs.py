"""docs/ is the reference: every setting, span attribute, event and CLI command is in it, its
generated pages are fresh, and it builds as a site with ``mkdocs build --strict``. README.md is
the front door: rendered from docs/index.md, at most 12 KB, two Quickstart commands."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from mltrace_otel import conventions
from mltrace_otel.settings import ENV_VARS

ROOT = Path(__file__).resolve().parents[1]
DOCS_DIR = ROOT / "docs"
PAGES = {p.name: p.read_text(encoding="utf-8") for p in sorted(DOCS_DIR.glob("*.md"))}
DOCS = "\n".join(PAGES.values())
README = (ROOT / "README.md").read_text(encoding="utf-8")
README_MAX_BYTES = 12 * 1024


def _tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _nav_pages() -> list[str]:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def walk(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [p for item in node for p in walk(item)]
        if isinstance(node, dict):
            return [p for value in node.values() for p in walk(value)]
        return []

    return walk(config["nav"])


# --- everything the code exposes is documented in docs/ ----------------------------------------

@pytest.mark.parametrize("var", sorted(ENV_VARS))
def test_every_env_var_is_documented(var: str) -> None:
    assert f"`{var}`" in DOCS, f"{var} is read by settings.py but missing from docs/"


@pytest.mark.parametrize("name", sorted(set(conventions.ALL_ATTRIBUTES) | set(conventions.ALL_EVENTS)))
def test_every_span_name_is_documented(name: str) -> None:
    assert f"`{name}`" in DOCS, f"{name} is a span convention but missing from docs/"


def test_every_cli_command_is_documented() -> None:
    typer = pytest.importorskip("typer")
    from mltrace_otel.cli.app import app

    commands = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert len(commands) >= 15
    for cmd in commands:
        assert re.search(rf"`mltrace {re.escape(cmd)}\b", DOCS), f"`mltrace {cmd}` missing from docs/"


# --- generated pages are fresh -------------------------------------------------------------------

def test_reference_tables_are_generated_from_the_code() -> None:
    gen = _tool("gen_reference")
    text = gen.DOC.read_text(encoding="utf-8")
    assert gen.update(text) == text, "docs/reference.md is stale: run python tools/gen_reference.py"


def test_cli_reference_is_generated_from_the_code() -> None:
    pytest.importorskip("typer")
    gen = _tool("gen_cli_docs")
    text = gen.DOC.read_text(encoding="utf-8")
    assert gen.update(text) == text, "docs/cli.md is stale: run python tools/gen_cli_docs.py"


def test_readme_is_rendered_from_docs_index() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "build_readme.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --- README: the front door ----------------------------------------------------------------------

def test_readme_is_at_most_12_kb() -> None:
    size = len(README.encode("utf-8"))
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes, over {README_MAX_BYTES}: move it to docs/"


def test_quickstart_has_exactly_two_commands() -> None:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:bash|sh|shell)?\n(.*?)```", section, re.S)
    lines = [ln for b in blocks for ln in b.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 2, lines
    assert "mltrace demo" in lines[0]
    assert "scripts/test.sh" in lines[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/test.sh" in ci


def test_readme_links_to_every_page_of_the_site() -> None:
    targets = set(re.findall(r"\]\(docs/([^)#\s]+)", README))
    missing = [p for p in _nav_pages() if p != "index.md" and p not in targets]
    assert not missing, f"README.md does not link to {missing}"
    broken = [t for t in targets if not (DOCS_DIR / t).is_file()]
    assert not broken, f"README.md links to missing pages {broken}"


# --- the site ------------------------------------------------------------------------------------

def test_every_page_is_in_the_nav() -> None:
    nav = _nav_pages()
    assert sorted(nav) == sorted(PAGES), "mkdocs.yml's nav and the pages in docs/ differ"


def test_benchmarks_are_on_one_page_with_their_commands() -> None:
    page = PAGES["benchmarks.md"]
    scripts = sorted(p.name for p in (ROOT / "bench").glob("bench_*.py") if p.name != "bench_data.py")
    missing = [s for s in scripts if f"python bench/{s}" not in page]
    assert not missing, f"benchmarks.md does not say how to run {missing}"
    for section in page.split("\n## ")[2:]:  # after the title and the summary
        title = section.splitlines()[0]
        assert "```bash" in section, f"benchmarks.md section {title!r} has no command to reproduce it"
    history = re.compile(r"\b(first|second|third|fourth|earlier|previous) rounds?\b", re.I)
    for name, text in PAGES.items():
        assert not history.search(text), f"docs/{name} tells benchmark history; it belongs in git"


def test_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert (site / "benchmarks" / "index.html").is_file()
