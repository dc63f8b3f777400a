"""Content versions of local files and directories named by IO pointers.

A pointer name is a *local file* when it is an existing path (relative names resolve against
the process's current directory at call time) or a ``file://`` URL. Its version is:

* a regular file up to the hash limit (``MLTRACE_HASH_MAX_MB``, default 64; 0 = always
  sampled): a blake2b hash of its content only, so the same bytes written again get the same
  version wherever they live;
* a bigger file: a hash of its size, mtime and its first, middle and last MiB (a sample: an edit
  elsewhere that keeps the size and mtime is not seen);
* a directory: a hash of its sorted, recursive entry list with sizes and mtimes (not content),
  covering at most :data:`MAX_DIR_ENTRIES` entries;
* anything else (table names, ids, ``s3://`` URLs, missing paths): ``""``.

Cheap by design: names that obviously are not local (a ``scheme://`` other than ``file://``) cost
nothing, other names one system call (``access``, which answers "no such name" without raising;
``lstat`` for names that were files last time); a file whose (device, inode, size, mtime, ctime)
is unchanged is never read again (a bounded per-process LRU; a path whose ``lstat`` matches the
state its last version was taken in gets that version without building the LRU's key). The ctime
is in the key because tools that restore an mtime (``cp -p``, ``rsync -t``, ``touch -d``) cannot
restore it. A file changed within the file system's timestamp granularity of being hashed is not
cached (git's "racy clean" rule), so two same-size writes in one clock tick are still told apart.

Never raises and never blocks: only regular files are opened (non-blocking, then re-checked with
``fstat``), so a FIFO, a device or a socket is refused rather than read. A file that cannot be
read (vanished, no permission, dangling link, not a regular file) gets ``""``, one WARNING per
path, and is counted in ``delivery_stats().unreadable_files``.

Imports the standard library only; settings and the counter through :mod:`mltrace_otel.sdk.export`,
lazily, so :mod:`mltrace_otel.sdk.pointers` stays light.
"""

from __future__ import annotations

import collections
import hashlib
import io
import logging
import os
import stat
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

_log = logging.getLogger("mltrace_otel.sdk")

MIB = 1 << 20
SAMPLE_BYTES = MIB
"""Bytes read at the start, middle and end of a file above the hash limit."""
MAX_DIR_ENTRIES = 100_000
"""Entries a directory's version covers (in sorted walk order); the rest are not looked at."""
CACHE_ENTRIES = 10_000
"""Files whose versions this process remembers (least recently used dropped first)."""
MAX_WARNED_PATHS = 10_000
"""Paths remembered for "warn once per path"; beyond this a path may be warned about again."""
RACY_WINDOW_NS = 100_000_000
"""A file whose ctime is this recent when hashed is not cached (timestamps have ticks); files
whose timestamps are whole seconds (FAT, HFS+, some network file systems) use two seconds."""
_COARSE_RACY_WINDOW_NS = 2_000_000_000

_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


@dataclass(frozen=True)
class CacheInfo:
    """What the version cache did since the process started (or :func:`clear_cache`).

    Attributes:
        hits: versions served from the cache without reading the file.
        hashed: files read to compute a version (whole or sampled).
        size: entries in the cache now.
    """

    hits: int
    hashed: int
    size: int


