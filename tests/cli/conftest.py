"""Fixtures of the CLI tests: a store filled by the real SDK (helpers live in cli_helpers.py).

``pipeline`` (module scope) logs a small pipeline through the SDK into the spool of its own
MLTRACE_DIR and drains it into its own database of the session's engine directory:

    ingest (ComponentRun, 40 days ago) → raw.csv → clean → clean.csv ─┬→ feat_a → a.csv ─┬→ join
                                                                     └→ feat_b → b.csv ─┘
    (clean also reads rules.yaml, which no run wrote)
    join → features.csv → train → model.pkl (passes its test)
                        → train → model_bad.pkl (its AccuracyTest fails: a failed run)
    predict(model.pkl, features.csv) → pred-1, pred-2, pred-3

so there is a stale run (its input is 40 days old), a diamond (clean reached twice), a failed
run with a failed test, and outputs to flag.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Pipeline, log_pipeline, log_with_sdk, settings_for

from mltrace_otel.settings import Settings


@pytest.fixture(scope="module")
def pipeline(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """A store filled by the SDK with the pipeline of the module docstring."""
    from mltrace_otel.store import open_store

    settings = settings_for(store_dir, tmp_path_factory.mktemp("cli") / "mltrace")
    result: list[str] = []
    log_with_sdk(settings, lambda: result.extend(log_pipeline()))
    store = open_store(settings)  # drains the spool
    try:
        assert store.count_runs() == 8
        yield Pipeline(settings, store, result)
    finally:
        try:
            store.command("drop_test_database", f"DROP DATABASE IF EXISTS `{store.database}`")
        finally:
            store.close()


@pytest.fixture
def fresh(store_dir: Path, tmp_path: Path) -> Settings:
    """Settings on an empty database, for tests that change or wipe the store."""
    return settings_for(store_dir, tmp_path / "mltrace")
