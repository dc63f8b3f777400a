"""save / load (joblib) and auto_log: artifacts recorded as run inputs and outputs.

``save(obj)`` writes under ``SAVE_DIR`` (else ``MLTRACE_DIR``, default ``~/.mltrace``);
called inside a decorated run, the path becomes an output of that run (with the object's
fingerprint as its version), and ``load(path)`` an input. The active run is found through a
context variable (thread- and asyncio-safe), not by inspecting stack frames. Directories
mltrace names are created 0700 (artifacts hold the pipeline's data).
"""

from __future__ import annotations

import contextvars
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from mltrace_otel.sdk.pointers import IOPointer, fingerprint

AUTO_LOG_MIN_BYTES = 1024 * 1024
"""auto_log saves any value larger than this (mltrace's 1 MB rule)."""


class RunIO:
    """Pointers added by save()/load() while a decorated run is active (internal)."""

    __slots__ = ("component", "loaded", "saved", "auto_in", "arg_names")

    def __init__(self, component: str) -> None:
        self.component = component
        self.loaded: list[IOPointer] = []
        self.saved: list[IOPointer] = []
        self.auto_in: list[IOPointer] = []
        self.arg_names: set[str] = set()


ACTIVE: contextvars.ContextVar[RunIO | None] = contextvars.ContextVar("mltrace_active_run", default=None)


def _artifact_dir() -> Path:
    from mltrace_otel.sdk.config import current_settings

    return current_settings().artifact_dir


def _private_parent(path: Path) -> None:
    """Create the directory of an artifact mltrace names (under SAVE_DIR / MLTRACE_DIR) 0700,
    like the rest of MLTRACE_DIR: artifacts hold the pipeline's data. A path the user names
    is created with the umask, as any file they write."""
    from mltrace_otel import spool
    from mltrace_otel.sdk.config import current_settings

    s = current_settings()
    if s.save_dir is None:
        spool.secure_home(s.mltrace_dir)
    spool.private_dir(path.parent)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name.lower()) or "run"


def save(obj: Any, pathname: str | os.PathLike | None = None) -> str:
    """Save ``obj`` with joblib and return the path.

    Args:
        obj: anything joblib can pickle.
        pathname: where to write; default ``SAVE_DIR/<component>/_<random><timestamp>.mlt``.

    Returns:
        The path written (recorded as an output of the active run, if any).
    """
    import joblib

    io = ACTIVE.get()
    if pathname is None:
        name = f"_{secrets.token_hex(3)}{time.strftime('%Y%m%d%H%M%S')}.mlt"
        base = _artifact_dir()
        pathname = base / _slug(io.component) / name if io is not None else base / name
        _private_parent(Path(pathname))
    path = os.fspath(pathname)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    joblib.dump(obj, path)
    if io is not None:
        io.saved.append(IOPointer(path, obj))
    return path


def load(pathname: str | os.PathLike) -> Any:
    """Load a joblib file; inside a decorated run, the path becomes one of its inputs."""
    import joblib

    obj = joblib.load(pathname)
    io = ACTIVE.get()
    if io is not None:
        io.loaded.append(IOPointer(os.fspath(pathname), obj))
    return obj


def _approx_size(v: Any) -> int:
    try:
        n = getattr(v, "nbytes", None)
        if isinstance(n, int):
            return n
        mu = getattr(v, "memory_usage", None)
        if callable(mu) and type(v).__name__ == "DataFrame":
            return int(mu(deep=False).sum())
        return sys.getsizeof(v)
    except Exception:  # noqa: BLE001
        return 0


def _is_dataframe(v: Any) -> bool:
    t = type(v)
    return t.__name__ == "DataFrame" and t.__module__.startswith("pandas")


def auto_log_candidates(values: dict[str, Any]) -> dict[str, Any]:
    """mltrace's auto_log filter: names containing "data" or "model", DataFrames, and values
    over 1 MB (modules, functions, classes and None skipped)."""
    out = {}
    for k, v in values.items():
        if v is None or k.startswith("_mltrace") or callable(v) or type(v).__name__ == "module":
            continue
        if "data" in k or "model" in k or _is_dataframe(v) or _approx_size(v) > AUTO_LOG_MIN_BYTES:
            out[k] = v
    return out


def auto_log_pointers(values: dict[str, Any], component: str, inputs: bool) -> list[IOPointer]:
    """Save each candidate value (content-addressed, so an unchanged value is written once) and
    return pointers to the files. An input whose value this process output earlier gets that
    output's name instead, which links the two runs."""
    import joblib

    from mltrace_otel.sdk.spans import name_for_version

    out: list[IOPointer] = []
    base = None
    for k, v in auto_log_candidates(values).items():
        fp = fingerprint(v)
        name = name_for_version(fp) if inputs else None
        if name is None:
            base = base or _artifact_dir() / _slug(component)
            path = base / f"{_slug(k)}_{fp[:16] or secrets.token_hex(8)}.mlt"
            try:
                if not path.exists():
                    _private_parent(path)
                    joblib.dump(v, path)
            except Exception:  # noqa: BLE001 - unpicklable: still logged by name, not saved
                pass
            name = os.fspath(path)
        out.append(IOPointer(name, v, version=fp))
    return out
