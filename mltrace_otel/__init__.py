"""mltrace-otel: mltrace's Python API on OpenTelemetry and ClickHouse.

Switch from mltrace by changing one import::

    import mltrace_otel as mltrace

Logging names (Component, ComponentRun, register, save, ...) come from the SDK
(:mod:`mltrace_otel.sdk`); query names (backtrace, review_flagged_outputs, ...) from
:mod:`mltrace_otel.api`, which opens the store. Both are imported on first use, so
``import mltrace_otel`` stays fast and never loads chDB, Dash, clickhouse-connect or Flask.

The base install (``pip install mltrace-otel``) has every logging name; the query names need
the ``server`` extra (they open the store) or ``MLTRACE_SERVER_URL`` (they ask that server).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SDK = {
    "Component": "mltrace_otel.sdk.component",
    "register": "mltrace_otel.sdk.component",
    "ComponentRun": "mltrace_otel.sdk.run",
    "log_component_run": "mltrace_otel.sdk.run",
    "IOPointer": "mltrace_otel.sdk.pointers",
    "PointerTypeEnum": "mltrace_otel.sdk.pointers",
    "Test": "mltrace_otel.sdk.testing",
    "create_random_ids": "mltrace_otel.sdk.ids",
    "get_git_hash": "mltrace_otel.sdk.git",
    "get_git_tags": "mltrace_otel.sdk.git",
    "save": "mltrace_otel.sdk.artifacts",
    "load": "mltrace_otel.sdk.artifacts",
    "set_address": "mltrace_otel.sdk.config",
    "set_db_uri": "mltrace_otel.sdk.config",
    "get_db_uri": "mltrace_otel.sdk.config",
    "flush": "mltrace_otel.sdk.export",
    "delivery_stats": "mltrace_otel.sdk.export",
}
_API = {
    name: "mltrace_otel.api"
    for name in (
        "backtrace", "web_trace", "get_history", "get_recent_run_ids", "get_component_information",
        "get_component_run_information", "get_components", "get_components_with_owner",
        "get_components_with_tag", "get_all_tags", "tag_component", "create_component",
        "add_notes_to_component_run", "flag_output_id", "unflag_output_id", "unflag_all",
        "review_flagged_outputs", "get_io_pointer", "clean_db", "impact", "get_stale_runs",
        "review", "stale_reasons", "flag_output_version",
    )
}
_NAMES = {**_SDK, **_API}

__all__ = sorted(_NAMES) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'mltrace_otel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
