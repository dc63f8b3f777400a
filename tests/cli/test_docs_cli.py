"""docs/cli.md stays true: its generated reference matches the commands, every command is
described by hand too, and `mltrace --help` does not load the heavy modules."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import typer

from mltrace_otel.cli.app import app

ROOT = Path(__file__).resolve().parents[2]


def _gen():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "tools" / "gen_cli_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_generated_reference_is_up_to_date() -> None:
    gen = _gen()
    text = gen.DOC.read_text(encoding="utf-8")
    assert gen.update(text) == text, "docs/cli.md is stale: run python tools/gen_cli_docs.py"


def test_every_command_is_described_by_hand() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    hand = text.split("<!-- BEGIN GENERATED", 1)[0]
    for name in typer.main.get_command(app).commands:
        assert f"`mltrace {name}" in hand, name


def test_help_does_not_load_the_store_or_the_services() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from mltrace_otel.cli.app import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = ('chdb', 'clickhouse_connect', 'dash', 'grpc', 'pandas', 'mltrace_otel.store.core',\n"
        "         'mltrace_otel.sdk.export', 'mltrace_otel.collector.server', 'opentelemetry.sdk')\n"
        "print(__import__('json').dumps([m for m in heavy if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
