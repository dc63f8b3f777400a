"""Canonical fingerprints: the version of a value, the same in every process for the same content.

A run records a version for each input and output whose value it knows, and the store links a
consumer to the run that wrote that version. mltrace 0.17 used ``sha256(repr(value))``, which
links values across processes but collides wherever ``repr`` truncates (large DataFrames and
arrays). A hash of the pickle does not collide but is not canonical: the same fitted
scikit-learn model pickles differently in the process that trained it and in every process
that loads it (tree node arrays are numpy structured arrays whose padding bytes are whatever
memory held), and ``joblib.hash`` differs too. So a value is encoded canonically, rule by rule,
into one blake2b hash (128 bits, 32 hex chars):

=====================  ===========================================================================
value                  what is hashed
=====================  ===========================================================================
None, bool, int, str,  type tag and value; floats (and complex parts) by their IEEE-754 bit pattern;
float, complex, bytes  str as UTF-8; bytes as they are. Lists of only ints, of only floats, and of
                       only ints/strs/bools/None are encoded in bulk (fast)
list, tuple            type, length, each item in order
dict                   items sorted by the fingerprint of the key (insertion order is ignored)
set, frozenset         the sorted fingerprints of the items
numpy array            dtype (byte order normalised to little-endian), shape, then the C-order
                       bytes of each field: a structured dtype field by field, by name, so padding
                       bytes never count; object and variable-width string arrays item by item
numpy scalar / dtype   as a 0-d array / by its description
pandas DataFrame,      ``pandas.util.hash_pandas_object`` (every cell and the index values), plus
Series, Index          the columns (in order), dtypes, the Series name and the index names and dtype
path (``os.PathLike``) the content version of the file or directory it names (:mod:`.files`)
function, class,       its module and qualified name (what pickle stores for them)
module
any other object       its class and its pickled state, taken apart canonically: the result of
                       ``copyreg``'s reducer or ``__reduce_ex__(5)`` (constructor, arguments, state,
                       list items, dict items), each part by these same rules. This covers
                       scikit-learn estimators (``__getstate__``), their Cython trees, random states,
                       datetimes, enums, dataclasses and plain classes, recursively; a reference
                       back to an object being encoded (a cycle) is encoded as its distance up the path
=====================  ===========================================================================

Where no rule applies (an object that cannot be reduced: a lock, a file, a generator, a C
object without pickle support; a structure nested deeper than :data:`MAX_DEPTH` or bigger
than :data:`MAX_NODES`) the fingerprint falls back to a **weak** identity, mltrace's rule: the
class and ``repr`` of that part. A version with any weak part is prefixed
:data:`mltrace_otel.conventions.WEAK_VERSION_PREFIX` (``w:``) so readers can tell it from a
content version, and equal strings still match in the store. A weak version can link two
different values whose repr is the same (mltrace's collision) or fail to link equal values
whose repr holds a memory address.

Imports the standard library only; numpy and pandas are used only when the value is one of
theirs (found in ``sys.modules``, never imported here). Never raises.
"""

from __future__ import annotations

import array
import copyreg
import hashlib
import json
import logging
import os
import struct
import sys
import types
from typing import Any

from mltrace_otel import conventions as C
from mltrace_otel.sdk import files

_log = logging.getLogger("mltrace_otel.sdk")

CONTENT = "content"
"""Version kind: a canonical encoding of the whole value."""
WEAK = "weak"
"""Version kind: some part of the value had no rule and was identified by class + repr."""

MAX_DEPTH = 100
"""Nesting beyond this makes the value's version weak (the encoder recurses)."""
MAX_NODES = 1_000_000
"""Objects (containers, instances) encoded per value beyond which its version is weak."""

_CHUNK = 65536
_PRIMITIVE_JSON = frozenset({int, str, bool, type(None)})
_REF_TYPES = (types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType,
              types.ModuleType, type)


_blake2b = hashlib.blake2b
_pack_q = struct.Struct("<Q").pack
_pack_d = struct.Struct("<d").pack
_SMALL = 64
_FLOATS = {float}
_LIST_HEADS = {list: b"\x00llist", tuple: b"\x00ltuple"}
_pack_ds = [struct.Struct(f"<{n}d").pack for n in range(_SMALL + 1)]
"""Packers of up to _SMALL doubles, for the small-float-sequence path of :func:`fingerprint`."""


