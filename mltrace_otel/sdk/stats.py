"""Output statistics: compact, mergeable summaries of numeric outputs, sent as span events.

The SDK calls :func:`output_events` with a run's outputs (name -> value) and adds one span event
named ``mltrace.output.stats`` (:data:`~mltrace_otel.conventions.EVENT_OUTPUT_STATS`) per
returned attribute dict. The store and ``/metrics`` turn them into Prometheus series, so a shift
in a model's predictions shows up as a moving quantile.

What is summarized (anything else yields no event):

- a number (int, float, bool, numpy scalar): one value;
- a numpy array, or a list / tuple of numbers (``None`` and NaN count as nulls): all its values,
  flattened; an *empty* numpy array of a numeric dtype gives an event with count 0, an empty list
  gives none (its type is unknown);
- a pandas Series of a numeric or bool dtype (nullable ``Int64``/``Float64`` included): one event;
- a pandas DataFrame: one event per numeric / bool column (``mltrace.output.column`` = column name).

At most :data:`MAX_EVENTS` events per run. Non-finite values (NaN, None, pd.NA, ±inf) count as
nulls and are left out of min/max/mean/sum and the sketch. Counting, min, max and sum use every
value (vectorized numpy); the sketch is built from at most :data:`SKETCH_MAX_VALUES` values, a
deterministic stride sample whose counts are scaled back up by the stride.

Event attributes (names from :mod:`mltrace_otel.conventions`): ``mltrace.output.name`` (str),
``mltrace.output.column`` (str, "" unless a DataFrame column), ``mltrace.output.count`` (int,
nulls included), ``mltrace.output.nulls`` (int), ``mltrace.output.min`` / ``.max`` / ``.mean`` /
``.sum`` (double; absent when every value is null), ``mltrace.output.sketch`` (str, below).

Sketch format, version 1 (a DDSketch-style log-bucket histogram; emit it from any language)::

    {"v":1,"a":0.01,"pk":[k0,d1,d2,...],"pc":[c0,c1,...],"nk":[...],"nc":[...],"z":Z}

- ``a`` = relative accuracy α = 0.01; γ = (1+α)/(1−α).
- A value x with |x| < 1e-9 counts in ``z`` (zeros). Otherwise its key is
  k = ceil(ln|x| / ln γ); positive values go to the ``p`` store, negative ones to ``n``.
- ``pk`` / ``nk``: the store's keys ascending, delta-encoded: the first is the key itself, each
  next one is the difference to the previous key (always > 0). ``pc`` / ``nc``: the count of
  each key (integers). Empty stores may be omitted.
- Bucket k stands for the value 2·γ^k/(γ+1) (negated in the ``n`` store): every x in it lies
  within relative error α of it. A store keeps at most :data:`MAX_BINS` keys; past that its
  smallest-magnitude keys are folded into the smallest kept one.
- Merging = adding counts key by key (same α). Quantile q of n values: the value of the bucket
  holding rank q·(n−1) when walking from the most negative bucket (``n`` store, largest key
  first), through zeros, to the largest ``p`` key.

Imports nothing heavy at module level: numpy is imported only for arrays and lists, pandas never
(a pandas value is recognized by its type's module name). Must never raise into user code.
"""

from __future__ import annotations

import json
import logging
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate
from typing import Any

from mltrace_otel import conventions as C

logger = logging.getLogger(__name__)

RELATIVE_ACCURACY = 0.01
"""α of the sketch: quantiles are within 1% (relative) of a value of the data."""
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
LN_GAMMA = math.log(GAMMA)
ZERO_THRESHOLD = 1e-9
"""Values with a smaller magnitude count as zeros in the sketch."""
MAX_BINS = 2048
"""Most keys one store of a sketch keeps."""
MAX_EVENTS = 64
"""Most output-stats events per run (outputs and DataFrame columns, in the order given)."""
SKETCH_MAX_VALUES = 1_000_000
"""Most values fed to one sketch; larger outputs are stride-sampled (counts scaled back)."""
SKETCH_VERSION = 1
SMALL_SEQUENCE = 32
"""Lists and tuples up to this length are summarized in pure Python, longer ones with numpy
(the same summary either way, up to the last bits of the sum)."""
_JSON_HEAD = f'{{"v":{SKETCH_VERSION},"a":{RELATIVE_ACCURACY!r}'
_EMPTY_JSON = _JSON_HEAD + "}"
_PY_NUMBERS = frozenset({int, float, bool})


