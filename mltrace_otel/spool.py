"""The durable queue of OTLP requests: the SDK's spool and the collector's ingest journal.

One format and one piece of code for both (issue 15): **segment files** of **records**, each
record one serialized OTLP ``ExportTraceServiceRequest`` with its sequence number, span count
and a CRC-32::

    record   = <QIII: Seq, Spans, payload length, CRC-32 of the three and the payload> payload
    segment  = record*          (all Seqs of a segment fall in one SEGMENT_NS-wide slot)
    <first Seq:020d>-<writer>.open   a live writer appends here (writer = "<pid>-<hex>" or a name)
    <first Seq:020d>-<writer>.seg    sealed: complete, no more records

A writer (:class:`SegmentWriter`) appends to segments of its own, so writers never share a
file. A record cut short at the end of a segment is a write that a crash interrupted: it was
never acknowledged, and readers skip it. A record damaged on disk (a CRC that fails, a header
that makes no sense) is skipped alone: :func:`scan` resynchronises on the next record whose
header and CRC check out, so every record after the damage is kept, and reports the count.

The two users:

- **The SDK's spool** (``Settings.spool_dir``): with no collector configured, or when OTLP
  fails, the SDK writes each batch with :func:`write_batch` (a sealed, fsynced segment of one
  record: it survives kill -9 and power loss). Any process that opens the embedded store, and the
  collector, drains it: :func:`claim_all` claims a sealed segment (or one whose writer died) by an
  atomic rename to ``<name>.seg.claim-<pid>``, so two drains never take the same file; the drain
  inserts its records with the segment's name as the insert de-duplication token, then deletes
  it. A claim whose process died is taken back by the next drain. Spool files of version 0.1
  (``<time>-<pid>-<hex>.otlp``, one request per file, no header) are still drained.
- **The collector's ingest journal** (:mod:`mltrace_otel.store.journal`): one
  :class:`SegmentWriter` per store directory, not fsynced (like the store's own inserts: it
  survives the collector being killed, not the machine losing power), indexed into the store in
  large inserts with per-range tokens and progress rows.

Private files: spans hold pointer names, code and notes, so what mltrace writes locally is for
its user only, whatever the umask: the spool directory (like MLTRACE_DIR, the embedded store's
directory and the artifact directory, through :func:`private_dir` / :func:`secure_home`) is
created 0700 and segment files 0600.

Imports nothing from the project.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

OPEN = ".open"
SEALED = ".seg"
CLAIM = ".claim-"
LEGACY = ".otlp"
"""Spool batch files of version 0.1 (one request per file, no record header)."""
SEGMENT_NS = 10_000_000_000
"""Seq slot of one segment (10 s of ns Seqs): a writer starts a new segment when a Seq leaves the
slot of the open one. The journal deletes whole slots once indexed."""
DIR_MODE = 0o700
"""Mode of every directory mltrace creates (MLTRACE_DIR, spool, embedded store, artifacts)."""
FILE_MODE = 0o600
"""Mode of segment files."""
HEAD = struct.Struct("<QIII")
"""A record's header: Seq, Spans, payload length, CRC-32."""
_head = HEAD.pack

_log = logging.getLogger("mltrace_otel")
_secured: set[str] = set()
_secured_lock = threading.Lock()
_NAME = re.compile(r"(\d{1,20})-(.+)")


@dataclass(frozen=True)
class Entry:
    """One queued request: its sequence number, span count and serialized bytes."""

    seq: int
    spans: int
    payload: bytes


@dataclass(frozen=True)
class Record:
    """Where a whole, CRC-checked record lies in a segment file."""

    seq: int
    spans: int
    path: Path
    offset: int  # of the payload
    length: int


