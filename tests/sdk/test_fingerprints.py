"""Canonical fingerprints: the same version in every process for the same content.

The cross-process tests write a value in one Python process and fingerprint it in that process,
then load it in fresh processes (another hash seed each) and fingerprint it there: scikit-learn
models whose pickles differ between those processes, a model round-tripped through joblib,
DataFrames round-tripped through parquet, nested containers with sets and dicts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mltrace_otel import conventions as C
from mltrace_otel.sdk import fingerprints
from mltrace_otel.sdk.fingerprints import fingerprint, version_kind
from mltrace_otel.sdk.pointers import IOPointer

pytest.importorskip("sklearn")
pytest.importorskip("pyarrow")

HEX32 = 32

# Builds the values in "make" mode (and saves them), loads them in "load" mode; prints
# {"name": [fingerprint, md5 of the pickle]} either way.
_SCRIPT = r"""
import hashlib, json, pickle, sys
import joblib, numpy as np, pandas as pd
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from mltrace_otel.sdk.fingerprints import fingerprint

mode, d = sys.argv[1], sys.argv[2]
rng = np.random.RandomState(0)
X = rng.rand(400, 6)
y = ((X[:, 0] + X[:, 3]) > 1).astype(int)
if mode == "make":
    values = {
        "forest": RandomForestClassifier(n_estimators=15, max_depth=6, random_state=1).fit(X, y),
        "boosting": GradientBoostingClassifier(n_estimators=15, random_state=1).fit(X, y),
        "frame": pd.DataFrame({
            "fare": [5.5, 7.25, float("nan"), 12.0], "n": [1, 2, 3, 4],
            "vendor": ["a", "b", None, "a"],
            "at": pd.to_datetime(["2020-01-01 10:00", "2020-01-02 11:30", "2020-01-03 00:00",
                                  "2020-01-04 23:59"]),
            "zone": pd.Categorical(["x", "y", "x", "z"]),
        }).iloc[[3, 1, 0]],
        "nested": {"b": [1, 2.5, None, {"zone-a", "zone-b", "zone-c"}],
                   "a": (np.arange(6, dtype="int32").reshape(2, 3), {"k": frozenset({"p", "q"})}),
                   "c": {"seed": 7, "names": ("x", "y")}},
    }
    joblib.dump(values["forest"], d + "/forest.joblib")
    joblib.dump(values["boosting"], d + "/boosting.joblib")
    values["frame"].to_parquet(d + "/frame.pq")
    with open(d + "/nested.pkl", "wb") as f:
        pickle.dump(values["nested"], f)
else:
    values = {"forest": joblib.load(d + "/forest.joblib"), "boosting": joblib.load(d + "/boosting.joblib"),
              "frame": pd.read_parquet(d + "/frame.pq")}
    with open(d + "/nested.pkl", "rb") as f:
        values["nested"] = pickle.load(f)
    # a model round-tripped twice more through joblib in this process
    joblib.dump(values["forest"], d + "/again.joblib")
    values["forest_again"] = joblib.load(d + "/again.joblib")