# --- the sketch -------------------------------------------------------------------------------
class Sketch:
    """A mergeable quantile sketch (format version 1, see the module docstring).

    ``pos`` / ``neg``: key -> count; ``zeros``: count of near-zero values.
    """

    __slots__ = ("pos", "neg", "zeros")

    def __init__(self) -> None:
        self.pos: dict[int, int] = {}
        self.neg: dict[int, int] = {}
        self.zeros = 0

    @property
    def count(self) -> int:
        """Number of values the sketch holds."""
        return self.zeros + sum(self.pos.values()) + sum(self.neg.values())

    def add(self, x: float, weight: int = 1) -> None:
        """Add one finite value."""
        if abs(x) < ZERO_THRESHOLD:
            self.zeros += weight
            return
        store = self.pos if x > 0 else self.neg
        k = math.ceil(math.log(abs(x)) / LN_GAMMA)
        store[k] = store.get(k, 0) + weight

    def merge(self, other: Sketch) -> Sketch:
        """Add another sketch's counts into this one; returns self."""
        self.zeros += other.zeros
        for mine, theirs in ((self.pos, other.pos), (self.neg, other.neg)):
            for k, c in theirs.items():
                mine[k] = mine.get(k, 0) + c
        return self

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 <= q <= 1), within relative accuracy α; None when empty."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """Several quantiles in one walk over the buckets (None each when empty)."""
        n = self.count
        if n == 0:
            return [None] * len(qs)
        order = sorted(range(len(qs)), key=lambda i: qs[i])
        out: list[float | None] = [None] * len(qs)
        buckets = [(-_bucket_value(k), self.neg[k]) for k in sorted(self.neg, reverse=True)]
        if self.zeros:
            buckets.append((0.0, self.zeros))
        buckets += [(_bucket_value(k), self.pos[k]) for k in sorted(self.pos)]
        j, seen = 0, 0
        for value, c in buckets:
            seen += c
            while j < len(order) and seen > qs[order[j]] * (n - 1):
                out[order[j]] = value
                j += 1
            if j == len(order):
                break
        for i in order[j:]:
            out[i] = buckets[-1][0]
        return out

    def to_json(self) -> str:
        """The compact JSON form (format version 1)."""
        # written directly (every run's output event has one): what json.dumps(separators=(",", ":"))
        # gives for {"v", "a", "pk", "pc", "nk", "nc", "z"} with int keys and counts
        pos, neg, zeros = self.pos, self.neg, self.zeros
        text = _JSON_HEAD
        if pos:
            text += _store_json("p", pos)
        if neg:
            text += _store_json("n", neg)
        if zeros:
            text += f',"z":{int(zeros)}'
        return text + "}"

    @classmethod
    def from_json(cls, text: str) -> Sketch:
        """Parse the JSON form; ValueError when it is not a version-1 sketch with α = 0.01."""
        d = json.loads(text)
        if not isinstance(d, dict) or d.get("v") != SKETCH_VERSION or d.get("a") != RELATIVE_ACCURACY:
            raise ValueError("not a version-1 mltrace sketch with relative accuracy 0.01")
        s = cls()
        s.zeros = int(d.get("z", 0))
        for prefix, store in (("p", s.pos), ("n", s.neg)):
            keys, counts = d.get(prefix + "k", []), d.get(prefix + "c", [])
            if len(keys) != len(counts):
                raise ValueError("sketch keys and counts differ in length")
            for k, c in zip(accumulate(int(dk) for dk in keys), counts, strict=True):
                store[k] = store.get(k, 0) + int(c)
        return s


def _bucket_value(k: int) -> float:
    return 2.0 * GAMMA**k / (GAMMA + 1.0)


def _store_json(prefix: str, store: dict[int, int]) -> str:
    """``,"<p>k":[key deltas],"<p>c":[counts]`` of one side of a sketch (collapsed first)."""
    _collapse(store)
    keys = sorted(store)
    deltas = map(operator.sub, keys, [0, *keys[:-1]])  # the first key, then differences
    return (f',"{prefix}k":[{",".join(map(str, deltas))}]'
            f',"{prefix}c":[{",".join(map(str, map(store.__getitem__, keys)))}]')


def _collapse(store: dict[int, int]) -> None:
    if len(store) <= MAX_BINS:
        return
    keys = sorted(store)
    cut = keys[len(keys) - MAX_BINS]
    folded = sum(store.pop(k) for k in keys[: len(keys) - MAX_BINS])
    store[cut] += folded


def sketch_of(values: Iterable[float]) -> Sketch:
    """A sketch of finite numbers (pure Python; the numpy path in this module gives the same)."""
    s = Sketch()
    pos, neg, zeros = s.pos, s.neg, 0
    isfinite, log, ceil = math.isfinite, math.log, math.ceil
    for x in values:  # Sketch.add, inlined
        if not isfinite(x):
            continue
        a = abs(x)
        if a < ZERO_THRESHOLD:
            zeros += 1
            continue
        store = pos if x > 0 else neg
        k = ceil(log(a) / LN_GAMMA)
        store[k] = store.get(k, 0) + 1
    s.zeros = zeros
    return s


# --- summaries --------------------------------------------------------------------------------
def output_events(outputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Span-event attribute dicts summarizing each numeric output value (number, array,
    DataFrame column); [] for values that are not numeric. Never raises.

    Args:
        outputs: output name (pointer or local variable name) -> value.

    Returns:
        One attribute dict per summarized value, at most :data:`MAX_EVENTS`.
    """
    events: list[dict[str, Any]] = []
    try:
        items = list(outputs.items())
    except Exception:  # noqa: BLE001 - telemetry never breaks the host program
        logger.debug("mltrace: outputs are not a mapping", exc_info=True)
        return events
    for name, value in items:
        if len(events) >= MAX_EVENTS:
            break
        try:
            for column, attrs in _summaries(value):
                if len(events) >= MAX_EVENTS:
                    break
                attrs[C.STATS_OUTPUT] = str(name)
                attrs[C.STATS_COLUMN] = column
                events.append(attrs)
        except Exception:  # noqa: BLE001
            logger.debug("mltrace: could not summarize output %r", name, exc_info=True)
    return events