class _Cache:
    """A thread-safe LRU of file versions keyed by what identifies a file's state."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.lock = threading.Lock()
        self.data: collections.OrderedDict[tuple, str] = collections.OrderedDict()
        self.hits = 0
        self.hashed = 0

    def get(self, key: tuple) -> str | None:
        v = self.data.get(key)  # one C-level call: atomic under the GIL, no lock on the hot path
        if v is not None:
            try:
                self.data.move_to_end(key)
            except KeyError:  # evicted by another thread meanwhile
                pass
            self.hits += 1  # approximate under thread contention; diagnostics only
        return v

    def put(self, key: tuple, version: str) -> None:
        with self.lock:
            self.data[key] = version
            self.data.move_to_end(key)
            while len(self.data) > self.capacity:
                self.data.popitem(last=False)

    def count_hashed(self) -> None:
        with self.lock:
            self.hashed += 1

    def clear(self) -> None:
        with self.lock:
            self.data.clear()
            self.hits = self.hashed = 0


_cache = _Cache(CACHE_ENTRIES)
_warned: collections.OrderedDict[str, None] = collections.OrderedDict()
_warned_lock = threading.Lock()
_env_limit: int | None = None
_limit_memo: tuple[Any, int] | None = None  # (the configured settings, their limit), see hash_limit
_export: Any = None  # mltrace_otel.sdk.export, imported at first use (keeps this module light)
_S_ISREG = stat.S_ISREG
_seen_files: set[str] = set()  # names that were files last time: lstat them without access() first
# path -> (mtime_ns, ctime_ns, size, inode, device, hash limit, version) of its latest cached
# version: an unchanged file costs one lstat and five comparisons (bounded like the cache)
_last: dict[str, tuple[int, int, int, int, int, int, str]] = {}
# faccessat(AT_SYMLINK_NOFOLLOW) where available: says "no such name" without an exception
_exists = os.access if os.access in os.supports_follow_symlinks else None


def cache_info() -> CacheInfo:
    """Hits, files hashed and entries of the per-process version cache."""
    with _cache.lock:
        return CacheInfo(_cache.hits, _cache.hashed, len(_cache.data))


def clear_cache() -> None:
    """Forget cached versions, the counts of :func:`cache_info`, the paths already warned
    about and the hash limit read from the environment (tests; ``export.reset()`` calls it)."""
    global _env_limit, _limit_memo
    _cache.clear()
    _seen_files.clear()
    _last.clear()
    with _warned_lock:
        _warned.clear()
    _env_limit = _limit_memo = None


def hash_limit() -> int:
    """Bytes up to which a file is hashed whole (``Settings.hash_max_mb``; -1 when it is 0:
    always sampled): the settings given to ``export.configure``, else the environment's, read
    once per process (leniently)."""
    global _env_limit, _export
    if _export is None:
        from mltrace_otel.sdk import export

        export._reset_hooks.append(clear_cache)
        _export = export
    global _limit_memo
    configured = _export.configured_settings()
    if configured is not None:
        limit = _limit_bytes(configured.hash_max_mb)
    else:
        if _env_limit is None:
            from mltrace_otel.sdk.config import current_settings

            _env_limit = _limit_bytes(current_settings().hash_max_mb)
        limit = _env_limit
    _limit_memo = (configured, limit)
    return limit


def _limit_bytes(mb: int) -> int:
    """MLTRACE_HASH_MAX_MB in bytes; -1 for 0 ("always sampled": no size is <= -1)."""
    return mb * MIB if mb > 0 else -1


def local_path(name: str) -> str | None:
    """The file-system path a pointer name would denote, or None when it cannot be a local file
    (empty, a NUL byte, a URL other than ``file://``, a ``file://`` URL naming another host).
    Makes no system call."""
    if not name or "\x00" in name:
        return None
    if "://" in name:
        if name[:7].lower() != "file://":
            return None
        parts = urlsplit(name)
        if parts.netloc not in ("", "localhost"):
            return None
        return unquote(parts.path) or None
    return name


def file_version(name: str, limit: int | None = None) -> str:
    """The content version of the local file or directory ``name`` names; ``""`` when it names
    none or cannot be read (logged once per path and counted). Never raises.

    Args:
        name: a pointer name: a path (relative to the current directory) or a ``file://`` URL.
        limit: hash files up to this many bytes whole, sample bigger ones (-1: sample all;
            default :func:`hash_limit`).
    """
    # the hot path (a name that is not a file, or an unchanged file seen before) is kept flat
    path = name if name and "://" not in name and "\x00" not in name else local_path(name)
    if not path:
        return ""
    try:
        last = _last.get(path)  # this path's latest version, with the state it was taken in
        seen = last is not None or path in _seen_files  # a hint only: which system call first
        if not seen and _exists is not None and not _exists(path, os.F_OK, follow_symlinks=False):
            return ""  # a table, an id, a missing file: answered without raising (3x cheaper)
        try:
            st = os.lstat(path)
        except (OSError, ValueError) as e:
            _seen_files.discard(path)
            _last.pop(path, None)
            if isinstance(e, PermissionError):  # something is there, but hidden from us
                _unreadable(path, _reason(e))
            return ""  # not a path at all (a table, an id): no version, nothing to say
        if limit is None:  # hash_limit(), without its calls while the configured settings stay
            memo = _limit_memo
            limit = memo[1] if memo is not None and memo[0] is _export._configured_settings else hash_limit()
        if (last is not None and last[0] == st.st_mtime_ns and last[1] == st.st_ctime_ns
                and last[2] == st.st_size and last[3] == st.st_ino and last[4] == st.st_dev
                and last[5] == limit):  # the same file, unchanged: no tuple key, no LRU update
            _cache.hits += 1  # approximate under thread contention; diagnostics only
            return last[6]
        if not seen:
            if len(_seen_files) >= CACHE_ENTRIES:
                _seen_files.clear()
            _seen_files.add(path)
        return _version(path, st, limit)
    except Exception as e:  # noqa: BLE001 - telemetry never breaks the host program
        _unreadable(path, f"{type(e).__name__}: {e}")
        return ""


def _version(path: str, st: os.stat_result, limit: int) -> str:
    link = stat.S_ISLNK(st.st_mode)
    if link:
        try:
            st = os.stat(path)
        except OSError as e:
            _unreadable(path, f"symbolic link to nothing readable ({_reason(e)})")
            return ""
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        return _dir_version(path)
    if not stat.S_ISREG(mode):
        _unreadable(path, f"not a regular file ({_kind(mode)}); never opened")
        return ""
    whole = st.st_size <= limit
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, whole)
    cached = _cache.get(key)
    if cached is None:
        try:
            version, stable = _hash_file(path, st, whole)
        except OSError as e:
            _unreadable(path, _reason(e))
            return ""
        _cache.count_hashed()
        if not stable or _racy(st):
            return version
        _cache.put(key, version)
        cached = version
    if link:  # the hot path compares the link's own lstat: never the same as its target's
        return cached
    if len(_last) >= CACHE_ENTRIES:
        _last.clear()
    _last[path] = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev, limit, cached)
    return cached


def _racy(st: os.stat_result) -> bool:
    """Whether the file changed so recently that a later change could keep its timestamps."""
    ctime = st.st_ctime_ns
    window = _COARSE_RACY_WINDOW_NS if ctime % 1_000_000_000 == 0 else RACY_WINDOW_NS
    return time.time_ns() - ctime < window


def _hash_file(path: str, st: os.stat_result, whole: bool) -> tuple[str, bool]:
    """(version, stable): stable is False when the file changed while it was read."""
    fd = os.open(path, _OPEN_FLAGS)
    with io.FileIO(fd, "rb", closefd=True) as f:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            raise OSError(f"replaced by a {_kind(fst.st_mode)} while being opened")
        size = fst.st_size
        buf = bytearray(min(max(size, 1), MIB) if whole else SAMPLE_BYTES)
        view = memoryview(buf)
        if whole:
            h = hashlib.blake2b(digest_size=16, person=b"mltrace.file")
            left = size
            while left > 0:
                n = f.readinto(view[: min(len(buf), left)])
                if not n:
                    break
                h.update(view[:n])
                left -= n
            complete = left == 0
        else:
            h = hashlib.blake2b(digest_size=16, person=b"mltrace.sample")
            h.update(struct.pack("<Qq", size, fst.st_mtime_ns))
            complete = True
            for offset in sorted({0, max(0, size // 2 - SAMPLE_BYTES // 2), max(0, size - SAMPLE_BYTES)}):
                f.seek(offset)
                n = f.readinto(view)
                h.update(struct.pack("<QQ", offset, n or 0))
                if n:
                    h.update(view[:n])
        after = os.fstat(fd)
    stable = complete and (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == (
        st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return h.hexdigest(), stable


def _dir_version(path: str) -> str:
    """A hash of the directory's recursive entry list (sorted relative names, types, sizes,
    mtimes); "" (logged, counted) when a directory in it cannot be listed."""
    h = hashlib.blake2b(digest_size=16, person=b"mltrace.dir")
    stack = [""]
    count = 0
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(path, rel) if rel else path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            _unreadable(path, f"cannot list {rel or '.'}: {_reason(e)}")
            return ""
        subdirs = []
        for e in entries:
            if count >= MAX_DIR_ENTRIES:
                h.update(b"\x00truncated")
                _warn_once(path, f"mltrace: the version of directory {path!r} covers its first "
                           f"{MAX_DIR_ENTRIES} entries only (in sorted order)")
                return h.hexdigest()
            count += 1
            name = os.path.join(rel, e.name) if rel else e.name
            try:
                est = e.stat(follow_symlinks=False)
            except OSError:
                h.update(b"\x00?" + os.fsencode(name))
                continue
            kind = stat.S_IFMT(est.st_mode)
            h.update(b"\x00" + os.fsencode(name) + struct.pack("<IQq", kind, est.st_size
                                                                if kind != stat.S_IFDIR else 0,
                                                                est.st_mtime_ns))
            if kind == stat.S_IFDIR:
                subdirs.append(name)
        stack.extend(reversed(subdirs))
    return h.hexdigest()


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symbolic link")):
        if test(mode):
            return kind
    return "special file"


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _unreadable(path: str, reason: str) -> None:
    """Count a file that gets no version; warn once per path."""
    try:
        from mltrace_otel.sdk import export

        export.count_unreadable_file()
    except Exception:  # noqa: BLE001
        pass
    _warn_once(path, f"mltrace: no content version for {path!r}: {reason} "
               "(counted in delivery_stats().unreadable_files)")


def _warn_once(path: str, message: str) -> None:
    with _warned_lock:
        if path in _warned:
            return
        _warned[path] = None
        while len(_warned) > MAX_WARNED_PATHS:
            _warned.popitem(last=False)
    _log.warning("%s", message)
