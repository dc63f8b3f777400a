"""The README is the reference: every setting, span attribute, event and CLI command is in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mltrace_otel import conventions
from mltrace_otel.settings import ENV_VARS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("var", sorted(ENV_VARS))
def test_every_env_var_is_documented(var: str) -> None:
    assert f"`{var}`" in README, f"{var} is read by settings.py but missing from the README"


@pytest.mark.parametrize("name", sorted(set(conventions.ALL_ATTRIBUTES) | set(conventions.ALL_EVENTS)))
def test_every_span_name_is_documented(name: str) -> None:
    assert f"`{name}`" in README, f"{name} is a span convention but missing from the README"


def _cli_commands() -> list[str]:
    typer = pytest.importorskip("typer")
    from mltrace_otel.cli.app import app

    group = typer.main.get_command(app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def test_every_cli_command_is_documented() -> None:
    commands = _cli_commands()
    assert len(commands) >= 15
    for cmd in commands:
        assert re.search(rf"`mltrace {re.escape(cmd)}\b", README), f"`mltrace {cmd}` missing from README"


def test_quickstart_has_exactly_two_commands() -> None:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:bash|sh|shell)?\n(.*?)```", section, re.S)
    lines = [ln for b in blocks for ln in b.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 2, lines
    assert "mltrace demo" in lines[0]
    assert "scripts/test.sh" in lines[1]
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/test.sh" in ci


def test_readme_is_built_from_docs() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "tools" / "build_readme.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