def _summaries(value: Any) -> list[tuple[str, dict[str, Any]]]:
    """(column, attributes) pairs for one output value; [] when it is not numeric."""
    if isinstance(value, (bool, int, float)):
        return [("", _scalar(float(value)))]
    cls = type(value)
    module = cls.__module__ or ""
    if module.startswith("pandas"):
        return _pandas(value, cls.__name__)
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            return _array(value)
        if isinstance(value, (np.bool_, np.integer, np.floating)):
            return [("", _scalar(float(value)))]
        return []
    if isinstance(value, (list, tuple)):
        return _sequence(value)
    return []


def _scalar(x: float) -> dict[str, Any]:
    if not math.isfinite(x):
        return {C.STATS_COUNT: 1, C.STATS_NULLS: 1, C.STATS_SKETCH: _EMPTY_JSON}
    return {C.STATS_COUNT: 1, C.STATS_NULLS: 0, C.STATS_MIN: x, C.STATS_MAX: x, C.STATS_MEAN: x,
            C.STATS_SUM: x, C.STATS_SKETCH: _one_value_json(x)}


def _one_value_json(x: float) -> str:
    """``to_json()`` of the sketch of one finite value (memoised by its bucket)."""
    if abs(x) < ZERO_THRESHOLD:
        key: tuple[bool, int] | None = None
    else:
        key = (x > 0, math.ceil(math.log(abs(x)) / LN_GAMMA))
    text = _one_json.get(key)
    if text is None:
        s = Sketch()
        s.add(x)
        text = s.to_json()
        if len(_one_json) >= 4096:
            _one_json.clear()
        _one_json[key] = text
    return text


_one_json: dict[tuple[bool, int] | None, str] = {}


def _is_number(v: Any) -> bool:
    return isinstance(v, (bool, int, float)) or (
        type(v).__module__ == "numpy" and hasattr(v, "dtype") and v.dtype.kind in "biuf")


