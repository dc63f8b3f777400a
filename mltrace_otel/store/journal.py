"""The ingest journal: serialized OTLP requests committed before they are indexed.

The collector's "journaled" acknowledgement (``collector/indexer.py``) answers a request once
its bytes are appended to the journal: segment files in the embedded store's directory
(``<store>/mltrace-journal/<database>/<segment>.seg``, one per 10 s of sequence numbers), a single
``write`` per batch of requests. Indexing the same spans into ``otel_traces`` and the mltrace
tables costs the engine ~100 ms of fixed work per insert; the indexer indexes many journaled
requests per insert, which is where the throughput comes from.

Why files and not a table: a MergeTree insert per batch (as the first version did) cost the
engine 3-8 µs per span -- a part of ~10 files created, then dropped, per batch, and the
RowBinary parse -- a fifth of the collector's CPU at 50,000 spans/s. An append costs a write.
Durability is the store's own: like an engine insert (no fsync), an append survives the
collector being killed, not the machine losing power.

Record: ``<QIII`` (Seq, Spans, payload length, CRC-32 of the three and the payload), then the
payload. A record cut short at the end of its segment is a write a crash interrupted (never
acknowledged): :meth:`Journal.scan` truncates it away. A record whose bytes were damaged on
disk (its CRC fails, or its header is garbage) is skipped alone: the scan resynchronises on the
next record whose header and CRC check out and keeps everything after it, logs an ERROR with the
count, and :attr:`Recovered.corrupt` reports it (``mltrace_collector_journal_corrupt_records_total``).

Segment files are created 0600 in a 0700 directory: they hold every span, like the store.

A request that no way of indexing can store (:mod:`mltrace_otel.collector.indexer` tries the
engine, the Python renderer, then each span alone and stripped) is set aside, never deleted:
:meth:`Journal.set_aside` writes it to ``rejected/<seq>-<span>.otlp`` beside the segments.

Exactly-once: each index insert covers a contiguous range of journal records and carries the
insert_deduplication_token :func:`group_token` of that range; its ``mltrace_ingest_progress``
row (a table: migration 0040) says Done = 0 before the insert and 1 after. After a crash,
:func:`recover` returns the groups left at Done = 0 (indexed again with the same token: the
store drops what the crashed insert had committed) and the records no group covers.

Imports :mod:`.schema` (identifier quoting) and :mod:`.share` (the embedded store's
directory); SQL only here.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PROGRESS = "mltrace_ingest_progress"
LEGACY_TABLE = "mltrace_ingest_journal"
"""The journal table of the first version (dropped by :func:`recover` once its rows are moved)."""
DIRNAME = "mltrace-journal"
SEGMENT_NS = 10_000_000_000
"""Seq range of one segment file (10 s of appends): the unit dropped once indexed."""
_HEAD = struct.Struct("<QIII")
_SUFFIX = ".seg"


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
    corrupt: int = 0
    """Damaged records skipped (each at least one request: logged at ERROR)."""


@dataclass(frozen=True)
class _Record:
    seq: int
    spans: int
    path: Path
    offset: int  # of the payload
    length: int


def _crc(seq: int, spans: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<QII", seq, spans, len(payload))))


class Journal:
    """The segment files of one store directory. One object per directory and process
    (:func:`for_store`): the collector's writer appends, its indexer threads drop, under one
    lock. Only the process holding the embedded store runs a collector on it
    (``collector/server.py`` refuses a proxied store), so no other process writes here."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._segment: int | None = None
        self._file: Any = None
        self._poisoned: int | None = None  # a segment that must take no more records

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:012d}{_SUFFIX}"

    def append(self, entries: Sequence[Entry]) -> None:
        """Write records in Seq order, each to the segment of its Seq; a failed write is cut
        back off its segment (nothing half-written stays before later records).

        Raises:
            StoreUnavailable: the journal cannot be written (disk full, permissions).
        """
        from mltrace_otel.errors import StoreUnavailable

        with self._lock:
            k = 0
            while k < len(entries):
                segment = entries[k].seq // SEGMENT_NS
                if segment == self._poisoned:
                    raise StoreUnavailable(f"the ingest journal segment {self._path(segment)} ends in a "
                                           "write that failed and could not be cut off; appends resume "
                                           "in the next segment (within 10 s)", hint="retry shortly")
                j = k
                while j < len(entries) and entries[j].seq // SEGMENT_NS == segment:
                    j += 1
                chunk = b"".join(_HEAD.pack(e.seq, e.spans, len(e.payload), _crc(e.seq, e.spans, e.payload))
                                 + e.payload for e in entries[k:j])
                try:
                    f = self._open(segment)
                    start = f.tell()
                    try:
                        view = memoryview(chunk)
                        while view:
                            view = view[f.write(view):]
                    except BaseException:
                        try:
                            f.truncate(start)
                        except OSError:  # a half record stays: a record after it would be lost
                            self._poisoned = segment
                        raise
                except OSError as e:
                    self._close()
                    raise StoreUnavailable(f"cannot write the ingest journal in {self.directory}: {e}",
                                           hint="free disk space, or set MLTRACE_ACK=indexed") from e
                k = j

    def _open(self, segment: int) -> Any:
        if self._segment != segment:
            self._close()
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self._path(segment), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._file = os.fdopen(fd, "ab", buffering=0)
            self._segment = segment
        return self._file

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._segment = None, None

    def _segments(self) -> list[tuple[int, Path]]:
        if not self.directory.is_dir():
            return []
        out = []
        for p in self.directory.iterdir():
            if p.suffix == _SUFFIX and p.stem.isdigit():
                out.append((int(p.stem), p))
        return sorted(out)

    def scan(self) -> tuple[list[_Record], int]:
        """Every whole record in Seq order, and how many damaged records were skipped.

        A record cut short at the end of a segment (a crash mid-write, never acknowledged) is
        truncated away. A damaged record anywhere else -- a CRC that fails, a header that makes
        no sense -- is skipped alone: the scan resumes at the next offset holding a record whose
        header and CRC check out, so every record after the damage is kept."""
        records: list[_Record] = []
        corrupt = 0
        with self._lock:
            self._close()
            for segment, path in self._segments():
                data = memoryview(path.read_bytes())  # payloads checked in place, not copied
                at, end = 0, len(data)
                while at + _HEAD.size <= end:
                    rec = _record_at(data, at, segment, path)
                    if rec is not None:
                        records.append(rec)
                        at = rec.offset + rec.length
                        continue
                    nxt = _resync(data, at + 1, segment, path)
                    if nxt is None:
                        if _whole_but_damaged(data, at, segment):
                            corrupt += 1
                            log.error("ingest journal %s: the last record (at byte %d) is damaged "
                                      "(CRC mismatch); skipped", path, at)
                        break  # a torn tail: cut off below
                    corrupt += 1
                    log.error("ingest journal %s: %d damaged bytes at byte %d skipped (a record "
                              "lost); the records after them are kept", path, nxt - at, at)
                    at = nxt
                if at < end:
                    os.truncate(path, at)
            self._poisoned = None  # every torn tail is cut off now
        records.sort(key=lambda r: r.seq)
        return records, corrupt

    def set_aside(self, name: str, payload: bytes) -> Path:
        """Keep a request no way of indexing could store: ``rejected/<name>.otlp`` (0600)."""
        directory = self.directory / "rejected"
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / f"{name}.otlp"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        return path

    def read(self, records: Sequence[_Record]) -> Iterator[Entry]:
        """The payloads of scanned records."""
        files: dict[Path, Any] = {}
        try:
            for r in records:
                f = files.get(r.path) or files.setdefault(r.path, open(r.path, "rb"))  # noqa: SIM115
                f.seek(r.offset)
                yield Entry(r.seq, r.spans, f.read(r.length))
        finally:
            for f in files.values():
                f.close()

    def drop_below(self, low_watermark: int) -> int:
        """Delete the segments wholly below ``low_watermark``; how many."""
        below = low_watermark // SEGMENT_NS
        dropped = 0
        with self._lock:
            for segment, path in self._segments():
                if segment < below:
                    if segment == self._segment:
                        self._close()
                    path.unlink(missing_ok=True)
                    dropped += 1
        return dropped


