"""The ingest journal: serialized OTLP requests committed before they are indexed.

The collector appends every request it takes here first, in the queue format of
:mod:`mltrace_otel.spool`, to a directory :func:`for_store` picks; its indexer
(``store/indexer.py``), the one writer into the store, indexes many journaled requests per
insert. The "journaled" acknowledgement answers a request once it is appended, the "indexed" one
once it is indexed. Durability is the store's own (no fsync): an append survives the collector
being killed, not the machine losing power.

Exactly-once: each index insert covers a contiguous range of records and carries the
insert_deduplication_token :func:`group_token` of that range; the ``progress`` file beside the
segments (fixed 21-byte records: first and last Seq, Done, CRC-32) says Done = 0 before the
insert and 1 after. After a crash, :func:`recover` returns the groups left at Done = 0 (indexed
again with the same token: the store drops what the crashed insert had committed) and the
records no group covers; a record cut short is cut off, a damaged one skipped alone (logged,
:attr:`Recovered.corrupt`). It also moves what a store of the first versions still holds in
their tables (``mltrace_ingest_journal``, ``mltrace_ingest_progress``) into the files, once.

A request no way of indexing can store is set aside, never deleted:
``rejected/<seq>-<span>.otlp`` beside the segments (:meth:`Journal.set_aside`).

Imports :mod:`mltrace_otel.spool` (the queue format), :mod:`.schema` (identifier quoting) and
:mod:`.connect` (the embedded store's directory); SQL only here.
"""

from __future__ import annotations

import bisect
import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from mltrace_otel import spool
from mltrace_otel.errors import StoreUnavailable
from mltrace_otel.spool import SEGMENT_NS, Entry, next_seq
from mltrace_otel.store.connect import engine_dir
from mltrace_otel.store.models import Recovered
from mltrace_otel.store.protocols import IngestConnection
from mltrace_otel.store.schema import quote_ident

log = logging.getLogger(__name__)