def _sequence(value: list | tuple) -> list[tuple[str, dict[str, Any]]]:
    if not value:
        return []
    if len(value) <= SMALL_SEQUENCE and set(map(type, value)) <= _PY_NUMBERS:  # plain numbers
        return [("", _summary_py(list(map(float, value))))]
    if not all(v is None or _is_number(v) for v in value):
        return []
    if all(v is None for v in value):
        return [("", {C.STATS_COUNT: len(value), C.STATS_NULLS: len(value),
                      C.STATS_SKETCH: Sketch().to_json()})]
    if len(value) <= SMALL_SEQUENCE:  # numpy's per-call costs exceed the work on a few values
        return [("", _summary_py([math.nan if v is None else float(v) for v in value]))]
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with pandas / the test extra
        return [("", _summary_py([math.nan if v is None else float(v) for v in value]))]
    return _array(np.array([math.nan if v is None else v for v in value], dtype=np.float64))


def _summary_py(xs: list[float]) -> dict[str, Any]:
    finite = xs if all(map(math.isfinite, xs)) else [x for x in xs if math.isfinite(x)]
    n, m = len(xs), len(finite)
    if not m:
        return {C.STATS_COUNT: n, C.STATS_NULLS: n, C.STATS_SKETCH: _EMPTY_JSON}
    total = math.fsum(finite)
    return {C.STATS_COUNT: n, C.STATS_NULLS: n - m, C.STATS_MIN: min(finite), C.STATS_MAX: max(finite),
            C.STATS_MEAN: total / m, C.STATS_SUM: total, C.STATS_SKETCH: sketch_of(finite).to_json()}


def _array(arr: Any) -> list[tuple[str, dict[str, Any]]]:
    import numpy as np

    if arr.dtype.kind not in "biuf":
        return []
    return [("", _summary_np(np.asarray(arr, dtype=np.float64).ravel()))]


def _summary_np(x: Any) -> dict[str, Any]:
    """Summary of a 1-d float64 array (NaN = null)."""
    import numpy as np

    n = int(x.size)
    finite = x[np.isfinite(x)]
    m = int(finite.size)
    attrs: dict[str, Any] = {C.STATS_COUNT: n, C.STATS_NULLS: n - m}
    if m:
        total = float(finite.sum())
        attrs.update({C.STATS_MIN: float(finite.min()), C.STATS_MAX: float(finite.max()),
                      C.STATS_MEAN: total / m, C.STATS_SUM: total})
    attrs[C.STATS_SKETCH] = _sketch_np(finite).to_json()
    return attrs


def _sketch_np(finite: Any) -> Sketch:
    """Vectorized sketch of a finite float64 array (stride-sampled past SKETCH_MAX_VALUES)."""
    import numpy as np

    s = Sketch()
    weight = 1
    if finite.size > SKETCH_MAX_VALUES:
        weight = math.ceil(finite.size / SKETCH_MAX_VALUES)
        finite = finite[::weight]
    mag = np.abs(finite)
    small = mag < ZERO_THRESHOLD
    s.zeros = int(small.sum()) * weight
    for store, sel in ((s.pos, (finite > 0) & ~small), (s.neg, (finite < 0) & ~small)):
        if not sel.any():
            continue
        keys = np.ceil(np.log(mag[sel]) / LN_GAMMA).astype(np.int64)
        low = int(keys.min())
        counts = np.bincount(keys - low)  # keys span at most ~36,000 values: O(n), no sort
        present = np.flatnonzero(counts)
        store.update(zip((present + low).tolist(), (counts[present] * weight).tolist(), strict=True))
    return s


def _pandas(value: Any, cls_name: str) -> list[tuple[str, dict[str, Any]]]:
    import numpy as np

    if cls_name == "Series":
        col = _series_values(value, np)
        return [] if col is None else [("", _summary_np(col))]
    if cls_name == "DataFrame":
        out = []
        for name in value.columns:
            if len(out) >= MAX_EVENTS:
                break
            col = value[name]
            if type(col).__name__ != "Series":  # duplicate column names give a frame
                continue
            arr = _series_values(col, np)
            if arr is not None:
                out.append((str(name), _summary_np(arr)))
        return out
    return []


def _series_values(series: Any, np: Any) -> Any:
    """A numeric / bool Series as float64 with NaN for missing values; None otherwise."""
    kind = getattr(series.dtype, "kind", "O")
    if kind not in "biuf":
        return None
    try:
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        return None
