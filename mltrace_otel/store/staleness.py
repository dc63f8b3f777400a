"""Staleness, computed at query time so it is always current.

For each dependency ``dep`` of a run (the producer of an input, or a set_upstream run):

1. mltrace's first rule: the run started more than its threshold (``StalenessThresholdS``, from
   the span; 30 days by default) after ``dep`` started:
   ``"{component} (ID {id}) was run {N} days ago."`` (mltrace's wording, kept for every threshold
   of a day or more; under a day, whole days would read "0 days ago", so the age is given in
   the largest unit it reaches: ``"... was run 3 hours ago."``, ``"... 1 minute ago."``).
2. mltrace's second rule: when the run started, ``dep``'s component had ``k`` fresher runs that
   began between ``dep`` and the run:
   ``"{component} (ID {id}) has {k} fresher run(s) that began before this component run started."``
   (``run`` when k == 1, ``runs`` otherwise).
3. Ours: since this run started, ``dep``'s component has written the pointer again (for a
   set_upstream dependency: has run again), so what the run read is superseded now:
   ``"{component} (ID {id}) has a newer run now (ID {newer_id})."``

At most one query for a whole batch of runs, often none: the batch's notes, flags and guessed
fresher-run windows can be read beforehand with its dependencies (:class:`Prefetch`), and
windows inside runs already read need no read (:class:`Cover`).

Which runs are stale now (:func:`.queries.stale_runs`) walks lineage, so it lives above both.

Imports: runs, state (which flags are in effect), models, protocols.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mltrace_otel.store.models import Pointer, Run, StaleReason
from mltrace_otel.store.protocols import Connection
from mltrace_otel.store.runs import Info, Writers, lineage_info, run_query
from mltrace_otel.store.state import active_flags

_NS_PER_S = 1_000_000_000
_DAY_S = 86400

# Every part's rows are (kind, a, b, c, ns). 'w': runs of the dependencies' components that
# began inside [earliest dep start, latest run start] (rule 2; annotate keeps those inside some
# [dep start, run start] window of their component), at most WINDOW_CAP rows: plain column
# reads cost the engine least (each expression and sort adds to every query). A capped read is
# asked again as 'W', filtered per window in SQL. Part 'p': the latest writer of each read
# pointer, per writing component, that began after the earliest of the runs (rule 3). Part
# 'c': the same per component, for set_upstream dependencies. Notes and flags: raw versioned
# rows (annotate keeps the latest per key), unless read beforehand (:class:`Prefetch`).
_WINDOWS = """
SELECT 'w' AS kind, Component, '' AS Pointer, RunId, toUnixTimestamp64Nano(Start) AS ns, '' AS V
FROM {{db}}.mltrace_runs
WHERE Component IN {comps:Array(String)}
  AND Start >= fromUnixTimestamp64Nano({lo:Int64}) AND Start <= fromUnixTimestamp64Nano({hi:Int64})
LIMIT {wcap:UInt32}"""

_WINDOWS_FILTERED = """
SELECT 'W' AS kind, Component, '' AS Pointer, RunId, toUnixTimestamp64Nano(Start) AS ns, '' AS V
FROM {{db}}.mltrace_runs
WHERE Component IN {comps:Array(String)}
  AND Start >= fromUnixTimestamp64Nano({lo:Int64}) AND Start <= fromUnixTimestamp64Nano({hi:Int64})
  AND arrayExists(w -> w.1 = Component AND ns >= w.2 AND ns <= w.3,
                  {windows:Array(Tuple(String, Int64, Int64))})
LIMIT 1 BY RunId"""

WINDOW_CAP = 2048
"""Rows the unfiltered window read may return before the filtered read is used instead."""

_NEWER_WRITERS = """
SELECT 'p' AS kind, Component, Pointer, argMax(RunId, (Start, RunId)), max(toUnixTimestamp64Nano(Start)),
       argMax(Version, (Start, RunId))
