"""CLI test helpers (imported as ``cli_helpers``: tests/cli is on sys.path): run the real
``mltrace`` app in-process (typer's CliRunner) on a store URL.

chDB allows one engine directory per process, so the CLI is pointed (``--store``) at a database
inside the session's engine directory (tests/conftest.py's ``store_dir``), never at a new one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from mltrace_otel.cli.app import app
from mltrace_otel.settings import Settings

_CLEAN_ENV = {
    "MLTRACE_CLICKHOUSE_URL": None,
    "MLTRACE_EXPORT": None,
    "OTEL_EXPORTER_OTLP_ENDPOINT": None,
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": None,
    "COLUMNS": "220",
    "NO_COLOR": "1",
    "TERM": "dumb",
}


def invoke(settings: Settings | None, *args: str, input: str | None = None,
           env: dict[str, str | None] | None = None, store: bool = True) -> Result:
    """Run ``mltrace [--store URL] ARGS`` in-process; MLTRACE_DIR is the settings' dir.

    An unexpected exception (anything but SystemExit) fails the test with its traceback:
    the CLI must never crash on input it can be given.
    """
    full_env = dict(_CLEAN_ENV)
    argv: list[str] = []
    if settings is not None:
        full_env["MLTRACE_DIR"] = str(settings.mltrace_dir)
        if store:
            argv += ["--store", settings.resolved_store_url]
    full_env.update(env or {})
    result = CliRunner().invoke(app, [*argv, *args], input=input, env=full_env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"mltrace {' '.join(args)} crashed:\n{result.output}") from result.exception
    return result


def ok_json(result: Result) -> Any:
    """Parse stdout of a successful --json command."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@dataclass
class Pipeline:
    """The filled store and what was logged into it."""

    settings: Settings
    store: Any
    predictions: list[str] = field(default_factory=list)


def settings_for(store_dir: Path, mltrace_dir: Path) -> Settings:
    """Settings on a fresh database of the session's engine directory."""
    mltrace_dir.mkdir(parents=True, exist_ok=True)
    return Settings.from_env({}, mltrace_dir=mltrace_dir, store_wait_s=10.0,
                             store_url=f"chdb://{store_dir.as_posix()}?database=cli_{uuid.uuid4().hex[:10]}")


def log_with_sdk(settings: Settings, body: Any) -> None:
    """Run ``body()`` with the SDK writing to ``settings``' spool, then flush it."""
    from mltrace_otel.sdk import export

    export.configure(settings=settings.replace(export="spool"))
    try:
        body()
        assert export.flush()
    finally:
        export.reset()


def log_pipeline() -> list[str]:
    """The pipeline of the module docstring; returns the prediction ids."""
    from mltrace_otel.sdk.component import Component
    from mltrace_otel.sdk.run import ComponentRun, log_component_run
    from mltrace_otel.sdk.testing import Test

    class AccuracyTest(Test):
        def __init__(self) -> None:
            super().__init__(name="accuracy")

        def testAccuracy(self, accuracy: float) -> None:
            assert accuracy >= 0.8, f"accuracy {accuracy} is too low"

    start = datetime.now(timezone.utc) - timedelta(days=40)
    cr = ComponentRun("ingest", start_timestamp=start, end_timestamp=start + timedelta(seconds=95))
    cr.add_output("raw.csv")
    log_component_run(cr)

    clean_c = Component(name="clean", owner="alice", description="drops bad rows", tags=["etl"])
    feat_a_c = Component(name="feat_a", owner="bob", description="features A", tags=["features"])
    feat_b_c = Component(name="feat_b", owner="bob", description="features B", tags=["features"])
    join_c = Component(name="join", owner="bob", description="joins features", tags=["features", "etl"])
    train_c = Component(name="train", owner="carol", description="fits the model", tags=["model"],
                        afterTests=[AccuracyTest])
    predict_c = Component(name="predict", owner="carol", description="scores", tags=["serving"])

    @clean_c.run(inputs=["raw.csv", "rules.yaml"], outputs=["clean.csv"])
    def clean() -> None:
        pass

    @feat_a_c.run(inputs=["clean.csv"], outputs=["a.csv"])
    def feat_a() -> None:
        pass

    @feat_b_c.run(inputs=["clean.csv"], outputs=["b.csv"])
    def feat_b() -> None:
        pass

    @join_c.run(inputs=["a.csv", "b.csv"], outputs=["features.csv"])
    def join() -> None:
        pass

    @train_c.run(input_vars=["features"], output_vars=["model"])
    def train(features: str, model: str, quality: float) -> float:
        accuracy = quality
        return accuracy

    @predict_c.run(inputs=["model.pkl", "features.csv"], output_vars=["ids"])
    def predict(ids: list[str]) -> list[str]:
        return ids

    clean()
    feat_a()
    feat_b()
    join()
    train("features.csv", "model.pkl", 0.93)
    with pytest.raises(AssertionError):
        train("features.csv", "model_bad.pkl", 0.41)
    predictions = ["pred-1", "pred-2", "pred-3"]
    predict(predictions)
    return predictions
