"""IO pointers (the names a run reads and writes), their types, and content fingerprints.

A pointer is a name (a file path, a table, a record id). When its value is known (input_kwargs /
output_kwargs, auto_log, save/load, ``IOPointer(value=...)``) the run also records a content
**fingerprint** of the value, so the store can tell versions of the same name apart. Fingerprints
are real content hashes (blake2b): two DataFrames or arrays that differ in any cell differ.
When no value is known and the name is a local file or directory, a run records that file's
version instead (:func:`with_file_version`, rules in :mod:`mltrace_otel.sdk.files`), taken
before the function runs for inputs and after it returns for outputs.

Imports nothing heavy at module level (pandas and numpy are recognised by type name, never
imported here). Nothing in this module raises into user code while fingerprinting.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import pickle
import struct
from collections.abc import Mapping
from typing import Any

from mltrace_otel.sdk import files

_log = logging.getLogger("mltrace_otel.sdk")

_DATA_EXTENSIONS = frozenset({"csv", "pq", "parquet", "txt", "md", "rtf", "tsv", "xml", "pdf", "mlt"})
_MODEL_EXTENSIONS = frozenset({"h5", "hdf5", "joblib", "pkl", "pickle", "ckpt", "mlmodel"})

class PointerTypeEnum(enum.Enum):
    """What a pointer names (mltrace's enum; the value is the attribute string)."""

    DATA = "DATA"
    MODEL = "MODEL"
    ENDPOINT = "ENDPOINT"
    UNKNOWN = "UNKNOWN"


def infer_pointer_type(name: str) -> PointerTypeEnum:
    """mltrace's rule: the file extension first (.csv → DATA, .pkl → MODEL, ...), then the name
    ("data" → DATA, "model" → MODEL), else UNKNOWN."""
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext in _DATA_EXTENSIONS:
        return PointerTypeEnum.DATA
    if ext in _MODEL_EXTENSIONS:
        return PointerTypeEnum.MODEL
    low = name.lower()
    if "data" in low:
        return PointerTypeEnum.DATA
    if "model" in low:
        return PointerTypeEnum.MODEL
    return PointerTypeEnum.UNKNOWN


def _as_type(pointer_type: PointerTypeEnum | str | None, name: str) -> PointerTypeEnum:
    if pointer_type is None:
        return infer_pointer_type(name)
    if isinstance(pointer_type, PointerTypeEnum):
        return pointer_type
    try:
        return PointerTypeEnum(str(pointer_type).upper().rsplit(".", 1)[-1])
    except ValueError:
        raise ValueError(
            f"pointer_type {pointer_type!r} is not one of DATA, MODEL, ENDPOINT, UNKNOWN"
        ) from None


_NO_VALUE: Any = ""


class IOPointer:
    """An input or output of a run: a name, optionally a value (fingerprinted, never stored).

    Args:
        name: the pointer's name (file path, table, id). Non-strings are converted with str().
        value: the object behind the name, if known; "" means unknown (mltrace's default).
        pointer_type: DATA, MODEL, ENDPOINT or UNKNOWN; None infers it from the name.
        flag: whether the output is flagged for review (a store-side state; kept for mltrace).
    """

    __slots__ = ("_name", "_value", "_type", "_flag", "_version")

    def __init__(self, name: str, value: Any = "", pointer_type: PointerTypeEnum | str | None = None,
                 flag: bool = False, *, version: str | None = None) -> None:
        self._name = name if isinstance(name, str) else str(name)
        self._value = value
        self._type = _as_type(pointer_type, self._name)
        self._flag = bool(flag)
        self._version = version

    @property
    def name(self) -> str:
        return self._name

    @property
    def value(self) -> Any:
        return self._value

    @property
    def pointer_type(self) -> PointerTypeEnum:
        return self._type

    @pointer_type.setter
    def pointer_type(self, pointer_type: PointerTypeEnum) -> None:
        self._type = _as_type(pointer_type, self._name)

    @property
    def flag(self) -> bool:
        return self._flag

    @flag.setter
    def flag(self, flag: bool) -> None:
        self._flag = bool(flag)

    @property
    def version(self) -> str:
        """Content fingerprint of the value ("" when the value is unknown); computed once.

        A pointer with no value stays unversioned (``_version`` None) so a run can still give it
        the version of the file it names (:func:`with_file_version`)."""
        if self._version is None:
            v = self._value
            if isinstance(v, str) and v == "":
                return ""
            self._version = fingerprint(v)
        return self._version

    def to_dictionary(self) -> dict[str, Any]:
        return {"name": self._name, "value": self._value, "pointer_type": self._type,
                "flag": self._flag}

    @classmethod
    def from_dictionary(cls, d: dict[str, Any]) -> IOPointer:
        return cls(d["name"], d.get("value", ""), d.get("pointer_type"), d.get("flag", False),
                   version=d.get("version"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IOPointer):
            return NotImplemented
        return self._name == other._name and self._type == other._type

    def __hash__(self) -> int:
        return hash((self._name, self._type))

    def __repr__(self) -> str:
        extra = f", version={self._version!r}" if self._version else ""
        return f"IOPointer(name={self._name!r}, pointer_type={self._type.value}{extra})"


# --- fingerprints ----------------------------------------------------------------------------


def fingerprint(value: Any) -> str:
    """A content hash (32 hex chars) of ``value``; "" when it cannot be computed.

    DataFrames hash every cell (``pandas.util.hash_pandas_object``) plus columns and dtypes;
    arrays their dtype, shape and bytes; paths (``os.PathLike``) the version of the file or
    directory (:func:`mltrace_otel.sdk.files.file_version`: the same as a plain-string name of
    that file gets; "" for a missing path); other objects their pickle. Never raises.
    """
    if isinstance(value, os.PathLike):
        return _path_version(value)
    try:
        h = hashlib.blake2b(digest_size=16)
        _feed(h, value, 0)
        return h.hexdigest()
    except Exception as e:  # noqa: BLE001 - telemetry never breaks the host program
        _log.debug("mltrace: cannot fingerprint %s: %s", type(value).__name__, e)
        return ""


def _feed(h: Any, v: Any, depth: int) -> None:
    if depth > 50:
        raise ValueError("value nested too deeply")
    t = type(v)
    if v is None:
        h.update(b"\x00N")
    elif t is bool:
        h.update(b"\x00?1" if v else b"\x00?0")
    elif t is str:
        b = v.encode("utf-8", "surrogatepass")
        h.update(b"\x00s" + struct.pack("<Q", len(b)))
        h.update(b)
    elif t in (bytes, bytearray, memoryview):
        b = bytes(v)
        h.update(b"\x00b" + struct.pack("<Q", len(b)))
        h.update(b)
    elif t in (int, float, complex):
        h.update(b"\x00n" + t.__name__.encode() + repr(v).encode())
    elif isinstance(v, os.PathLike):
        h.update(b"\x00f" + _path_version(v).encode())
    elif t.__module__.startswith("numpy") and t.__name__ == "ndarray":
        _feed_ndarray(h, v)
    elif t.__module__.startswith("pandas") and t.__name__ in ("DataFrame", "Series", "Index"):
        _feed_pandas(h, v)
    elif t.__module__.startswith("numpy") and hasattr(v, "dtype") and hasattr(v, "tobytes"):
        h.update(b"\x00g" + str(v.dtype).encode() + v.tobytes())  # numpy scalar
    elif t in (list, tuple):
        h.update(b"\x00l" + t.__name__.encode() + struct.pack("<Q", len(v)))
        for x in v:
            _feed(h, x, depth + 1)
    elif t is dict:
        items = sorted(((fingerprint(k), x) for k, x in v.items()), key=lambda kv: kv[0])
        h.update(b"\x00d" + struct.pack("<Q", len(items)))
        for fk, x in items:
            h.update(fk.encode())
            _feed(h, x, depth + 1)
    elif t in (set, frozenset):
        fps = sorted(fingerprint(x) for x in v)
        h.update(b"\x00S" + "".join(fps).encode())
    else:
        h.update(b"\x00p" + t.__module__.encode() + b"." + t.__qualname__.encode())
        h.update(pickle.dumps(v, protocol=5))


def _feed_ndarray(h: Any, a: Any) -> None:
    h.update(b"\x00a" + a.dtype.str.encode() + repr(a.shape).encode())
    if a.dtype.hasobject:
        for x in a.ravel(order="C").tolist():
            _feed(h, x, 1)
        return
    import numpy as np

    h.update(memoryview(np.ascontiguousarray(a)).cast("B"))


def _feed_pandas(h: Any, obj: Any) -> None:
    import pandas as pd

    kind = type(obj).__name__
    h.update(b"\x00P" + kind.encode() + repr(obj.shape).encode())
    if kind == "DataFrame":
        for c in obj.columns:
            _feed(h, c if isinstance(c, (str, int, float, tuple)) else str(c), 1)
        h.update(repr([str(d) for d in obj.dtypes]).encode())
    else:
        h.update(repr(str(obj.dtype)).encode() + repr(getattr(obj, "name", None)).encode())
    try:
        hashed = pd.util.hash_pandas_object(obj, index=kind != "Index")
        h.update(memoryview(hashed.to_numpy()).cast("B"))
    except TypeError:  # unhashable cells (lists, dicts): fall back to the pickle
        h.update(pickle.dumps(obj, protocol=5))


def _path_version(p: os.PathLike) -> str:
    try:
        return files.file_version(os.fsdecode(os.fspath(p)))
    except Exception:  # noqa: BLE001 - a PathLike whose __fspath__ fails
        return ""


def needs_file_version(p: IOPointer) -> bool:
    """Whether a run should look up the file ``p`` names: it has no value and no version."""
    return p._version is None and isinstance(p._value, str) and p._value == ""


def with_file_version(p: IOPointer, known: Mapping[str, str] | None = None) -> IOPointer:
    """``p`` itself when it carries a value or a version; else a copy whose version is the
    version of the local file it names (``known[p.name]`` when given: a version taken earlier,
    e.g. before the function ran); ``p`` itself when it names none. The original is never
    changed, so a pointer shared between runs never carries one run's version into the next."""
    if not needs_file_version(p):
        return p
    v = known.get(p._name) if known else None
    if v is None:
        v = files.file_version(p._name)
    return IOPointer(p._name, "", p._type, p._flag, version=v) if v else p
