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

Private files: spans hold pointer names, code and notes, so what mltrace writes locally is for
its user only, whatever the umask: the spool directory (like MLTRACE_DIR, the embedded store's
directory and the artifact directory, through :func:`private_dir` / :func:`secure_home`) is
created 0700 and batch files 0600.

Imports nothing from the project.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".otlp"
CLAIM = ".claim-"
TMP_PREFIX = ".tmp-"
DIR_MODE = 0o700
"""Mode of every directory mltrace creates (MLTRACE_DIR, spool, embedded store, artifacts)."""
FILE_MODE = 0o600
"""Mode of spool batch files."""

_log = logging.getLogger("mltrace_otel")
_secured: set[str] = set()
_secured_lock = threading.Lock()


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


def write_batch(spool_dir: Path, payload: bytes) -> Path:
    """Durably add one serialized ExportTraceServiceRequest to the spool; return its path.

    The file appears under its final name only once complete and fsynced, so a reader never
    sees half a batch, and a batch whose write returned survives kill -9 and power loss.
    The directory is created 0700 and the file 0600 (see the module docstring).
    """
    if not spool_dir.is_dir():
        private_dir(spool_dir)
    name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(6)}{SUFFIX}"
    tmp = spool_dir / (TMP_PREFIX + name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
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