def _record_at(data: memoryview, at: int, segment: int, path: Path) -> _Record | None:
    """The record starting at ``at`` if its header is plausible (a Seq of this segment, a
    payload that fits) and its CRC checks out; else None."""
    if at + _HEAD.size > len(data):
        return None
    seq, spans, n, crc = _HEAD.unpack_from(data, at)
    start = at + _HEAD.size
    if seq // SEGMENT_NS != segment or start + n > len(data):
        return None
    if _crc(seq, spans, data[start:start + n]) != crc:
        return None
    return _Record(seq, spans, path, start, n)


def _resync(data: memoryview, start: int, segment: int, path: Path) -> int | None:
    """The first offset at or after ``start`` where a valid record begins (None: none).

    Candidates are found with ``bytes.find``: every Seq of a segment shares its top bytes
    (Seqs are ns, a segment spans 10 s < 2**40 ns, so bits 40-63 take at most two values)."""
    raw = data.obj if isinstance(data.obj, bytes) else bytes(data)
    lo, hi = segment * SEGMENT_NS, (segment + 1) * SEGMENT_NS - 1
    needles = {(lo >> 40).to_bytes(3, "little"), (hi >> 40).to_bytes(3, "little")}
    best: int | None = None
    for needle in needles:
        pos = start + 5
        while True:
            pos = raw.find(needle, pos)
            if pos < 0 or (best is not None and pos - 5 >= best):
                break
            if _record_at(data, pos - 5, segment, path) is not None:
                best = pos - 5
                break
            pos += 1
    return best