class _TooBig(Exception):
    """The value is nested deeper than MAX_DEPTH or holds more than MAX_NODES objects."""


def fingerprint(value: Any) -> str:
    """The version of ``value``: 32 hex chars, prefixed ``w:`` when weak; "" when none can be
    computed (a path naming no file, a value whose repr fails). Never raises."""
    t = type(value)
    if t is str:  # the common case, encoded as _Encoder.feed does
        b = value.encode("utf-8", "surrogatepass")
        h = _blake2b(b"\x00s" + _pack_q(len(b)), digest_size=16)
        h.update(b)
        return h.hexdigest()
    if t is float:
        return _blake2b(b"\x00d" + _pack_d(value), digest_size=16).hexdigest()
    if (t is list or t is tuple) and 0 < len(value) <= _SMALL and set(map(type, value)) == _FLOATS:
        # a few floats (metrics, a prediction): the bytes _Encoder writes for them, in one go
        n = len(value)
        return _blake2b(_LIST_HEADS[t] + _pack_q(n) + b"F" + _pack_ds[n](*value), digest_size=16).hexdigest()
    if t is not list and t is not dict and t is not tuple and isinstance(value, os.PathLike):
        return _path_version(value)
    try:
        enc = _Encoder()
        try:
            enc.feed(value, 0)
        except (_TooBig, RecursionError):
            return _weak_only(value)
        digest = enc.h.hexdigest()
        return C.WEAK_VERSION_PREFIX + digest if enc.weak else digest
    except Exception as e:  # noqa: BLE001 - telemetry never breaks the host program
        _log.debug("mltrace: cannot fingerprint %s: %s", type(value).__name__, e)
        return ""


def version_kind(version: str) -> str:
    """``"content"``, ``"weak"``, or ``""`` for no version."""
    if not version:
        return ""
    return WEAK if version.startswith(C.WEAK_VERSION_PREFIX) else CONTENT


