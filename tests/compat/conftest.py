"""Fixtures for the mltrace-compatibility scenarios: pipelines run as their own processes (as
mltrace's users run them), writing to a spool that the test's store drains."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mltrace_otel.sdk import config, export
from mltrace_otel.settings import Settings


@pytest.fixture(autouse=True)
def fresh_sdk() -> Iterator[None]:
    """No pipeline, overrides or remembered producers in this process before and after a test."""
    export.reset()
    config.clear_overrides()
    yield
    export.reset()
    config.clear_overrides()


@pytest.fixture
def run_script(tmp_settings: Settings) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``python SCRIPT ARGS...`` in ``cwd`` as a user would, its runs going to the test's
    spool (MLTRACE_DIR of ``tmp_settings``); nothing else from this environment's mltrace or
    OTel settings leaks in. Fails the test with the script's output when it exits non-zero."""

    def run(script: Path, *args: str, cwd: Path, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("OTEL_", "MLTRACE_", "DB_", "SAVE_DIR"))}
        clean.update({"MLTRACE_DIR": str(tmp_settings.mltrace_dir), "MLTRACE_EXPORT": "spool"})
        clean.update(env or {})
        out = subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=clean,
                             capture_output=True, text=True, timeout=300, check=False)
        if check:
            assert out.returncode == 0, f"{script.name} {args}: {out.stdout}\n{out.stderr}"
        return out

    return run
