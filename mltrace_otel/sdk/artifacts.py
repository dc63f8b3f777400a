"""save / load (joblib) and auto_log: artifacts recorded as run inputs and outputs.

``save(obj)`` writes under ``SAVE_DIR`` (else ``MLTRACE_DIR``, default ``~/.mltrace``);
called inside a decorated run, the path becomes an output of that run (with the object's
fingerprint as its version), and ``load(path)`` an input. The active run is found through a
context variable (thread- and asyncio-safe), not by inspecting stack frames. Directories
mltrace names are created 0700 (artifacts hold the pipeline's data).

Artifacts mltrace names are **content-addressed**: the file name is the value's version
(:mod:`mltrace_otel.sdk.fingerprints`), so an identical value is written once and reused, and
the same value gets the same pointer name in every process. ``auto_log`` keeps them in one
directory, ``ARTIFACT_DIR/values/<Type>-<version>.mlt``: a model trained and auto-logged in
one process and loaded in another (``model=load("model.joblib")`` as a default argument) is
the same pointer with the same version in both, which is how the store links the inference run
to the training run across processes, as mltrace 0.17 linked them by the hash of the value.
``save(obj)`` with no path writes ``ARTIFACT_DIR/<component>/<Type>-<version>.mlt``. A value
with a *weak* version (class + repr) is still named by it in ``values/`` (mltrace's linking
rule; an existing file is kept, as mltrace reused the pointer), but ``save()`` gives it a new
file each time, since its caller will load that path back.
"""

from __future__ import annotations

import contextvars
import logging
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from mltrace_otel.sdk.fingerprints import version_kind
from mltrace_otel.sdk.pointers import IOPointer, PointerTypeEnum, fingerprint, infer_pointer_type

AUTO_LOG_MIN_BYTES = 1024 * 1024
"""auto_log saves any value larger than this (mltrace's 1 MB rule)."""
VALUES_DIR = "values"
"""The directory (under the artifact directory) of auto_log's content-addressed artifacts."""


class RunIO:
    """Pointers added by save()/load() while a decorated run is active (internal)."""

    __slots__ = ("component", "loaded", "saved", "auto_in", "arg_names")

    def __init__(self, component: str) -> None:
        self.component = component
        self.loaded: list[IOPointer] = []
        self.saved: list[IOPointer] = []
        self.auto_in: list[IOPointer] | tuple = ()  # replaced, never appended to (auto_log)
        self.arg_names: set[str] | frozenset = frozenset()


_log = logging.getLogger("mltrace_otel.sdk")

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
        pathname: where to write; default ``SAVE_DIR/<component>/<Type>-<version>.mlt``
            (``SAVE_DIR/<Type>-<version>.mlt`` outside a run): named by the value's content
            version, so saving an identical value again reuses the file already there.

    Returns:
        The path written (recorded as an output of the active run, if any).
    """
    import joblib

    io = ACTIVE.get()
    version = None
    if pathname is None:
        version = fingerprint(obj)
        base = _artifact_dir()
        base = base / _slug(io.component) if io is not None else base
        unique = version_kind(version) != "content"  # a weak version may name another value
        path = base / artifact_name(obj, version, unique)
        _private_parent(path)
        if unique or not path.exists():
            _dump_atomically(obj, path)
        pathname = path
    else:
        path_text = os.fspath(pathname)
        os.makedirs(os.path.dirname(os.path.abspath(path_text)), exist_ok=True)
        joblib.dump(obj, path_text)
    path_text = os.fspath(pathname)
    if io is not None:
        io.saved.append(IOPointer(path_text, obj, version=version))
    return path_text


def artifact_name(obj: Any, version: str, unique: bool = False) -> str:
    """``<Type>-<version>.mlt`` (``w`` before a weak version's hex; a random suffix when
    ``unique`` or when there is no version): the file name of a content-addressed artifact."""
    kind = _slug(type(obj).__name__)[:40]
    tag = version.replace(":", "") if version else ""
    if unique or not tag:
        tag = f"{tag}-{secrets.token_hex(4)}{time.strftime('%Y%m%d%H%M%S')}".lstrip("-")
    return f"{kind}-{tag}.mlt"


def _dump_atomically(obj: Any, path: Path) -> None:
    """joblib.dump to a temporary name, then rename: a concurrent writer of the same
    content-addressed file, or a reader, never sees half a file."""
    import joblib

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        joblib.dump(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
    """Save each candidate value and return pointers to the files.

    Each value is named by its version (``ARTIFACT_DIR/values/<Type>-<version>.mlt``) and
    written only when no file of that name exists, so an identical value is saved once, and
    the same value has the same pointer (name and version) in every process: a model
    auto-logged as a training run's output and read by an inference run in another process
    links the two. An input whose value this process output earlier under another name (a
    ``save`` path, an output_kwargs name) gets that output's name instead. A value joblib
    cannot pickle is still logged by name, with its version, and not saved. ``component`` is
    mltrace's argument, kept for callers; the name does not depend on it.
    """
    del component  # content-addressed: the same value has the same name in every component
    return value_pointers(auto_log_candidates(values), inputs)


def value_pointers(values: dict[str, Any], inputs: bool) -> list[IOPointer]:
    """Pointers to content-addressed artifacts of these values (no filter): auto_log's rule,
    also used for ``input_vars`` / ``output_vars`` whose value is data, not a name (mltrace
    0.17 logged such a value as an artifact)."""
    from mltrace_otel.sdk.spans import name_for_version

    out: list[IOPointer] = []
    base: Path | None = None
    for k, v in values.items():
        fp = fingerprint(v)
        name = name_for_version(fp) if inputs else None
        if name is None:
            base = base or _artifact_dir() / VALUES_DIR
            path = base / artifact_name(v, fp)
            try:
                if not path.exists():
                    _private_parent(path)
                    _dump_atomically(v, path)
            except Exception as e:  # noqa: BLE001 - unpicklable: still logged by name, not saved
                _log.debug("mltrace: auto_log could not save %s: %s", k, e)
            name = os.fspath(path)
        out.append(IOPointer(name, v, _auto_type(k, v), version=fp or None))
    return out


def _auto_type(var: str, value: Any) -> PointerTypeEnum:
    """The pointer type of an auto-logged value: from the variable's name ("data" → DATA,
    "model" → MODEL, as mltrace named its artifacts after the variable), else MODEL for an
    object with fit and predict, else DATA (mltrace's type for its .mlt files)."""
    t = infer_pointer_type(var)
    if t is not PointerTypeEnum.UNKNOWN:
        return t
    if callable(getattr(value, "fit", None)) and callable(getattr(value, "predict", None)):
        return PointerTypeEnum.MODEL
    return PointerTypeEnum.DATA