def _weak_only(value: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    _weak_part(h, value)
    return C.WEAK_VERSION_PREFIX + h.hexdigest()


def _weak_part(h: Any, v: Any) -> None:
    t = type(v)
    h.update(b"\x00W" + f"{t.__module__}.{t.__qualname__}".encode())
    try:
        r = repr(v)
    except Exception:  # noqa: BLE001 - the class alone, then
        r = ""
    b = r.encode("utf-8", "surrogatepass")
    h.update(struct.pack("<Q", len(b)) + b)


def _path_version(p: os.PathLike) -> str:
    try:
        return files.file_version(os.fsdecode(os.fspath(p)))
    except Exception:  # noqa: BLE001 - a PathLike whose __fspath__ fails
        return ""


def _qualname(obj: Any) -> str:
    mod = getattr(obj, "__module__", None) or ""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__qualname__
    return f"{mod}.{name}"


class _Encoder:
    """One value's canonical encoding, streamed into one hash."""

    __slots__ = ("h", "weak", "path", "nodes")

    def __init__(self) -> None:
        self.h = hashlib.blake2b(digest_size=16)
        self.weak = False
        self.path: list[int] = []  # ids of the objects being encoded (for cycles)
        self.nodes = 0

    def sub(self, v: Any, depth: int) -> bytes:
        """The digest of ``v`` encoded on its own (dict keys, set items); shares weakness."""
        e = _Encoder()
        e.path = self.path
        e.nodes = self.nodes
        e.feed(v, depth)
        self.nodes = e.nodes
        self.weak = self.weak or e.weak
        return e.h.digest()

    def feed(self, v: Any, depth: int) -> None:  # noqa: C901 - one rule per kind of value
        h = self.h
        t = type(v)
        if v is None:
            h.update(b"\x00N")
        elif t is bool:
            h.update(b"\x00?1" if v else b"\x00?0")
        elif t is int:
            h.update(b"\x00i" + format(v, "x").encode() + b";")
        elif t is float:
            h.update(b"\x00d" + struct.pack("<d", v))
        elif t is str:
            b = v.encode("utf-8", "surrogatepass")
            h.update(b"\x00s" + struct.pack("<Q", len(b)))
            h.update(b)
        elif t is bytes or t is bytearray or t is memoryview:
            b = bytes(v)
            h.update(b"\x00b" + struct.pack("<Q", len(b)))
            h.update(b)
        elif t is complex:
            h.update(b"\x00c" + struct.pack("<dd", v.real, v.imag))
        else:
            self.container(v, t, depth)

    def container(self, v: Any, t: type, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _TooBig
        vid = id(v)
        if vid in self.path:  # a cycle: say how far up the path the object is
            self.h.update(b"\x00R" + struct.pack("<Q", len(self.path) - self.path.index(vid)))
            return
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig
        self.path.append(vid)
        try:
            self.dispatch(v, t, depth + 1)
        finally:
            self.path.pop()

    def dispatch(self, v: Any, t: type, depth: int) -> None:
        h = self.h
        if t is list or t is tuple:
            h.update(b"\x00l" + t.__name__.encode() + struct.pack("<Q", len(v)))
            self.items(v, depth)
        elif t is dict:
            h.update(b"\x00D" + struct.pack("<Q", len(v)))
            self.mapping(list(v.items()), depth)
        elif t is set or t is frozenset:
            digests = sorted(self.sub(x, depth) for x in v)
            h.update(b"\x00S" + t.__name__.encode() + struct.pack("<Q", len(digests)))
            h.update(b"".join(digests))
        elif isinstance(v, os.PathLike):
            h.update(b"\x00f" + _path_version(v).encode())
        elif _is_numpy(t):
            self.numpy(v, depth)
        elif _is_pandas(t) and self.pandas(v, depth):
            pass
        elif isinstance(v, _REF_TYPES):
            h.update(b"\x00G" + _qualname(v).encode())
        else:
            self.reduced(v, t, depth)

    def items(self, v: Any, depth: int) -> None:
        """A sequence's items in order; all-primitive and all-float ones in bulk."""
        kinds = set(map(type, v))
        if kinds == {int}:  # 64-bit ints in bulk; a chunk holding a bigger one as JSON text
            self.h.update(b"I")
            for i in range(0, len(v), _CHUNK):
                chunk = v[i:i + _CHUNK]
                try:
                    self.h.update(b"q" + array.array("q", chunk).tobytes())
                except OverflowError:
                    self.h.update(b"j" + _json_ints(chunk))
            return
        if kinds and kinds <= _PRIMITIVE_JSON:
            self.h.update(b"J")
            try:
                for i in range(0, len(v), _CHUNK):
                    self.h.update(json.dumps(list(v[i:i + _CHUNK]), ensure_ascii=True,
                                             separators=(",", ":")).encode())
                return
            except ValueError:  # an int too long for decimal text: (deterministically) item by item
                pass
        if kinds == {float}:
            self.h.update(b"F")
            for i in range(0, len(v), _CHUNK):
                chunk = v[i:i + _CHUNK]
                self.h.update(struct.pack(f"<{len(chunk)}d", *chunk))
            return
        self.h.update(b"E")
        for x in v:
            self.feed(x, depth)

    def mapping(self, pairs: list[tuple[Any, Any]], depth: int) -> None:
        keyed = sorted(((self.sub(k, depth), x) for k, x in pairs), key=lambda kv: kv[0])
        for dk, x in keyed:
            self.h.update(dk)
            self.feed(x, depth)

    # --- numpy -----------------------------------------------------------------------------
    def numpy(self, v: Any, depth: int) -> None:
        np = sys.modules["numpy"]
        if isinstance(v, np.ndarray):
            self.ndarray(v, depth)
            if type(v) is not np.ndarray:  # a subclass: its class and its own attributes
                self.h.update(b"\x00<" + _qualname(type(v)).encode())
                self.feed(dict(getattr(v, "__dict__", {}) or {}), depth)
        elif isinstance(v, np.generic):
            self.h.update(b"\x00g")
            self.ndarray(np.asarray(v), depth)
        elif isinstance(v, np.dtype):
            self.h.update(b"\x00t" + _dtype_text(v).encode())
        else:
            self.reduced(v, type(v), depth)

    def ndarray(self, a: Any, depth: int) -> None:
        np = sys.modules["numpy"]
        dt = a.dtype
        h = self.h
        h.update(b"\x00a" + struct.pack("<Q", a.ndim) + struct.pack(f"<{a.ndim}Q", *a.shape))
        if dt.names is not None:  # structured: field by field, never the padding between them
            h.update(b"r" + struct.pack("<Q", len(dt.names)))
            for name in dt.names:
                self.feed(name, depth)
                self.ndarray(a[name], depth)
            return
        if dt.hasobject or dt.kind == "T":  # Python objects / variable-width strings
            h.update(b"o" + dt.kind.encode())
            self.items(a.ravel(order="C").tolist(), depth)
            return
        if dt.byteorder == ">":
            dt = dt.newbyteorder("<")
        h.update(b"n" + _dtype_text(dt).encode() + b";")
        c = np.ascontiguousarray(a, dtype=dt)
        if c.size:
            h.update(c.reshape(-1).view(np.uint8).data)

    # --- pandas ----------------------------------------------------------------------------
    def pandas(self, obj: Any, depth: int) -> bool:
        pd = sys.modules["pandas"]
        h = self.h
        if isinstance(obj, pd.DataFrame):
            h.update(b"\x00PF" + struct.pack("<QQ", *obj.shape))
            self.feed(list(obj.columns), depth)
            self.feed([str(d) for d in obj.dtypes], depth)
            self.index_meta(obj.index, depth)
        elif isinstance(obj, pd.Series):
            h.update(b"\x00PS" + struct.pack("<Q", len(obj)))
            self.feed(obj.name, depth)
            self.feed(str(obj.dtype), depth)
            self.index_meta(obj.index, depth)
        elif isinstance(obj, pd.Index):
            h.update(b"\x00PI")
            self.index_meta(obj, depth)
        else:
            return False
        try:
            hashed = pd.util.hash_pandas_object(obj, index=not isinstance(obj, pd.Index))
            h.update(b"h")
            h.update(memoryview(hashed.to_numpy()).cast("B"))
        except TypeError:  # unhashable cells (lists, dicts): the index and the cells, one by one
            h.update(b"v")
            index = obj if isinstance(obj, pd.Index) else obj.index
            self.items(list(index), depth)
            if not isinstance(obj, pd.Index):
                self.ndarray(obj.to_numpy(dtype=object), depth)
        return True

    def index_meta(self, index: Any, depth: int) -> None:
        self.feed(list(index.names), depth)
        self.feed(str(index.dtype), depth)

    # --- everything else -------------------------------------------------------------------
    def reduced(self, v: Any, t: type, depth: int) -> None:
        """An object by its pickled state, canonically; weak (class + repr) when it has none."""
        try:
            reducer = copyreg.dispatch_table.get(t)
            rv = reducer(v) if reducer is not None else v.__reduce_ex__(5)
        except Exception:  # noqa: BLE001 - cannot be pickled: mltrace's weak identity
            self.weak = True
            _weak_part(self.h, v)
            return
        h = self.h
        if isinstance(rv, str):  # a global, pickled by name
            h.update(b"\x00G" + f"{getattr(v, '__module__', '')}.{rv}".encode())
            return
        h.update(b"\x00O" + _qualname(t).encode())
        rv = tuple(rv) + (None,) * (6 - len(rv))
        func, args, state, list_items, dict_items = rv[:5]
        h.update(b"c" + _qualname(func).encode())
        self.feed(tuple(args or ()), depth)
        self.feed(state, depth)
        if list_items is not None:
            h.update(b"L")
            self.items(list(list_items), depth)
        if dict_items is not None:
            pairs = list(dict_items)
            h.update(b"M" + struct.pack("<Q", len(pairs)))
            self.mapping(pairs, depth)


def _json_ints(chunk: Any) -> bytes:
    """Ints as JSON text; ints too long for decimal text (Python's limit) in hex."""
    try:
        return json.dumps(list(chunk), separators=(",", ":")).encode()
    except ValueError:
        return ",".join(format(x, "x") for x in chunk).encode()


def _is_numpy(t: type) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and (t.__module__.partition(".")[0] == "numpy" or issubclass(t, np.ndarray))


def _is_pandas(t: type) -> bool:
    return "pandas" in sys.modules and t.__module__.partition(".")[0] == "pandas"


def _dtype_text(dt: Any) -> str:
    """A dtype's canonical text: its descr (fields, offsets, byte order) for structured ones."""
    if dt.names is not None:
        return repr(dt.descr)
    return dt.str