FROM {{db}}.mltrace_lineage
WHERE Pointer IN {ptrs:Array(String)} AND Start > fromUnixTimestamp64Nano({after:Int64})
GROUP BY Component, Pointer"""

_NOTES = """
SELECT 'n' AS kind, Notes, '' AS Pointer, RunId, toUnixTimestamp64Nano(Version) AS ns, '' AS V
FROM {{db}}.mltrace_notes
WHERE RunId IN {ids:Array(String)}"""

_FLAGS = """
SELECT 'f' AS kind, toString(Flagged), Pointer, RunId, toUnixTimestamp64Nano(Version) AS ns,
       OutputVersion AS V
FROM {{db}}.mltrace_flags
WHERE Pointer IN {allptrs:Array(String)}"""

_NEWER_RUNS = """
SELECT 'c' AS kind, Component, '' AS Pointer, argMax(RunId, (Start, RunId)),
       max(toUnixTimestamp64Nano(Start)), '' AS V
FROM {{db}}.mltrace_runs
WHERE Component IN {ucomps:Array(String)} AND Start > fromUnixTimestamp64Nano({after:Int64})
GROUP BY Component"""


def fresher_message(component: str, dep_id: str, k: int) -> str:
    """mltrace's second staleness message."""
    word = "run" if k == 1 else "runs"
    return (f"{component} (ID {dep_id}) has {k} fresher {word} that began before this "
            "component run started.")


def old_message(component: str, dep_id: str, days: int) -> str:
    """mltrace's first staleness message (its exact wording, "1 days ago" included)."""
    return f"{component} (ID {dep_id}) was run {days} days ago."


_UNITS = ((_DAY_S, "day"), (3600, "hour"), (60, "minute"), (1, "second"))


