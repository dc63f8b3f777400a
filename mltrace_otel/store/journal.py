"""The ingest journal: serialized OTLP requests committed before they are indexed.

The collector's "journaled" acknowledgement (``collector/indexer.py``) answers a request once
its bytes are appended to the journal, a queue directory in the embedded store's directory
(``<store>/mltrace-journal/<database>/``) in the one queue format of :mod:`mltrace_otel.spool`
(segment files of CRC-checked records, one ``write`` per batch, one segment per 10 s of
sequence numbers). Indexing the same spans into ``otel_traces`` and the mltrace tables costs the
engine ~100 ms of fixed work per insert; the indexer indexes many journaled requests per insert,
which is where the throughput comes from. Durability is the store's own: like an engine insert
(no fsync), an append survives the collector being killed, not the machine losing power.

Recovery (:meth:`Journal.scan`) cuts a record a crash cut short off the end of its segment (it was
never acknowledged) and skips a record damaged on disk alone, keeping everything after it (logged
at ERROR, :attr:`Recovered.corrupt`, ``mltrace_collector_journal_corrupt_records_total``).

Exactly-once: each index insert covers a contiguous range of journal records and carries the
insert_deduplication_token :func:`group_token` of that range; its ``mltrace_ingest_progress``
row (a table: migration 0040) says Done = 0 before the insert and 1 after. After a crash,
:func:`recover` returns the groups left at Done = 0 (indexed again with the same token: the
store drops what the crashed insert had committed) and the records no group covers.

A request that no way of indexing can store (:mod:`mltrace_otel.collector.indexer` tries the
engine, the Python renderer, then each span alone and stripped) is set aside, never deleted:
:meth:`Journal.set_aside` writes it to ``rejected/<seq>-<span>.otlp`` beside the segments.

Imports :mod:`mltrace_otel.spool` (the queue format), :mod:`.schema` (identifier quoting) and
:mod:`.share` (the embedded store's directory); SQL only here.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mltrace_otel import spool
from mltrace_otel.spool import SEGMENT_NS, Entry, next_seq

log = logging.getLogger(__name__)

PROGRESS = "mltrace_ingest_progress"
LEGACY_TABLE = "mltrace_ingest_journal"
"""The journal table of the first version (dropped by :func:`recover` once its rows are moved)."""
DIRNAME = "mltrace-journal"
WRITER = "journal"
"""The name of the collector's writer in its segment files (one writer per journal)."""


@dataclass(frozen=True)
class Recovered:
    """What a collector finds in the journal when it starts: groups whose index insert may
    have been cut short (replay each with its own token) and entries in no group yet."""

    groups: list[list[Entry]]
    entries: list[Entry]
    last_seq: int
    corrupt: int = 0
    """Damaged records skipped (each at least one request: logged at ERROR)."""


class Journal:
    """The journal of one store directory. One object per directory and process
    (:func:`for_store`): the collector's writer appends, its indexer threads drop. Only the
    process holding the embedded store runs a collector on it (``collector/server.py`` refuses a
    proxied store), so no other process writes here."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._writer = spool.SegmentWriter(directory, WRITER)

    def append(self, entries: Sequence[Entry]) -> None:
        """Write records in Seq order (one ``write`` per segment); a failed write leaves nothing
        half-written before later records.

        Raises:
            StoreUnavailable: the journal cannot be written (disk full, permissions).
        """
        from mltrace_otel.errors import StoreUnavailable

        try:
            self._writer.append(entries)
        except OSError as e:
            raise StoreUnavailable(f"cannot write the ingest journal in {self.directory}: {e}",
                                   hint="free disk space, or set MLTRACE_ACK=indexed") from e

    def scan(self) -> tuple[list[spool.Record], int]:
        """Every whole record in Seq order, and how many damaged records were skipped. A
        segment's torn tail (a crash mid-write: never acknowledged) is truncated away; a damaged
        record is skipped alone (see :func:`mltrace_otel.spool.scan`)."""
        records: list[spool.Record] = []
        corrupt = 0
        with self._lock:
            self._writer.seal()  # appends after a scan go to a new segment
            for _, path in spool.segments(self.directory):
                found, bad, good_end = spool.scan(path)
                records.extend(found)
                corrupt += bad
                if good_end < path.stat().st_size:
                    os.truncate(path, good_end)
        records.sort(key=lambda r: r.seq)
        return records, corrupt

    def read(self, records: Sequence[spool.Record]) -> Iterator[Entry]:
        """The payloads of scanned records."""
        return spool.read(records)

    def set_aside(self, name: str, payload: bytes) -> Path:
        """Keep a request no way of indexing could store: ``rejected/<name>.otlp`` (0600)."""
        directory = self.directory / "rejected"
        spool.private_dir(directory)
        path = directory / f"{name}.otlp"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, spool.FILE_MODE)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        return path

    def drop_below(self, low_watermark: int) -> int:
        """Delete the segments whose Seq slot lies wholly below ``low_watermark``; how many."""
        below = low_watermark // SEGMENT_NS
        dropped = 0
        with self._lock:
            for slot, path in spool.segments(self.directory):
                if slot < below:
                    if path.name.endswith(spool.OPEN):
                        self._writer.seal()
                        path = spool.sealed_name(path)
                    path.unlink(missing_ok=True)
                    dropped += 1
        return dropped


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
           "set_aside", "next_seq",
           "group_token", "next_seq", "PROGRESS", "SEGMENT_NS"]
