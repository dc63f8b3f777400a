"""IO pointers (the names a run reads and writes), their types, and content fingerprints.

A pointer is a name (a file path, a table, a record id). When its value is known (input_kwargs /
output_kwargs, auto_log, save/load, ``IOPointer(value=...)``) the run also records a content
**fingerprint** of the value, so the store can tell versions of the same name apart, and link a
run to the run that wrote the version it read, in any process (rules in
:mod:`mltrace_otel.sdk.fingerprints`: canonical per kind of value, ``w:``-prefixed *weak*
versions where no rule applies).
When no value is known and the name is a local file or directory, a run records that file's
version instead (:func:`with_file_version`, rules in :mod:`mltrace_otel.sdk.files`), taken
before the function runs for inputs and after it returns for outputs.

Imports nothing heavy at module level (pandas and numpy are recognised by type name, never
imported here). Nothing in this module raises into user code while fingerprinting.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Any

from mltrace_otel.sdk import files
from mltrace_otel.sdk.fingerprints import fingerprint, version_kind

__all__ = ["IOPointer", "PointerTypeEnum", "fingerprint", "infer_pointer_type", "needs_file_version",
           "version_kind", "with_file_version"]

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


_inferred: dict[str, PointerTypeEnum] = {}  # name -> its inferred type (names repeat run after run)
_INFERRED_MAX = 10_000


def _as_type(pointer_type: PointerTypeEnum | str | None, name: str) -> PointerTypeEnum:
    if pointer_type is None:
        t = _inferred.get(name)
        if t is None:
            t = infer_pointer_type(name)
            if len(_inferred) >= _INFERRED_MAX:
                _inferred.clear()
            _inferred[name] = t
        return t
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

    @property
    def version_kind(self) -> str:
        """``"content"`` (a canonical fingerprint, or a file's content), ``"weak"`` (class + repr,
        mltrace's rule, for values no fingerprint rule covers) or ``""`` (no version)."""
        return version_kind(self.version)

    def to_dictionary(self) -> dict[str, Any]:
        return {"name": self._name, "value": self._value, "pointer_type": self._type,
                "flag": self._flag}

    # --- mltrace 0.17's dict form: its query functions returned pointers as dicts ------------
    _KEYS = ("name", "value", "pointer_type", "flag", "version", "version_kind")

    def __getitem__(self, key: str) -> Any:
        """``p["name"]``, ``p["value"]``, ``p["pointer_type"]``, ``p["flag"]`` (and ``"version"``,
        ``"version_kind"``), as on mltrace 0.17's dicts. ``p["value"]`` of a pointer read from
        the store (whose value is never stored) is its version, as 0.17 gave the stored hash.

        Raises:
            KeyError: any other key.
        """
        if key not in self._KEYS:
            raise KeyError(key)
        if key == "value":
            v = self._value
            return self.version if isinstance(v, str) and v == "" else v
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """``p[key]``, or ``default`` for a key the dict form does not have."""
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self) -> tuple[str, ...]:
        """The keys of the dict form (so ``dict(p)`` works)."""
        return self._KEYS

    def __contains__(self, key: object) -> bool:
        return key in self._KEYS

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


def needs_file_version(p: IOPointer) -> bool:
    """Whether a run should look up the file ``p`` names: it has no value and no version."""
    return p._version is None and isinstance(p._value, str) and p._value == ""


def with_file_version(p: IOPointer, known: Mapping[str, str] | None = None) -> IOPointer:
    """``p`` itself when it carries a value or a version; else a copy whose version is the
    version of the local file it names (``known[p.name]`` when given: a version taken earlier,
    e.g. before the function ran); ``p`` itself when it names none. The original is never
    changed, so a pointer shared between runs never carries one run's version into the next."""
    if p._version is not None or not isinstance(p._value, str) or p._value != "":  # needs_file_version
        return p
    v = known.get(p._name) if known else None
    if v is None:
        v = files.file_version(p._name)
    return IOPointer(p._name, "", p._type, p._flag, version=v) if v else p