def age_message(component: str, dep_id: str, age_s: float, threshold_s: float) -> str:
    """The first staleness message for an input ``age_s`` old under a ``threshold_s`` threshold.

    A threshold of a day or more: mltrace's wording in whole days (:func:`old_message`), which
    users and their scripts know. Under a day, whole days would say "was run 0 days ago", so the
    age is floored to the largest unit it reaches, singular or plural:
    ``"... was run 2 hours ago."``, ``"... was run 1 minute ago."``.
    """
    if threshold_s >= _DAY_S:
        return old_message(component, dep_id, int(age_s // _DAY_S))
    age = max(age_s, 0.0)
    unit_s, word = next((u for u in _UNITS if age >= u[0]), _UNITS[-1])
    n = int(age // unit_s)
    return f"{component} (ID {dep_id}) was run {n} {word}{'' if n == 1 else 's'} ago."


def newer_message(component: str, dep_id: str, newer_id: str) -> str:
    """Our third rule's message, in mltrace's style."""
    return f"{component} (ID {dep_id}) has a newer run now (ID {newer_id})."


# Notes and flags read with another query (the dependencies' read: lineage._candidates), in its
# row shape (Kind, Pointer, Version, Row), all strings.
# (Version as text: 'YYYY-MM-DD hh:mm:ss.nnnnnnnnn' sorts as it orders, one function fewer.)
_PRE_NOTES = """
    SELECT 'n', RunId, toString(Version), Notes FROM {{db}}.mltrace_notes
    WHERE RunId IN {pre_ids:Array(String)}"""

_PRE_FLAGS = """
    SELECT 'f', Pointer, toString(toUnixTimestamp64Nano(Version)),
           toJSONString(tuple(RunId, OutputVersion, Flagged)) FROM {{db}}.mltrace_flags
    WHERE Pointer IN {pre_ptrs:Array(String)}"""


@dataclass(frozen=True)
class Cover:
    """Every run of ``comps`` (None: of any component) that started inside [since, until]
    (until None: no end), already read: a fresher-run window inside it is counted from
    ``runs`` without a query."""

    since: int
    runs: dict[str, frozenset[tuple[str, int]]]
    until: int | None = None
    comps: frozenset[str] | None = None

    @classmethod
    def of(cls, since: int, runs: Iterable[tuple[Run, int]]) -> Cover:
        """From (Run, start ns) pairs holding every run started at or after ``since``."""
        by: dict[str, set[tuple[str, int]]] = {}
        for run, ns in runs:
            by.setdefault(run.component, set()).add((run.id, ns))
        return cls(since, {c: frozenset(v) for c, v in by.items()})

    def holds(self, comp: str, lo: int, hi: int) -> bool:
        """Whether every run of ``comp`` started inside [lo, hi] is in ``runs``."""
        return ((self.comps is None or comp in self.comps) and lo >= self.since
                and (self.until is None or hi <= self.until))


# Guessed fresher-run windows, read with the dependencies (Prefetch): the runs of the components
# a component's runs depended on last time, started since its earliest run minus the longest
# gap seen then between a run and a dependency. annotate checks each window against what was
# read (Cover.holds) and asks for the others as before, so a wrong guess costs a read, never an
# answer. Remembered per store object (a process's API, UI or CLI store), per component:
# (dependency components, longest gap in ns), or None after a guess read hit WINDOW_CAP.
_HINTS: weakref.WeakKeyDictionary[Connection, dict[str, tuple[frozenset[str], int] | None]] = (
    weakref.WeakKeyDictionary())

_GUESS = """
    SELECT 'w', Component, RunId, toString(toUnixTimestamp64Nano(Start)) FROM {{db}}.mltrace_runs
    WHERE Component IN {g_comps:Array(String)}
      AND Start >= fromUnixTimestamp64Nano({g_lo:Int64}) AND Start <= fromUnixTimestamp64Nano({g_hi:Int64})
    LIMIT {g_cap:UInt32}"""


def _guess(store: Connection, runs: Sequence[tuple[Run, int]]) -> tuple[frozenset[str], int, int] | None:
    """(components, lo, hi) of the windows these runs' dependencies had last time, or None."""
    try:
        hints = _HINTS.get(store) or {}
    except TypeError:  # not weak-referenceable: no hints
        return None
    comps: set[str] = set()
    gap = 0
    for run, _ns in runs:
        h = hints.get(run.component)
        if h is None:  # never seen, or not worth guessing
            return None
        comps |= h[0]
        gap = max(gap, h[1])
    if not comps:
        return None
    return frozenset(comps), min(ns for _r, ns in runs) - gap, max(ns for _r, ns in runs)


def forget_hints(store: Connection) -> None:
    """Drop what was learnt for window guesses on this store (benchmarks: a first call)."""
    _HINTS.pop(store, None)


def _learn(store: Connection, runs: Sequence[tuple[Run, int]], pairs: Sequence[tuple], capped: bool) -> None:
    """Remember, per component of ``runs``, its dependencies' components and longest gap."""
    try:
        hints = _HINTS.setdefault(store, {})
    except TypeError:
        return
    seen: dict[str, tuple[set[str], int]] = {run.component: (set(), 0) for run, _ in runs}
    for run, ns, _dep, comp, dns, _ptrs in pairs:
        comps, gap = seen[run.component]
        comps.add(comp)
        seen[run.component] = (comps, max(gap, ns - dns))
    for c, (comps, gap) in seen.items():
        old = hints.get(c)
        if capped:
            hints[c] = None
        elif old is None and c in hints:
            continue  # not worth guessing for this component
        else:
            hints[c] = (frozenset(comps) | (old[0] if old else frozenset()),
                        max(gap, old[1] if old else 0))


@dataclass
class Prefetch:
    """Later notes of some runs, flags of their pointers and (when :func:`_guess` has one) the
    runs of guessed fresher-run windows, read by another query before :func:`annotate` (which
    then does not read them): ``parts()`` are its SQL, ``take()`` its rows."""

    ids: frozenset[str]
    ptrs: frozenset[str]
    guess: tuple[frozenset[str], int, int] | None = None
    notes: dict[str, tuple[str, str]] = field(default_factory=dict)
    flags: dict[tuple[str, str], tuple[int, str, str]] = field(default_factory=dict)
    cover: Cover | None = None
    capped: bool = False
    done: bool = False

    @classmethod
    def of(cls, runs: Sequence[tuple[Run, int]], store: Connection | None = None) -> Prefetch:
        """What annotate needs for these runs (with a window guess when ``store`` has one)."""
        return cls(frozenset(r.id for r, _ in runs),
                   frozenset(p.name for r, _ in runs for p in (*r.inputs, *r.outputs)),
                   _guess(store, runs) if store is not None and runs else None)

    def parts(self) -> tuple[list[str], dict[str, Any]]:
        """(SQL parts for a UNION ALL, their parameters)."""
        parts, params = [], {}
        if self.ids:
            parts.append(_PRE_NOTES)
            params["pre_ids"] = sorted(self.ids)
        if self.ptrs:
            parts.append(_PRE_FLAGS)
            params["pre_ptrs"] = sorted(self.ptrs)
        if self.guess:
            parts.append(_GUESS)
            params.update(g_comps=sorted(self.guess[0]), g_lo=self.guess[1], g_hi=self.guess[2],
                          g_cap=WINDOW_CAP)
        return parts, params

    def take(self, rows: Sequence[tuple]) -> None:
        """Keep the latest version per key of the parts' rows, and the guessed windows' runs."""
        by: dict[str, set[tuple[str, int]]] = {}
        for kind, key, version, value in rows:
            if kind == "w":
                by.setdefault(key, set()).add((version, int(value)))
                continue
            if kind == "f":  # value: [RunId, OutputVersion, Flagged]; latest per (pointer, run)
                rid, ov, flagged = json.loads(value)
                ns = int(version)
                if (key, rid) not in self.flags or ns >= self.flags[(key, rid)][0]:
                    self.flags[(key, rid)] = (ns, ov, str(flagged))
            elif kind == "n" and (key not in self.notes or version >= self.notes[key][0]):
                self.notes[key] = (version, value)
        if self.guess:
            self.capped = sum(len(v) for v in by.values()) >= WINDOW_CAP
            if not self.capped:
                self.cover = Cover(self.guess[1], {c: frozenset(v) for c, v in by.items()},
                                   self.guess[2], self.guess[0])
        self.done = True


def annotate(store: Connection, runs: Sequence[tuple[Run, int]], deps: dict[str, list[tuple[str, str]]],
             infos: dict[str, Info] | None = None,
             writers: Writers | None = None,
             pre: Prefetch | None = None, cover: Cover | None = None) -> list[Run]:
    """Runs with ``dependencies``, ``stale`` and ``stale_reasons`` (direct causes), notes
    written later and flags of the versions they wrote and read filled, in the given order: at
    most one query (what ``pre`` and ``cover`` do not already hold of notes, flags and
    staleness, together). :func:`.causes.inherit` adds inherited causes where the caller has
    every run upstream.

    Args:
        runs: (run, start in ns) pairs.
        deps: ``{run id: [(producer id, pointer)]}`` from :func:`.lineage.dependencies`.
        infos: lineage Info of runs already known (producers), to skip looking them up.
        writers: ``{pointer: {run id: Info}}``, every writer of those pointers (from the
            lineage reads that resolved ``deps``): rule 3 needs no query for them.
        pre: notes and flags already read for these runs.
        cover: runs already read that answer the fresher-run windows after some time.
    """
    if not runs:
        return []
    known: dict[str, _Dep] = {run.id: _Dep.of_run(run, ns) for run, ns in runs}
    for rid, info in (infos or {}).items():
        if rid not in known:
            known[rid] = _Dep.of_info(info)
    missing = {p for run, _ in runs for p, _ptr in deps.get(run.id, ()) if p not in known}
    for rid, info in lineage_info(store, missing).items():
        known[rid] = _Dep.of_info(info)
    pairs = []  # (run, run_ns, dep_id, dep_component, dep_ns, pointers read from dep)
    for run, ns in runs:
        by_dep: dict[str, list[str]] = {}
        for dep_id, ptr in deps.get(run.id, ()):
            by_dep.setdefault(dep_id, []).append(ptr)
        for dep_id, ptrs in by_dep.items():
            if dep_id in known:
                pairs.append((run, ns, dep_id, known[dep_id].component, known[dep_id].ns, ptrs))
    windows = sorted({(c, dns, ns) for _r, ns, _d, c, dns, _p in pairs if dns <= ns})
    window_rows: dict[str, set[tuple[str, int]]] = {}
    if cover is None and pre is not None:
        cover = pre.cover
    if cover is not None:  # windows inside what was read already: counted from those runs
        for c, dns, ns in windows:
            if cover.holds(c, dns, ns):
                window_rows.setdefault(c, set()).update(cover.runs.get(c, ()))
        windows = [w for w in windows if not cover.holds(*w)]
    _learn(store, runs, pairs, pre is not None and pre.capped)
    after = min((p[1] for p in pairs), default=0)
    latest: dict[tuple[str, str], tuple[str, int, str]] = {}  # (comp, ptr) -> (id, ns, version)
    read = {x for p in pairs for x in p[5] if x}
    writers = writers or {}
    for ptr in read & writers.keys():  # rule 3 from the writers already read
        for w in writers[ptr].values():
            if w.ns > after:
                key = (w.component, ptr)
                if key not in latest or (w.ns, w.id) > (latest[key][1], latest[key][0]):
                    latest[key] = (w.id, w.ns, w.outputs.get(ptr, ""))
    ids = {run.id for run, _ in runs}
    allptrs = {p.name for run, _ in runs for p in (*run.inputs, *run.outputs)}
    have = pre is not None and pre.done
    params = {
        "ids": sorted(ids) if not (have and ids <= pre.ids) else [],
        "allptrs": sorted(allptrs) if not (have and allptrs <= pre.ptrs) else [],
        "comps": sorted({w[0] for w in windows}),
        "windows": windows,
        "lo": min((w[1] for w in windows), default=0),
        "hi": max((w[2] for w in windows), default=0),
        "ptrs": sorted(read - writers.keys()),
        "ucomps": sorted({p[3] for p in pairs if "" in p[5]}),
        "after": after,
        "wcap": WINDOW_CAP,
    }
    parts = [text for text, key in ((_NOTES, "ids"), (_FLAGS, "allptrs"), (_WINDOWS, "windows"),
                                    (_NEWER_WRITERS, "ptrs"), (_NEWER_RUNS, "ucomps")) if params[key]]
    rows = run_query(store, "staleness", "\nUNION ALL\n".join(parts), params) if parts else []
    if sum(1 for r in rows if r[0] == "w") >= WINDOW_CAP:  # wide windows: filter them in SQL
        rows = [r for r in rows if r[0] != "w"] + run_query(
            store, "staleness_windows", _WINDOWS_FILTERED, params)
    notes: dict[str, tuple[Any, str]] = dict(pre.notes) if have and not params["ids"] else {}
    flags: dict[tuple[str, str], tuple[int, str, str]] = (
        dict(pre.flags) if have and not params["allptrs"] else {})
    for kind, comp, ptr, rid, rns, version in rows:
        if kind in ("w", "W"):
            window_rows.setdefault(comp, set()).add((rid, int(rns)))
        elif kind == "n":  # latest version wins (comp holds the notes)
            if rid not in notes or int(rns) >= notes[rid][0]:
                notes[rid] = (int(rns), comp)
        elif kind == "f":  # latest per (pointer, run) wins (comp holds the flag)
            if (ptr, rid) not in flags or int(rns) >= flags[(ptr, rid)][0]:
                flags[(ptr, rid)] = (int(rns), version, comp)
        else:
            latest[(comp, ptr)] = (rid, int(rns), version)
    active = active_flags([(p, r, v, int(f), ns) for (p, r), (ns, v, f) in flags.items()])
    by_run = {(f.pointer, f.run) for f in active if f.run}
    by_version = {(f.pointer, f.version) for f in active if f.run and f.version}
    reasons: dict[str, list[StaleReason]] = {}
    for run, ns, dep_id, comp, dns, ptrs in pairs:
        out = reasons.setdefault(run.id, [])
        dep = known[dep_id]
        ptr = next((p for p in ptrs if p), "")
        diff_s = (ns - dns) / _NS_PER_S
        if dep.failure:
            out.append(StaleReason("upstream_failed", failed_message(comp, dep_id, dep.failure),
                                   dep_id, comp, ptr))
        if diff_s > run.staleness_threshold_s:
            out.append(StaleReason("old_input", age_message(comp, dep_id, diff_s,
                                                            run.staleness_threshold_s),
                                   dep_id, comp, ptr))
        k = sum(1 for rid, rns in window_rows.get(comp, ())
                if dns <= rns <= ns and rid not in (dep_id, run.id))
        if k >= 1:
            out.append(StaleReason("fresher_upstream", fresher_message(comp, dep_id, k), dep_id,
                                   comp, ptr, count=k))
        newer = []
        for p in ptrs:
            n = latest.get((comp, p))
            if n is None or n[1] <= ns or n[0] in (dep_id, run.id):
                continue
            seen = _read_version(run, p, dep)
            if seen and n[2] == seen:  # early cutoff: the newer run wrote what this run read
                continue
            newer.append(n)
        if newer:
            n = max(newer, key=lambda n: (n[1], n[0]))
            out.append(StaleReason("newer_upstream", newer_message(comp, dep_id, n[0]), dep_id,
                                   comp, ptr, newer=n[0]))

    def flag_out(run: Run) -> tuple[Pointer, ...]:
        return tuple(replace(p, flagged=(p.name, run.id) in by_run
                             or (p.name, p.version) in by_version and bool(p.version))
                     for p in run.outputs)

    def flag_in(run: Run) -> tuple[Pointer, ...]:
        producer = {ptr: d for d, ptr in deps.get(run.id, ()) if ptr}
        out = []
        for p in run.inputs:
            dep = known.get(producer.get(p.name, ""))
            seen = _read_version(run, p.name, dep) if dep else p.version
            out.append(replace(p, flagged=(p.name, producer.get(p.name, "")) in by_run
                               or bool(seen) and (p.name, seen) in by_version))
        return tuple(out)

    done = []
    for run, _ns in runs:
        rs = tuple(reasons.get(run.id, ()))
        done.append(replace(
            run, dependencies=tuple(dict.fromkeys(p for p, _ptr in deps.get(run.id, ()))),
            stale=tuple(r.message for r in rs), stale_reasons=rs,
            notes=notes[run.id][1] if run.id in notes else run.notes,
            inputs=flag_in(run), outputs=flag_out(run)))
    return done


@dataclass(frozen=True)
class _Dep:
    """What staleness needs of a dependency: component, start, how it failed ("" if it did
    not), the versions it wrote."""

    component: str
    ns: int
    failure: str
    outputs: dict[str, str]

    @classmethod
    def of_run(cls, run: Run, ns: int) -> _Dep:
        return cls(run.component, ns, run.failure,
                   {p.name: p.version for p in reversed(run.outputs)})

    @classmethod
    def of_info(cls, info: Info) -> _Dep:
        run = info.run
        return cls(info.component, info.ns, run.failure if run is not None else "",
                   dict(info.outputs))


def _read_version(run: Run, pointer: str, dep: _Dep | None) -> str:
    """The version of ``pointer`` the run read: its own fingerprint, else what its producer
    wrote ("" when neither is known)."""
    own = next((p.version for p in run.inputs if p.name == pointer and p.version), "")
    return own or (dep.outputs.get(pointer, "") if dep is not None else "")


def failed_message(component: str, dep_id: str, failure: str) -> str:
    """The failed-upstream message: ``"clean (ID …) failed: ValueError: negative amount."``."""
    text = " ".join(failure.split())
    return f"{component} (ID {dep_id}) failed: {text}{'' if text.endswith(('.', '!', '?')) else '.'}"
