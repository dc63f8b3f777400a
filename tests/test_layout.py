"""Imports point one way (SDK → queue/writer → store → queries → API, CLI, UI, metrics): each
layer is imported in a fresh interpreter and must not pull in the layers above it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# module -> packages it must never load (directly or through what it imports)
NEVER = {
    "mltrace_otel.sdk": ["mltrace_otel.store", "mltrace_otel.collector", "mltrace_otel.dashboards",
                         "mltrace_otel.cli", "chdb", "clickhouse_connect", "dash"],
    "mltrace_otel.store": ["mltrace_otel.collector", "mltrace_otel.dashboards", "mltrace_otel.cli", "dash"],
    "mltrace_otel.collector.server": ["mltrace_otel.dashboards", "mltrace_otel.cli", "mltrace_otel.web_api",
                                      "mltrace_otel.server", "dash", "flask"],
    "mltrace_otel.collector.forward": ["mltrace_otel.store", "mltrace_otel.dashboards"],
}


@pytest.mark.parametrize("module", sorted(NEVER))
def test_a_layer_does_not_import_the_layers_above_it(module: str) -> None:
    code = (f"import importlib, json, sys; importlib.import_module({module!r}); "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    wrong = [m for m in loaded for bad in NEVER[module] if m == bad or m.startswith(bad + ".")]
    assert not wrong, f"{module} loads {sorted(set(wrong))[:10]}"


def test_the_collector_never_imports_the_api_the_ui_or_the_composition_module() -> None:
    """Not even inside a function: the processes that hold a store and serve its query API are
    composed in mltrace_otel.server, above the collector (its __main__ is only an entry point)."""
    import ast

    above = ("mltrace_otel.web_api", "mltrace_otel.server", "mltrace_otel.dashboards", "mltrace_otel.cli")
    found = []
    for path in sorted((ROOT / "mltrace_otel" / "collector").glob("*.py")):
        if path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}: {n}" for n in names if n.startswith(above)]
    assert not found