def next_seq(last_seq: int, n: int = 1) -> int:
    """The first of ``n`` sequence numbers: now in ns, always past ``last_seq``, and moved to
    the start of the next Seq slot when ``n`` from now would cross into it, so one append of
    ``n`` records is one write to one segment (all written, or none: :meth:`SegmentWriter.append`)."""
    first = max(time.time_ns(), last_seq + 1)
    if (first + n - 1) // SEGMENT_NS != first // SEGMENT_NS:
        first = (first // SEGMENT_NS + 1) * SEGMENT_NS
    return first


_writev = getattr(os, "writev", None)  # not on Windows
_crc_head = struct.Struct("<QII").pack
_crc32 = zlib.crc32


def _crc(seq: int, spans: int, payload: bytes | memoryview) -> int:
    return _crc32(payload, _crc32(_crc_head(seq, spans, len(payload))))


def encode(entries: Sequence[Entry]) -> bytes:
    """Records for ``entries``, back to back (one ``write``)."""
    return b"".join(HEAD.pack(e.seq, e.spans, len(e.payload), _crc(e.seq, e.spans, e.payload)) + e.payload
                    for e in entries)


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents as directories only this user can enter (0700,
    narrowed further by a stricter umask); an existing directory is left as it is.

    The missing parents are private too: a parent made with the umask's default (0755) would
    list the names of what it holds to everyone.
    """
    missing = []
    p = path
    while not p.is_dir() and p.parent != p:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass
    return path


def secure_home(mltrace_dir: Path) -> None:
    """Make MLTRACE_DIR private: create it 0700, or tighten an existing one this user owns
    (made by a version that used the umask, e.g. 0755) to 0700, logging that once at INFO.

    Once per directory and process (one stat after the first call); never raises: the callers
    are the SDK's export thread and store opening, which must go on if this fails.
    """
    key = str(mltrace_dir)
    with _secured_lock:
        if key in _secured:
            return
        _secured.add(key)
    try:
        if not mltrace_dir.is_dir():
            private_dir(mltrace_dir)
            return
        st = mltrace_dir.stat()
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid == os.geteuid() and mode & 0o077:
            os.chmod(mltrace_dir, mode & DIR_MODE)
            _log.info("mltrace: %s was readable by other users (mode %o); made it private (%o): "
                      "it holds the store, the spool and saved artifacts",
                      mltrace_dir, mode, mode & DIR_MODE)
    except OSError as e:
        _log.debug("mltrace: cannot make %s private: %s", mltrace_dir, e)


# --- segments --------------------------------------------------------------------------------

def segment_slot(path: Path) -> int | None:
    """The Seq slot (Seq // SEGMENT_NS) a segment file's records belong to; None for a name that is
    not a segment. ``<first seq>-<writer>.open|.seg`` (and the journal's first version:
    ``<slot:012d>.seg``)."""
    name = path.name
    if CLAIM in name:
        name = name[:name.index(CLAIM)]
    if name.endswith(SEALED):
        stem = name[:-len(SEALED)]
    elif name.endswith(OPEN):
        stem = name[:-len(OPEN)]
    else:
        return None
    if stem.isdigit() and len(stem) == 12:
        return int(stem)
    m = _NAME.fullmatch(stem)
    return int(m.group(1)) // SEGMENT_NS if m else None


def writer_pid(path: Path) -> int | None:
    """The pid of the writer that named a segment ``<seq>-<pid>-<hex>``; None for named writers."""
    m = _NAME.fullmatch(path.name.split(".", 1)[0])
    if not m:
        return None
    pid = m.group(2).split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _record_at(data: memoryview, at: int, slot: int, path: Path) -> Record | None:
    """The record starting at ``at`` if its header is plausible (a Seq of this slot, a payload that
    fits) and its CRC checks out; else None."""
    if at + HEAD.size > len(data):
        return None
    seq, spans, n, crc = HEAD.unpack_from(data, at)
    start = at + HEAD.size
    if seq // SEGMENT_NS != slot or start + n > len(data):
        return None
    if _crc(seq, spans, data[start:start + n]) != crc:
        return None
    return Record(seq, spans, path, start, n)


def _resync(data: memoryview, start: int, slot: int, path: Path) -> int | None:
    """The first offset at or after ``start`` where a valid record begins (None: none).

    Candidates are found with ``bytes.find``: every Seq of a slot shares its top bytes (Seqs are
    ns, a slot spans 10 s < 2**40 ns, so bits 40-63 take at most two values)."""
    raw = data.obj if isinstance(data.obj, bytes) else bytes(data)
    lo, hi = slot * SEGMENT_NS, (slot + 1) * SEGMENT_NS - 1
    best: int | None = None
    for needle in {(lo >> 40).to_bytes(3, "little"), (hi >> 40).to_bytes(3, "little")}:
        pos = start + 5
        while True:
            pos = raw.find(needle, pos)
            if pos < 0 or (best is not None and pos - 5 >= best):
                break
            if _record_at(data, pos - 5, slot, path) is not None:
                best = pos - 5
                break
            pos += 1
    return best


def _whole_but_damaged(data: memoryview, at: int, slot: int) -> bool:
    """A record at ``at`` whose header is plausible and whose payload is all there (so not a write
    a crash cut short), but whose CRC fails: damage, not a torn tail."""
    seq, _spans, n, _crc_value = HEAD.unpack_from(data, at)
    return seq // SEGMENT_NS == slot and at + HEAD.size + n == len(data)


def scan(path: Path, data: bytes | None = None) -> tuple[list[Record], int, int]:
    """The whole records of one segment file, how many damaged records were skipped (each logged
    at ERROR), and the offset where the good data ends (a torn tail starts there)."""
    slot = segment_slot(path)
    if slot is None:
        raise ValueError(f"{path} is not a segment file")
    view = memoryview(data if data is not None else path.read_bytes())  # checked in place, not copied
    records: list[Record] = []
    corrupt, at, end = 0, 0, len(view)
    while at + HEAD.size <= end:
        rec = _record_at(view, at, slot, path)
        if rec is not None:
            records.append(rec)
            at = rec.offset + rec.length
            continue
        nxt = _resync(view, at + 1, slot, path)
        if nxt is None:
            if _whole_but_damaged(view, at, slot):
                corrupt += 1
                _log.error("mltrace: queue segment %s: the last record (at byte %d) is damaged (CRC "
                           "mismatch); skipped", path, at)
                at = end
            break  # else a torn tail: a write a crash cut short, never acknowledged
        corrupt += 1
        _log.error("mltrace: queue segment %s: %d damaged bytes at byte %d skipped (a record lost); "
                   "the records after them are kept", path, nxt - at, at)
        at = nxt
    return records, corrupt, at


def follow(path: Path, offset: int, complete: bool) -> tuple[list[Entry], int]:
    """The whole records of a segment from byte ``offset`` on, and the offset after them, for a
    reader that follows a live writer (:mod:`mltrace_otel.sdk.courier`). It stops at a record
    that is not whole yet (its writer is still appending it); once the segment is ``complete``
    (its writer moved to a newer one, or died), the rest is read as :func:`scan` reads a
    segment: damaged bytes skipped, a torn tail left.

    Raises:
        OSError: the file cannot be read (FileNotFoundError: a drain claimed it).
    """
    slot = segment_slot(path)
    if slot is None:
        raise ValueError(f"{path} is not a segment file")
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    view = memoryview(data)
    if complete:
        records, _, _ = scan(path, data)
        return ([Entry(r.seq, r.spans, data[r.offset:r.offset + r.length]) for r in records],
                offset + len(data))
    out, at = [], 0
    while (rec := _record_at(view, at, slot, path)) is not None:
        out.append(Entry(rec.seq, rec.spans, data[rec.offset:rec.offset + rec.length]))
        at = rec.offset + rec.length
    return out, offset + at


def load(records: Sequence[Record]) -> tuple[list[Entry], list[Record]]:
    """The requests at these records' places, each checked again (header and CRC), and the
    records no longer there whole (each logged at ERROR: a segment deleted, or damaged bytes). A
    record written to an ``.open`` segment that its writer has sealed since is read under the
    sealed name.

    Raises:
        OSError: a segment could not be read (other than being gone).
    """
    entries: list[Entry] = []
    lost: list[Record] = []
    files: dict[Path, BinaryIO | None] = {}
    try:
        for r in records:
            if r.path not in files:
                files[r.path] = _open_segment(r.path)
            f = files[r.path]
            if f is not None:
                f.seek(r.offset - HEAD.size)
                head, payload = f.read(HEAD.size), f.read(r.length)
                if (len(head) == HEAD.size and len(payload) == r.length
                        and HEAD.unpack(head) == (r.seq, r.spans, r.length, _crc(r.seq, r.spans, payload))):
                    entries.append(Entry(r.seq, r.spans, payload))
                    continue
            _log.error("mltrace: queue record Seq %d (%d spans) is no longer whole in %s; lost",
                       r.seq, r.spans, r.path)
            lost.append(r)
    finally:
        for f in files.values():
            if f is not None:
                f.close()
    return entries, lost


def _open_segment(path: Path) -> BinaryIO | None:
    """``path`` open for reading, under its sealed name if its writer sealed it since; None
    when it is gone."""
    for p in (path, sealed_name(path)) if path.name.endswith(OPEN) else (path,):
        try:
            return open(p, "rb")  # noqa: SIM115 - closed by the caller
        except FileNotFoundError:
            continue
    return None


def payloads(path: Path) -> list[bytes]:
    """The requests a spool or journal file holds (a 0.1 batch file: its whole content)."""
    data = path.read_bytes()
    if path.name.endswith(LEGACY):
        return [data]
    records, _, _ = scan(path, data)
    return [data[r.offset:r.offset + r.length] for r in records]


def segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files of a directory (open and sealed, not claimed) with their Seq slots, in
    order of their first Seq."""
    if not directory.is_dir():
        return []
    out = []
    for p in directory.iterdir():
        if CLAIM in p.name:
            continue
        slot = segment_slot(p)
        if slot is not None:
            out.append((slot, p))
    return sorted(out, key=lambda sp: (sp[0], sp[1].name))


class SegmentWriter:
    """Appends records to segment files of its own in ``directory`` (thread-safe).

    Args:
        directory: the queue directory (created 0700).
        writer: the writer's name in its file names; default ``<pid>-<random hex>``, which lets a
            drain tell a dead writer's open segment from a live one's.
        fsync: make each append durable against power loss (the SDK's spool), not only against
            the process dying (the collector's journal).
    """

    def __init__(self, directory: Path, writer: str | None = None, *, fsync: bool = False,
                 seal_on_rotate: bool = True) -> None:
        self.directory = directory
        self.writer = writer or f"{os.getpid()}-{secrets.token_hex(6)}"
        self.fsync = fsync
        self.seal_on_rotate = seal_on_rotate
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._slot: int | None = None
        self._size = 0  # of the open segment: only this writer appends to it (no lseek per append)
        self._rotated: list[Path] = []  # closed, unsealed segments (seal_on_rotate=False)

    def append(self, entries: Sequence[Entry]) -> list[Record]:
        """Write records in Seq order, each to a segment of its Seq's slot (one ``write`` per slot),
        and say where each went (for :func:`load`). A failed write is cut back off its segment; if
        even that fails, the segment is sealed, so no record ever follows a torn one. Records
        numbered by :func:`next_seq` lie in one slot: the append is all or nothing.

        Raises:
            OSError: the records could not be written (disk full, permissions): none of the
                failed slot's is (those of an earlier slot in the same call stay written).
        """
        out: list[Record] = []
        with self._lock:
            k = 0
            while k < len(entries):
                slot = entries[k].seq // SEGMENT_NS
                j = k
                while j < len(entries) and entries[j].seq // SEGMENT_NS == slot:
                    j += 1
                chunk = encode(entries[k:j])
                path, at = self._write(slot, entries[k].seq, (chunk,), len(chunk))
                for e in entries[k:j]:
                    out.append(Record(e.seq, e.spans, path, at + HEAD.size, len(e.payload)))
                    at += HEAD.size + len(e.payload)
                k = j
        return out

    def append_one(self, seq: int, spans: int, payload: bytes) -> None:
        """:meth:`append` of one record, without building an :class:`Entry`: its header and
        payload go to the segment in one ``writev`` (no copy of the payload)."""
        n = len(payload)
        head = _head(seq, spans, n, _crc32(payload, _crc32(_crc_head(seq, spans, n))))  # as _crc()
        with self._lock:
            self._write(seq // SEGMENT_NS, seq, (head, payload), HEAD.size + n)

    def _write(self, slot: int, first_seq: int, chunks: Sequence[bytes], size: int) -> tuple[Path, int]:
        """Append ``chunks`` to the open segment of ``slot``; the segment's path and the offset
        they start at."""
        if self._slot != slot:
            if self.seal_on_rotate:
                self._seal()
            elif self._fd is not None:
                os.close(self._fd)
                if self._path is not None:
                    self._rotated.append(self._path)
                self._fd, self._path, self._slot = None, None, None
            private_dir(self.directory)
            self._path = self.directory / f"{first_seq:020d}-{self.writer}{OPEN}"
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            self._slot = slot
            self._size = os.fstat(self._fd).st_size
        fd, path = self._fd, self._path
        assert fd is not None and path is not None
        start = self._size
        try:
            done = (_writev(fd, chunks) if len(chunks) > 1 and _writev is not None
                    else os.write(fd, chunks[0] if len(chunks) == 1 else b"".join(chunks)))
            if done < size:  # a short write (a signal, a full disk): the rest, then or never
                view = memoryview(b"".join(chunks))[done:]
                while view:
                    view = view[os.write(fd, view):]
            if self.fsync:
                os.fsync(fd)
            self._size = start + size
            return path, start
        except BaseException:
            try:
                os.ftruncate(fd, start)
            except OSError:  # a half record stays at the end: nothing may follow it
                self._seal()
            raise

    def seal(self) -> None:
        """Close the open segment and mark it complete (readers may now take it whole)."""
        with self._lock:
            self._seal()

    def detach(self) -> list[Path]:
        """Close the open segment without sealing it; the paths of every segment written since
        the last detach (with ``seal_on_rotate=False``, those a new Seq slot closed too): the
        caller decides their fate (:func:`seal_path` or delete); the next append starts a new
        segment. A live writer's ``.open`` segments are never taken by a drain, so nothing else
        touches them meanwhile."""
        with self._lock:
            fd, path = self._fd, self._path
            self._fd, self._path, self._slot = None, None, None
            if fd is not None:
                os.close(fd)
            paths, self._rotated = self._rotated, []
            return paths + ([path] if path is not None else [])

    def _seal(self) -> None:
        if self._fd is None:
            return
        fd, path = self._fd, self._path
        self._fd, self._path, self._slot = None, None, None
        try:
            os.close(fd)
            if path is not None:
                seal_path(path, self.fsync)
        except OSError as e:  # a dead writer's .open segment is drained all the same
            _log.warning("mltrace: cannot seal queue segment %s: %s", path, e)


def sealed_name(path: Path) -> Path:
    """The name an ``.open`` segment has once sealed."""
    return path.with_name(path.name[:-len(OPEN)] + SEALED)


def seal_path(path: Path, fsync: bool = False) -> Path:
    """Mark a detached ``.open`` segment complete (drainable); its new path."""
    sealed = sealed_name(path)
    os.replace(path, sealed)
    if fsync:
        _fsync_dir(path.parent)
    return sealed


def write_batch(spool_dir: Path, payload: bytes, spans: int = 0) -> Path:
    """Durably add one serialized ExportTraceServiceRequest (of ``spans`` spans) to the spool: a
    sealed, fsynced segment of one record; its path. A reader never takes a half-written one
    (it is ``.open`` until sealed), and one whose write returned survives kill -9 and power loss.
    """
    writer = SegmentWriter(spool_dir, fsync=True)
    writer.append([Entry(next_seq(0), spans, payload)])
    (path,) = writer.detach()
    return seal_path(path, fsync=True)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0; a pid we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Claimed:
    """A spool segment this process has claimed: read :meth:`entries`, insert them with
    :attr:`token`, then :meth:`done` (or :meth:`release` to give it back)."""

    path: Path
    token: str
    restore: str  # the name it goes back to on release

    def entries(self) -> tuple[list[Entry], int]:
        """Its whole records (a 0.1 batch file: its one request) and how many damaged ones were
        skipped. Raises OSError when it cannot be read."""
        data = self.path.read_bytes()
        if self.restore.endswith(LEGACY):
            return [Entry(0, 0, data)], 0
        records, corrupt, _ = scan(self.path.with_name(self.restore), data)
        return [Entry(r.seq, r.spans, data[r.offset:r.offset + r.length]) for r in records], corrupt

    def done(self) -> None:
        """Its rows are committed: remove the file."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def release(self) -> None:
        """Give it back unprocessed (e.g. the store refused it for a passing reason)."""
        try:
            os.replace(self.path, self.path.with_name(self.restore))
        except FileNotFoundError:
            pass


def _drainable(p: Path, me: int) -> str | None:
    """The name ``p`` is restored to if a drain may take it now, else None: a sealed segment, a
    dead writer's open one, a 0.1 batch file, or a claim whose drain died."""
    name = p.name
    if CLAIM in name:
        base, _, pid = name.rpartition(CLAIM)
        return base if pid.isdigit() and int(pid) != me and not pid_alive(int(pid)) else None
    if name.endswith(SEALED) and segment_slot(p) is not None:
        return name
    if name.endswith(LEGACY) and not name.startswith("."):
        return name
    if name.endswith(OPEN):
        pid = writer_pid(p)
        return name if pid is not None and pid != me and not pid_alive(pid) else None
    return None


def pending(spool_dir: Path) -> list[Path]:
    """Spool files a drain would take now (sealed or abandoned, unclaimed), oldest first."""
    if not spool_dir.is_dir():
        return []
    me = os.getpid()
    return sorted(p for p in spool_dir.iterdir() if CLAIM not in p.name and _drainable(p, me))


def claim_all(spool_dir: Path) -> Iterator[Claimed]:
    """Claim every drainable spool file (see :func:`pending`, plus claims of dead drains), oldest
    first. Safe when several processes drain at once: each file is claimed by exactly one. Claims
    are made lazily, one file per iteration, so stopping early leaves the rest."""
    if not spool_dir.is_dir():
        return
    me = os.getpid()
    candidates = sorted((base, p) for p in spool_dir.iterdir() if (base := _drainable(p, me)))
    for base, p in candidates:
        target = spool_dir / f"{base}{CLAIM}{me}"
        try:
            os.rename(p, target)
        except FileNotFoundError:
            continue  # another drain took it
        token = base[:-len(LEGACY)] if base.endswith(LEGACY) else base.rsplit(".", 1)[0]
        yield Claimed(target, token, base)


def size_bytes(spool_dir: Path) -> int:
    """Total bytes of the spool's files (for the spool size cap)."""
    if not spool_dir.is_dir():
        return 0
    total = 0
    for p in spool_dir.iterdir():
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total