PROGRESS = "mltrace_ingest_progress"
"""The progress table of the first versions (moved into the progress file by :func:`recover`)."""
PROGRESS_FILE = "progress"
_MARK = struct.Struct("<QQB")  # first Seq, last Seq, Done
_MARK_SIZE = _MARK.size + 4  # + CRC-32 of the above
LEGACY_TABLE = "mltrace_ingest_journal"
"""The journal table of the first version (dropped by :func:`recover` once its rows are moved)."""
DIRNAME = "mltrace-journal"
WRITER = "journal"
"""The name of the collector's writer in its segment files (one writer per journal)."""


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` as the whole of ``path`` (created 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, spool.FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _mark_record(first_seq: int, last_seq: int, done: bool) -> bytes:
    body = _MARK.pack(first_seq, last_seq, int(done))
    return body + zlib.crc32(body).to_bytes(4, "little")


class Journal:
    """The journal of one store directory. One object per directory and process
    (:func:`for_store`): the collector's writer appends, its indexer threads drop. Only the
    process holding the embedded store runs a collector on it (opening a store another process
    holds fails), so no other process writes here."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._writer = spool.SegmentWriter(directory, WRITER)
        self._progress = directory / PROGRESS_FILE

    def mark(self, first_seq: int, last_seq: int, done: bool) -> None:
        """Record an index group as starting (False) or indexed (True): one 21-byte write.

        Raises:
            StoreUnavailable: the progress file cannot be written (disk full, permissions).
        """
        record = _mark_record(first_seq, last_seq, done)
        try:
            with self._lock:
                spool.private_dir(self.directory)
                fd = os.open(self._progress, os.O_WRONLY | os.O_CREAT | os.O_APPEND, spool.FILE_MODE)
                try:
                    if os.write(fd, record) != len(record):
                        raise OSError("short write")
                finally:
                    os.close(fd)
        except OSError as e:
            raise StoreUnavailable(f"cannot write the ingest journal's progress in {self.directory}: {e}",
                                   hint="free disk space") from e

    def progress(self) -> list[tuple[int, int, bool]]:
        """Every whole progress record: (first Seq, last Seq, Done). A torn last record (a crash
        mid-write) is cut off; a damaged one is skipped (logged)."""
        with self._lock:
            return self._read_progress()

    def _read_progress(self) -> list[tuple[int, int, bool]]:
        try:
            data = self._progress.read_bytes()
        except FileNotFoundError:
            return []
        whole = len(data) - len(data) % _MARK_SIZE
        if whole < len(data):
            os.truncate(self._progress, whole)
        out: list[tuple[int, int, bool]] = []
        for at in range(0, whole, _MARK_SIZE):
            body, crc = data[at:at + _MARK.size], data[at + _MARK.size:at + _MARK_SIZE]
            if zlib.crc32(body) != int.from_bytes(crc, "little"):
                log.error("mltrace: skipped a damaged record of %s (offset %d)", self._progress, at)
                continue
            a, b, d = _MARK.unpack(body)
            out.append((a, b, bool(d)))
        return out

    def _forget_progress_below(self, seq: int) -> None:
        """Drop the progress records of groups ending before ``seq`` (their segments are gone)."""
        tmp = self._progress.with_name(PROGRESS_FILE + ".tmp")
        with self._lock:
            _write_private(tmp, b"".join(_mark_record(a, b, d) for a, b, d in self._read_progress()
                                         if b >= seq))
            os.replace(tmp, self._progress)

    def append(self, first_seq: int, payloads: Sequence[bytes], spans: Sequence[int]) -> list[spool.Record]:
        """Write requests as records numbered from ``first_seq`` (one ``write`` per segment), and
        say where each went (its Seq, spans and place: the indexer reads it back from there with
        :func:`mltrace_otel.spool.load`, the journal holding the one copy of an appended request);
        a failed write leaves nothing half-written before later records.

        Raises:
            StoreUnavailable: the journal cannot be written (disk full, permissions).
        """
        return self._append([Entry(q, n, p) for q, (p, n) in enumerate(zip(payloads, spans, strict=True),
                                                                       start=first_seq)])

    def _append(self, entries: Sequence[Entry]) -> list[spool.Record]:
        try:
            return self._writer.append(entries)
        except OSError as e:
            raise StoreUnavailable(f"cannot write the ingest journal in {self.directory}: {e}",
                                   hint="free disk space, or set MLTRACE_ACK=indexed") from e

    def holds_records(self) -> bool:
        """Whether any segment file is left (a listing, nothing read)."""
        return bool(spool.segments(self.directory))

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

    def set_aside(self, name: str, payload: bytes) -> Path:
        """Keep a request no way of indexing could store: ``rejected/<name>.otlp`` (0600)."""
        directory = self.directory / "rejected"
        spool.private_dir(directory)
        path = directory / f"{name}.otlp"
        _write_private(path, payload)
        return path

    def drop_indexed(self, low_watermark: int) -> int:
        """Delete the segments whose Seq slot lies wholly below ``low_watermark`` (every record
        before it is indexed), and the progress records of their groups; how many segments."""
        below = low_watermark // SEGMENT_NS
        dropped = 0
        with self._lock:
            for slot, path in spool.segments(self.directory):
                if slot < below:
                    if path.name.endswith(spool.OPEN):  # this writer's (sealed first) or a crashed one's
                        self._writer.seal()
                        spool.sealed_name(path).unlink(missing_ok=True)
                    path.unlink(missing_ok=True)
                    dropped += 1
        if dropped:  # their groups' progress records are no longer needed
            self._forget_progress_below(below * SEGMENT_NS)
        return dropped


_journals: dict[Path, Journal] = {}
_journals_lock = threading.Lock()


def for_store(store: IngestConnection) -> Journal:
    """The ingest journal of a store (one object per directory in this process).

    The embedded store's lies in its engine directory (``<store>/mltrace-journal/<database>/``):
    one process holds the engine, so one collector writes it. A ClickHouse server's lies under
    ``MLTRACE_DIR/mltrace-journal/<host>-<port>-<database>[-<slot>]/``: each collector process
    takes the first slot no other live process holds (an flock held for the process's life), and
    a collector started after a crash takes the crashed one's slot and indexes what it left.
    """
    db = store.database  # one engine directory can hold several databases (a journal each)
    if store.settings.is_embedded:
        name = db if db.replace("_", "").isalnum() and db.isascii() else "x" + db.encode().hex()
        base = engine_dir(store.settings.resolved_store_url) / DIRNAME / name
        with _journals_lock:
            return _journals.setdefault(base, Journal(base))
    parts = urlsplit(store.settings.resolved_store_url)
    base = (store.settings.mltrace_dir.expanduser() / DIRNAME
            / _safe_name(f"{parts.hostname}-{parts.port or 0}-{db}"))
    with _journals_lock:
        for slot in range(64):
            directory = base if slot == 0 else base.with_name(f"{base.name}-{slot}")
            if directory in _journals:
                return _journals[directory]
            if _lock_dir(directory):
                return _journals.setdefault(directory, Journal(directory))
    raise StoreUnavailable(f"64 collectors on this machine already hold a journal in {base.parent}",
                           hint="give each collector its own MLTRACE_DIR")


def _safe_name(text: str) -> str:
    """``text`` as one path component: itself when plain (letters, digits, ``_-.``, not
    starting with a dot), else hex."""
    plain = text.isascii() and not text.startswith(".") and all(c.isalnum() or c in "_-." for c in text)
    return text if plain and text else "x" + text.encode().hex()


_held: list[int] = []  # fds of the journal directories this process locked (held until exit)


def _lock_dir(directory: Path) -> bool:
    """Take ``directory`` for this process (a non-blocking flock on its ``lock`` file); False
    when another live process holds it."""
    spool.private_dir(directory)
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, spool.FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _held.append(fd)
    return True


def group_token(first_seq: int, last_seq: int) -> str:
    """The insert_deduplication_token of the index insert of journaled requests first..last."""
    return f"mltrace-journal-{first_seq}-{last_seq}"


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ranges with the overlapping and nested ones merged (disjoint, sorted)."""
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _adopt_legacy_table(store: IngestConnection, journal: Journal) -> None:
    """Move the rows of the first version's journal table (a store a collector of that
    version stopped or crashed on) into the segment files, with their Seqs, then drop it."""
    db = quote_ident(store.database)
    if not store.query("journal_legacy", "SELECT count() FROM system.tables WHERE database = {db:String} "
                       "AND name = {t:String}", {"db": store.database, "t": LEGACY_TABLE})[0][0]:
        return
    rows = store.query("journal_legacy_rows",
                       f"SELECT Seq, Spans, Payload FROM {db}.{LEGACY_TABLE} ORDER BY Seq",
                       column_formats={"Payload": "bytes"})
    journal._append([Entry(s, n, bytes(p)) for s, n, p in rows])
    store.command("journal_legacy_drop", f"DROP TABLE IF EXISTS {db}.{LEGACY_TABLE}")


def _adopt_legacy_progress(store: IngestConnection, journal: Journal) -> None:
    """Move the rows of the first versions' progress table into the progress file, then empty
    the table (a store whose collector of that version stopped with groups not yet indexed)."""
    table = f"{quote_ident(store.database)}.{PROGRESS}"
    rows = store.query("journal_legacy_progress", f"SELECT FromSeq, ToSeq, max(Done) FROM {table} "
                       "GROUP BY FromSeq, ToSeq ORDER BY FromSeq, ToSeq")
    if rows:
        for a, b, d in rows:
            journal.mark(a, b, bool(d))
        store.command("journal_legacy_progress_clear", f"TRUNCATE TABLE {table}")


def recover(store: IngestConnection, journal: Journal) -> Recovered:
    """The records of ``store``'s journal still to index, after a crash or a stop (normally
    none), with what the first versions' tables still held moved into it first."""
    _adopt_legacy_table(store, journal)
    _adopt_legacy_progress(store, journal)
    marks: dict[tuple[int, int], bool] = {}
    for a, b, d in journal.progress():
        marks[(a, b)] = marks.get((a, b), False) or d
    groups = [(a, b, d) for (a, b), d in marks.items()]
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
    entries, lost = spool.load([r for r in records if covered(r.seq, done) is None])
    for e in entries:
        g = covered(e.seq, open_groups)
        if g is None:
            loose.append(e)
        else:
            by_group.setdefault(g, []).append(e)
    return Recovered([by_group[g] for g in sorted(by_group)], loose, last, corrupt + len(lost))


__all__ = ["Entry", "Journal", "Recovered", "recover", "for_store", "group_token", "next_seq", "PROGRESS",
           "SEGMENT_NS"]