def _whole_but_damaged(data: memoryview, at: int, segment: int) -> bool:
    """A record at ``at`` whose header is plausible and whose payload is all there (so not a
    write a crash cut short), but whose CRC fails: damage, not a torn tail."""
    seq, _spans, n, _crc_value = _HEAD.unpack_from(data, at)
    return seq // SEGMENT_NS == segment and at + _HEAD.size + n == len(data)


_journals: dict[Path, Journal] = {}
_journals_lock = threading.Lock()


def for_store(store: Any) -> Journal:
    """The journal of an embedded store (one object per directory in this process)."""
    from mltrace_otel.errors import ConfigError
    from mltrace_otel.store.share import engine_dir

    if not store.settings.is_embedded:
        raise ConfigError("the ingest journal needs the embedded store",
                          hint="unset MLTRACE_ACK (indexed is the default on a server)")
    db = store.database  # one engine directory can hold several databases (a journal each)
    name = db if db.replace("_", "").isalnum() and db.isascii() else "x" + db.encode().hex()
    directory = engine_dir(store.settings.resolved_store_url) / DIRNAME / name
    with _journals_lock:
        return _journals.setdefault(directory, Journal(directory))


def group_token(first_seq: int, last_seq: int) -> str:
    """The insert_deduplication_token of the index insert of journaled requests first..last."""
    return f"mltrace-journal-{first_seq}-{last_seq}"


def _db(store: Any) -> str:
    from mltrace_otel.store.schema import quote_ident

    return quote_ident(store.database)


def append(store: Any, first_seq: int, payloads: Sequence[bytes], spans: Sequence[int]) -> list[int]:
    """Append requests to the journal, numbered from ``first_seq``; their Seqs."""
    seqs = list(range(first_seq, first_seq + len(payloads)))
    for_store(store).append([Entry(q, n, p) for q, p, n in zip(seqs, payloads, spans, strict=True)])
    return seqs


