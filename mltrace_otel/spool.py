"""The durable local spool: span batches waiting for the store.

The SDK writes (it never opens the store); any process that opens the embedded store, and the
collector, drain it. One file per batch, holding one serialized OTLP
``ExportTraceServiceRequest`` (protobuf), so the drain and the collector share one ingest path.

Life of a batch file, all in ``Settings.spool_dir``::

    .tmp-<name>          being written (ignored; left behind only by a writer killed mid-write,
                         whose export had not returned, and removed after an hour)
    <name>.otlp          sealed: complete, fsynced, atomically renamed into place
    <name>.otlp.claim-<pid>   claimed by one draining process (atomic rename, so two drains
                         never take the same file); deleted after its rows are committed.
                         A claim whose process is dead is taken back by the next drain.

``<name>`` = ``<time_ns:020d>-<pid>-<random hex>``; it is also the insert de-duplication token,
so a batch re-inserted after a crash between commit and delete is not stored twice.

Imports nothing from the project.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".otlp"
CLAIM = ".claim-"
TMP_PREFIX = ".tmp-"


def write_batch(spool_dir: Path, payload: bytes) -> Path:
    """Durably add one serialized ExportTraceServiceRequest to the spool; return its path.

    The file appears under its final name only once complete and fsynced, so a reader never
    sees half a batch, and a batch whose write returned survives kill -9 and power loss.
    """
    spool_dir.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(6)}{SUFFIX}"
    tmp = spool_dir / (TMP_PREFIX + name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(payload)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    final = spool_dir / name
    os.replace(tmp, final)
    _fsync_dir(spool_dir)
    return final


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
    """A batch this process has claimed: read :attr:`payload`, insert, then :meth:`done`."""

    path: Path
    token: str

    @property
    def payload(self) -> bytes:
        """The serialized ExportTraceServiceRequest."""
        return self.path.read_bytes()

    def done(self) -> None:
        """The batch's rows are committed: remove the file."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def release(self) -> None:
        """Give the batch back unprocessed (e.g. the store refused it for a passing reason)."""
        try:
            os.replace(self.path, self.path.with_name(self.token + SUFFIX))
        except FileNotFoundError:
            pass


def pending(spool_dir: Path) -> list[Path]:
    """Sealed, unclaimed batch files, oldest first."""
    if not spool_dir.is_dir():
        return []
    return sorted(p for p in spool_dir.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith("."))


def claim_all(spool_dir: Path) -> Iterator[Claimed]:
    """Claim every sealed batch (and every claim left by a dead process), oldest first.

    Safe when several processes drain at once: each file is claimed by exactly one of them.
    Claims are made lazily, one file per iteration, so stopping early leaves the rest.
    """
    if not spool_dir.is_dir():
        return
    me = os.getpid()
    now = time.time()
    candidates: list[tuple[str, Path]] = []
    for p in spool_dir.iterdir():
        name = p.name
        if name.startswith(TMP_PREFIX):
            try:
                if now - p.stat().st_mtime > 3600:
                    p.unlink()
            except FileNotFoundError:
                pass
            continue
        if name.endswith(SUFFIX):
            candidates.append((name[: -len(SUFFIX)], p))
        elif CLAIM in name:
            base, _, pid = name.rpartition(CLAIM)
            if pid.isdigit() and int(pid) != me and not pid_alive(int(pid)):
                candidates.append((base[: -len(SUFFIX)], p))
    candidates.sort()
    for token, p in candidates:
        target = spool_dir / f"{token}{SUFFIX}{CLAIM}{me}"
        try:
            os.rename(p, target)
        except FileNotFoundError:
            continue  # another drain took it
        yield Claimed(target, token)


def size_bytes(spool_dir: Path) -> int:
    """Total bytes of sealed and claimed batches (for the spool size cap)."""
    if not spool_dir.is_dir():
        return 0
    total = 0
    for p in spool_dir.iterdir():
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total
