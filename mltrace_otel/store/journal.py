"""The ingest journal: serialized OTLP requests committed before they are indexed.

The collector's "journaled" acknowledgement (``collector/indexer.py``) answers a request once
its bytes are a row of ``mltrace_ingest_journal`` (migration 0040): one insert of a few
milliseconds with no materialized view, where indexing the same spans into ``otel_traces`` and
the mltrace tables costs the engine ~100 ms of fixed work per insert. The indexer then indexes
many journaled requests per insert, which is where the throughput comes from.

Exactly-once: each index insert covers a contiguous range of journal rows and carries the
insert_deduplication_token :func:`group_token` of that range; its ``mltrace_ingest_progress``
row says Done = 0 before the insert and 1 after. After a crash, :func:`recover` returns the
groups left at Done = 0 (indexed again with the same token: the store drops what the crashed
insert had committed) and the rows no group covers.

Imports :mod:`.schema` (identifier quoting) and :mod:`.otlp_native` (the varint); SQL only here.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

JOURNAL = "mltrace_ingest_journal"
PROGRESS = "mltrace_ingest_progress"
PARTITION_NS = 10_000_000_000
"""Seq range of one journal partition (10 s of appends): the unit dropped once indexed."""


@dataclass(frozen=True)
class Entry:
    """One journaled request: its sequence number, span count and serialized bytes."""

    seq: int
    spans: int
    payload: bytes


@dataclass(frozen=True)
class Recovered:
    """What a collector finds in the journal when it starts: groups whose index insert may
    have been cut short (replay each with its own token) and entries in no group yet."""

    groups: list[list[Entry]]
    entries: list[Entry]
    last_seq: int


def group_token(first_seq: int, last_seq: int) -> str:
    """The insert_deduplication_token of the index insert of journal rows first..last."""
    return f"mltrace-journal-{first_seq}-{last_seq}"


def _db(store: Any) -> str:
    from mltrace_otel.store.schema import quote_ident

    return quote_ident(store.database)


def _rowbinary(seqs: Sequence[int], payloads: Sequence[bytes], spans: Sequence[int]) -> bytes:
    """Journal rows as RowBinary: Seq (UInt64), Spans (UInt32), Payload (String: varint length)."""
    from mltrace_otel.store.otlp_native import varint

    return b"".join(seq.to_bytes(8, "little") + n.to_bytes(4, "little") + varint(len(p)) + p
                    for seq, p, n in zip(seqs, payloads, spans, strict=True))


def append(store: Any, first_seq: int, payloads: Sequence[bytes], spans: Sequence[int]) -> list[int]:
    """Commit requests to the journal in one insert, numbered from ``first_seq``; their Seqs."""
    seqs = list(range(first_seq, first_seq + len(payloads)))
    if not payloads:
        return seqs
    body = _rowbinary(seqs, payloads, spans)
    table = f"{_db(store)}.{JOURNAL}"
    store._call("journal_append", {"requests": len(payloads), "bytes": len(body)},
                lambda c: c.raw_insert(table, ["Seq", "Spans", "Payload"], body,
                                       settings={"async_insert": 0}, fmt="RowBinary"))
    return seqs


def next_seq(last_seq: int) -> int:
    """The next sequence number: now in ns, and always past ``last_seq``."""
    return max(time.time_ns(), last_seq + 1)


def mark(store: Any, first_seq: int, last_seq: int, done: bool) -> None:
    """Record that the index insert of journal rows first..last is starting (False) or done."""
    store.command(
        "journal_progress",
        f"INSERT INTO {_db(store)}.{PROGRESS} (FromSeq, ToSeq, Done) "
        "VALUES ({a:UInt64}, {b:UInt64}, {d:UInt8})",
        {"a": first_seq, "b": last_seq, "d": int(done)},
    )


def drop_indexed(store: Any, low_watermark: int) -> int:
    """Drop the journal partitions wholly below ``low_watermark`` (every row before it is
    indexed), and the progress rows of their groups; how many partitions were dropped."""
    rows = store.query(
        "journal_partitions",
        "SELECT DISTINCT partition_id FROM system.parts WHERE database = {db:String} "
        "AND table = {t:String} AND active",
        {"db": store.database, "t": JOURNAL},
    )
    below = low_watermark // PARTITION_NS
    dropped = 0
    for (pid,) in rows:
        if pid.isdigit() and int(pid) < below:  # ids are ours: intDiv(Seq, PARTITION_NS)
            store.command("journal_drop",
                          f"ALTER TABLE {_db(store)}.{JOURNAL} DROP PARTITION ID '{int(pid)}'")
            dropped += 1
    if dropped:  # their groups' progress rows are no longer needed
        sql = f"ALTER TABLE {_db(store)}.{PROGRESS} DELETE WHERE ToSeq < {{b:UInt64}}"
        store.command("journal_forget", sql, {"b": below * PARTITION_NS})
    return dropped


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ranges with the overlapping and nested ones merged (disjoint, sorted)."""
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def recover(store: Any) -> Recovered:
    """The journal rows still to index, after a crash or a stop (normally none)."""
    db = _db(store)
    groups = store.query(
        "journal_groups", f"SELECT FromSeq, ToSeq, max(Done) FROM {db}.{PROGRESS} GROUP BY FromSeq, ToSeq")
    heads = store.query("journal_heads", f"SELECT Seq, Spans FROM {db}.{JOURNAL} ORDER BY Seq")
    last = max([s for s, _ in heads] + [b for _, b, _ in groups] + [0])
    done = _merged(sorted((a, b) for a, b, d in groups if d))  # a split group's parts nest in it
    open_groups = sorted((a, b) for a, b, d in groups if not d)

    def covered(seq: int, ranges: list[tuple[int, int]]) -> tuple[int, int] | None:
        i = bisect.bisect_right(ranges, (seq, 2**64)) - 1  # ranges are disjoint, sorted by start
        if i >= 0 and ranges[i][0] <= seq <= ranges[i][1]:
            return ranges[i]
        return None

    want = [(s, n) for s, n in heads if covered(s, done) is None]
    if not want:
        return Recovered([], [], last)
    params = {"s": [s for s, _ in want]}
    payloads = dict(store._call("journal_payloads", params, lambda c: c.query(
        f"SELECT Seq, Payload FROM {db}.{JOURNAL} WHERE Seq IN {{s:Array(UInt64)}}",
        parameters=params, column_formats={"Payload": "bytes"}).result_rows))
    by_group: dict[tuple[int, int], list[Entry]] = {}
    loose: list[Entry] = []
    for s, n in want:
        e = Entry(s, n, bytes(payloads[s]))
        g = covered(s, open_groups)
        if g is None:
            loose.append(e)
        else:
            by_group.setdefault(g, []).append(e)
    return Recovered([by_group[g] for g in sorted(by_group)], loose, last)


__all__ = ["Entry", "Recovered", "append", "mark", "recover", "drop_indexed", "group_token", "next_seq",
           "JOURNAL", "PROGRESS"]