def next_seq(last_seq: int) -> int:
    """The next sequence number: now in ns, and always past ``last_seq``."""
    return max(time.time_ns(), last_seq + 1)


def mark(store: Any, first_seq: int, last_seq: int, done: bool) -> None:
    """Record that the index insert of journaled requests first..last is starting (False) or done."""
    store.command(
        "journal_progress",
        f"INSERT INTO {_db(store)}.{PROGRESS} (FromSeq, ToSeq, Done) "
        "VALUES ({a:UInt64}, {b:UInt64}, {d:UInt8})",
        {"a": first_seq, "b": last_seq, "d": int(done)},
    )


def drop_indexed(store: Any, low_watermark: int) -> int:
    """Delete the journal segments wholly below ``low_watermark`` (every record before it is
    indexed), and the progress rows of their groups; how many segments were deleted."""
    dropped = for_store(store).drop_below(low_watermark)
    if dropped:  # their groups' progress rows are no longer needed
        sql = f"ALTER TABLE {_db(store)}.{PROGRESS} DELETE WHERE ToSeq < {{b:UInt64}}"
        store.command("journal_forget", sql, {"b": low_watermark // SEGMENT_NS * SEGMENT_NS})
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


def _adopt_legacy_table(store: Any, journal: Journal) -> None:
    """Move the rows of the first version's journal table (a store a collector of that
    version stopped or crashed on) into the segment files, with their Seqs, then drop it."""
    db = _db(store)
    if not store.query("journal_legacy", "SELECT count() FROM system.tables WHERE database = {db:String} "
                       "AND name = {t:String}", {"db": store.database, "t": LEGACY_TABLE})[0][0]:
        return
    rows = store._call("journal_legacy_rows", None, lambda c: c.query(
        f"SELECT Seq, Spans, Payload FROM {db}.{LEGACY_TABLE} ORDER BY Seq",
        column_formats={"Payload": "bytes"}).result_rows)
    journal.append([Entry(s, n, bytes(p)) for s, n, p in rows])
    store.command("journal_legacy_drop", f"DROP TABLE IF EXISTS {db}.{LEGACY_TABLE}")


def recover(store: Any) -> Recovered:
    """The journal records still to index, after a crash or a stop (normally none)."""
    journal = for_store(store)
    _adopt_legacy_table(store, journal)
    sql = f"SELECT FromSeq, ToSeq, max(Done) FROM {_db(store)}.{PROGRESS} GROUP BY FromSeq, ToSeq"
    groups = store.query("journal_groups", sql)
    records, corrupt = journal.scan()
    last = max([r.seq for r in records] + [b for _, b, _ in groups] + [0])
    done = _merged(sorted((a, b) for a, b, d in groups if d))  # a split group's parts nest in it
    open_groups = sorted((a, b) for a, b, d in groups if not d)

    def covered(seq: int, ranges: list[tuple[int, int]]) -> tuple[int, int] | None:
        i = bisect.bisect_right(ranges, (seq, 2**64)) - 1  # ranges are disjoint, sorted by start
        if i >= 0 and ranges[i][0] <= seq <= ranges[i][1]:
            return ranges[i]
        return None

    by_group: dict[tuple[int, int], list[Entry]] = {}
    loose: list[Entry] = []
    for e in journal.read([r for r in records if covered(r.seq, done) is None]):
        g = covered(e.seq, open_groups)
        if g is None:
            loose.append(e)
        else:
            by_group.setdefault(g, []).append(e)
    return Recovered([by_group[g] for g in sorted(by_group)], loose, last, corrupt)


def set_aside(store: Any, name: str, payload: bytes) -> str:
    """Keep a journaled request that no way of indexing could store; where it went."""
    return str(for_store(store).set_aside(name, payload))


__all__ = ["Entry", "Journal", "Recovered", "append", "mark", "recover", "drop_indexed", "for_store",
           "set_aside",
           "group_token", "next_seq", "PROGRESS", "SEGMENT_NS"]
