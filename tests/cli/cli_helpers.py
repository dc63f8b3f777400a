"""CLI test helpers (imported as ``cli_helpers``: tests/cli is on sys.path): run the real
``mltrace`` app in-process (typer's CliRunner) on a store URL.

chDB allows one engine directory per process, so the CLI is pointed (``--store``) at a database
inside the session's engine directory (tests/conftest.py's ``store_dir``), never at a new one.
"""

from __future__ import annotations

import json
from typing import Any

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