print(json.dumps({k: [fingerprint(v), hashlib.md5(pickle.dumps(v)).hexdigest()] for k, v in values.items()}))
"""


def _run(mode: str, d: Path, seed: str) -> dict[str, list[str]]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode, str(d)], capture_output=True, text=True,
                         timeout=120, env=env, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_versions_are_the_same_in_every_process(tmp_path: Path) -> None:
    made = _run("make", tmp_path, "1")
    loaded = [_run("load", tmp_path, seed) for seed in ("2", "3")]
    for name in ("forest", "boosting", "frame", "nested"):
        version = made[name][0]
        assert len(version) == HEX32 and version_kind(version) == "content", name
        assert [run[name][0] for run in loaded] == [version, version], name
    assert loaded[0]["forest_again"][0] == made["forest"][0]
    # the models really differ by pickle between the processes (the reason for the rules)
    pickles = {made["forest"][1], made["boosting"][1], *(r["forest"][1] for r in loaded),
               *(r["boosting"][1] for r in loaded)}
    assert len(pickles) > 2


def test_structured_arrays_ignore_padding_bytes() -> None:
    dt = np.dtype({"names": ["a", "flag"], "formats": ["<i8", "u1"], "offsets": [0, 8], "itemsize": 16})
    raw = np.zeros(3 * 16, dtype=np.uint8)
    dirty = raw.copy()
    dirty[9:16] = 0xAB  # the padding after `flag` in the first record
    a, b = raw.view(dt), dirty.view(dt)
    assert a.tobytes() != b.tobytes()
    assert fingerprint(a) == fingerprint(b)
    b["flag"][1] = 1
    assert fingerprint(a) != fingerprint(b)


def test_built_ins_are_canonical() -> None:
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({3, 1, 2}) == fingerprint({2, 3, 1}) != fingerprint(frozenset({1, 2, 3}))
    assert fingerprint(0.0) != fingerprint(-0.0)  # floats by bit pattern
    assert fingerprint(1) != fingerprint(1.0) != fingerprint("1") != fingerprint(True)
    assert fingerprint([1, 2]) != fingerprint((1, 2))
    assert fingerprint([1.5, 2.5]) != fingerprint([1.5, 2.5000000000000004])
    assert fingerprint([10 ** 5000]) == fingerprint([10 ** 5000]) != fingerprint([10 ** 5000 + 1])
    big = list(range(200_000))
    assert fingerprint(big) == fingerprint(list(big)) != fingerprint(big[:-1] + [0])
    cyclic: list = [1]
    cyclic.append(cyclic)
    assert version_kind(fingerprint(cyclic)) == "content"


def test_arrays_and_frames_by_content() -> None:
    arr = np.arange(12, dtype=">i4").reshape(3, 4)
    assert fingerprint(arr) == fingerprint(arr.astype("<i4"))  # byte order normalised
    assert fingerprint(arr) != fingerprint(arr.reshape(4, 3))
    assert fingerprint(np.asfortranarray(arr)) == fingerprint(arr)
    objs = np.array(["x", None, 3], dtype=object)
    assert fingerprint(objs) == fingerprint(objs.copy())
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert fingerprint(df) == fingerprint(df.copy())
    assert fingerprint(df) != fingerprint(df.set_axis([5, 6]))  # the index counts
    assert fingerprint(df) != fingerprint(df.rename_axis("row"))  # so do its names
    listy = pd.DataFrame({"a": [[1], [2]]})  # unhashable cells
    assert fingerprint(listy) == fingerprint(listy.copy()) != fingerprint(pd.DataFrame({"a": [[1], [3]]}))


class _Plain:
    def __init__(self, weights: dict) -> None:
        self.weights = weights
        self.tags = {"b", "a"}


class _Unpicklable:
    def __reduce__(self) -> tuple:
        raise TypeError("nope")

    def __repr__(self) -> str:
        return "Unpicklable()"


def test_objects_by_state_and_weak_where_no_rule_applies() -> None:
    assert fingerprint(_Plain({"w": [1.0, 2.0]})) == fingerprint(_Plain({"w": [1.0, 2.0]}))
    assert fingerprint(_Plain({"w": [1.0, 2.0]})) != fingerprint(_Plain({"w": [1.0, 2.5]}))
    weak = fingerprint(_Unpicklable())
    assert weak.startswith(C.WEAK_VERSION_PREFIX) and len(weak) == len(C.WEAK_VERSION_PREFIX) + HEX32
    assert version_kind(weak) == "weak" and weak == fingerprint(_Unpicklable())  # class + repr
    # a weak part makes the whole version weak; the rest still counts
    with_lock = {"lock": threading.Lock(), "n": 1}
    assert version_kind(fingerprint(with_lock)) == "weak"
    assert version_kind("") == "" and version_kind("ab" * 16) == "content"
    p = IOPointer("thing", _Unpicklable())
    assert p.version_kind == "weak" and p["version_kind"] == "weak"


def test_too_deep_or_too_big_is_weak(monkeypatch: pytest.MonkeyPatch) -> None:
    deep: list = []
    cur = deep
    for _ in range(fingerprints.MAX_DEPTH + 5):
        nxt: list = [object.__new__(_Plain)]
        cur.append(nxt)
        cur = nxt
    assert version_kind(fingerprint(deep)) == "weak"
    monkeypatch.setattr(fingerprints, "MAX_NODES", 10)
    assert version_kind(fingerprint([_Plain({}) for _ in range(20)])) == "weak"


def test_small_float_sequences_hash_as_the_general_encoder_does() -> None:
    """Lists and tuples of up to 64 floats take a shorter path; their versions are the bytes the
    general encoder writes for them (NaN, infinities and both zeros included), so a version
    taken by an older SDK still matches, and one more float (65) goes the general way."""
    import math
    import random

    from mltrace_otel.sdk import fingerprints as fp

    rng = random.Random(16)
    specials = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, 1e300]
    for n in (1, 2, 3, 17, 64, 65):
        for _ in range(20):
            values = [rng.choice(specials) if rng.random() < 0.2 else rng.uniform(-1e6, 1e6)
                      for _ in range(n)]
            for seq in (values, tuple(values)):
                enc = fp._Encoder()
                enc.feed(seq, 0)
                assert fp.fingerprint(seq) == enc.h.hexdigest(), (n, seq)
    assert fp.fingerprint([0.0]) != fp.fingerprint([-0.0])
    assert fp.fingerprint([1.0, 2.0]) != fp.fingerprint((1.0, 2.0))
