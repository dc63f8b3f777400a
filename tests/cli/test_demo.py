"""`mltrace demo` on a fresh MLTRACE_DIR (its own process, its own embedded store), then the views
a new user tries next: trace, review, stale, inspect."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLTRACE_", "OTEL_")) and k != "SAVE_DIR"}
    env.update(MLTRACE_DIR=str(home), COLUMNS="200", NO_COLOR="1", TERM="dumb")
    return env


def _mltrace(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", *args], env=_env(home),
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_demo_fills_every_view(tmp_path: Path) -> None:
    home = tmp_path / "home"
    demo = _mltrace(home, "demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Traceback" not in demo.stdout + demo.stderr
    assert "train failed its test, as planned" in demo.stdout
    tries = re.findall(r"^\s+(mltrace [^\n]*?)\s{2,}", demo.stdout, re.M)
    assert "mltrace review" in tries and "mltrace stale" in tries and "mltrace ui" in tries
    flagged_pred = next(t.split()[-1] for t in tries if t.startswith("mltrace trace "))

    recent = json.loads(_mltrace(home, "recent", "-n", "100", "--json").stdout)
    assert len(recent) == 12
    assert {r["component"] for r in recent} == {"ingest", "clean", "featuregen", "train", "predict"}
    failed = [r for r in recent if r["status"] == "failed"]
    assert {r["otel_status"] for r in failed} == {"ERROR"}  # the span status stays beside it
    assert [r["component"] for r in failed] == ["train"]
    assert [t["passed"] for t in failed[0]["tests"]] == [False]

    review = json.loads(_mltrace(home, "review", "--json").stdout)
    assert len(review["flagged"]) == 4 and flagged_pred in review["flagged"]
    top = review["entries"][0]
    assert top["count"] == 4 and top["coverage"] == 1.0
    assert any(e["run"]["component"] == "train" and e["count"] == 4 for e in review["entries"])

    stale = json.loads(_mltrace(home, "stale", "--json").stdout)
    stale_by = {r["component"]: r["stale"] for r in stale}
    assert any(re.search(r"ingest \(ID \w+\) was run 45 days ago", m) for m in stale_by["clean"]), stale
    assert any(re.search(r"train \(ID \w+\) has 1 fresher run", m) for m in stale_by["predict"]), stale

    trace = _mltrace(home, "trace", flagged_pred)
    assert trace.returncode == 0, trace.stderr
    for component in ("predict", "train", "featuregen", "clean", "ingest"):
        assert component in trace.stdout
    assert "⚠" in trace.stdout

    inspect = _mltrace(home, "inspect", failed[0]["id"][:8])
    assert inspect.returncode == 0 and "FAILED" in inspect.stdout and "accuracy" in inspect.stdout
