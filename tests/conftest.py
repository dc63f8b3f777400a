"""Shared fixtures: per-test settings and a per-test store database.

chDB allows one engine directory per process, so the whole pytest session uses ONE directory
and every test gets its own database in it (``chdb:///DIR?database=t_<n>``), plus its own
MLTRACE_DIR (spool, artifacts) under ``tmp_path``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from mltrace_otel.settings import Settings

_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's one embedded-engine directory."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def tmp_settings(tmp_path: Path, store_dir: Path) -> Settings:
    """Settings for one test: MLTRACE_DIR under tmp_path, a fresh database in the session store."""
    db = f"t_{next(_db_numbers)}"
    mltrace_dir = tmp_path / "mltrace"
    mltrace_dir.mkdir()
    return Settings.from_env(
        {},
        mltrace_dir=mltrace_dir,
        store_url=f"chdb://{store_dir.as_posix()}?database={db}",
        store_wait_s=10.0,
    )


@pytest.fixture
def store(tmp_settings: Settings) -> Iterator[object]:
    """An open, migrated store on the test's own database; closed (and dropped) after."""
    from mltrace_otel.store import open_store

    s = open_store(tmp_settings)
    try:
        yield s
    finally:
        if not s._closed:
            try:
                s.command("drop_test_database", f"DROP DATABASE IF EXISTS `{s.database}`")
            except Exception:
                pass
        s.close()
