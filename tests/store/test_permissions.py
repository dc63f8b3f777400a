"""What mltrace writes locally is private under a permissive umask (issue 13): MLTRACE_DIR, the
spool, the embedded store's directory and the artifact directory are created 0700 (an existing
MLTRACE_DIR of ours is tightened), spool batch files 0600. Another user cannot be simulated
here, so the modes are asserted."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import mltrace_otel as mltrace
from mltrace_otel import spool
from mltrace_otel.sdk import config, export
from mltrace_otel.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def fresh_sdk() -> Iterator[None]:
    export.reset()
    config.clear_overrides()
    yield
    export.reset()
    config.clear_overrides()


def _log_run(name: str) -> None:
    cr = mltrace.ComponentRun(name)
    cr.set_start_timestamp()
    cr.add_output(f"{name}.csv")
    cr.set_end_timestamp()
    mltrace.log_component_run(cr)


def test_spool_and_artifacts_are_private_under_umask_022(tmp_path: Path, umask_022: None,
                                                         fresh_sdk: None) -> None:
    home = tmp_path / "new" / "mltrace"  # nothing exists yet: the SDK creates it all
    settings = Settings.from_env({}, mltrace_dir=home)
    export.configure(settings=settings, sync=True)
    _log_run("extract")

    batches = spool.pending(settings.spool_dir)
    assert len(batches) == 1
    assert _mode(home) == 0o700
    assert _mode(home.parent) == 0o700  # a missing parent, created private too
    assert _mode(settings.spool_dir) == 0o700
    assert _mode(batches[0]) == 0o600

    comp = mltrace.Component("train")

    @comp.run(output_vars=["path"])
    def train() -> None:
        path = mltrace.save({"weights": [1, 2]})  # noqa: F841 - read by the SDK

    train()
    saved = [p for p in home.rglob("*.mlt")]
    assert len(saved) == 1
    assert _mode(saved[0].parent) == 0o700  # MLTRACE_DIR/<component>
    assert saved[0].parent.parent == home


def test_an_existing_world_readable_mltrace_dir_is_tightened_once(
        tmp_path: Path, umask_022: None, fresh_sdk: None, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "mltrace"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)  # as an older version left it
    export.configure(settings=Settings.from_env({}, mltrace_dir=home), sync=True)
    caplog.set_level(logging.INFO, logger="mltrace_otel")
    _log_run("a")
    _log_run("b")
    assert _mode(home) == 0o700
    told = [r for r in caplog.records if "made it private" in r.getMessage()]
    assert len(told) == 1 and told[0].levelno == logging.INFO and str(home) in told[0].getMessage()


def test_a_new_embedded_store_directory_is_private(tmp_path: Path) -> None:
    """In a subprocess: chDB opens one engine directory per process, and this one is new."""
    script = textwrap.dedent("""
        import json, os, stat, sys
        from pathlib import Path
        os.umask(0o022)
        from mltrace_otel.settings import Settings
        from mltrace_otel.store import open_store
        home = Path(sys.argv[1]) / "mltrace"
        store = open_store(Settings.from_env({}, mltrace_dir=home))
        store.close()
        mode = lambda p: stat.S_IMODE(p.stat().st_mode)
        print(json.dumps({"home": mode(home), "store": mode(home / "store")}))
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True,
                         text=True, timeout=300, check=True)
    modes = json.loads(out.stdout.strip().splitlines()[-1])
    assert modes == {"home": 0o700, "store": 0o700}
