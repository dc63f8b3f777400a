"""Git commit and tags of the working tree, looked up once per process.

mltrace looks the repository up from the current directory (searching parent directories);
so do we, with the ``git`` command, once: the first run pays a few milliseconds, later runs
nothing (no subprocess and no file-system access per call). No repository, or no ``git``
binary, gives None / [].
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading

_log = logging.getLogger("mltrace_otel.sdk")
_lock = threading.Lock()
_cache: dict[str, tuple[str | None, list[str]]] = {}


def _git(args: list[str], cwd: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError) as e:
        _log.debug("mltrace: git unavailable: %s", e)
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip()


def git_info(cwd: str | None = None) -> tuple[str | None, list[str]]:
    """(commit, tags at that commit) for the repository containing ``cwd`` (default: the
    current directory), computed once per directory per process."""
    key = os.path.abspath(cwd or os.getcwd())
    hit = _cache.get(key)
    if hit is not None:
        return hit
    with _lock:
        hit = _cache.get(key)
        if hit is None:
            commit = _git(["rev-parse", "--verify", "HEAD"], key)
            tags: list[str] = []
            if commit:
                listed = _git(["tag", "--points-at", "HEAD"], key)
                tags = sorted(t for t in (listed or "").splitlines() if t)
            hit = (commit or None, tags)
            _cache[key] = hit
    return hit


_process: list[tuple[str | None, list[str]]] = []


def process_git_info() -> tuple[str | None, list[str]]:
    """The git info recorded on every run of this process: looked up at the first run, from
    the directory the process was in then, and never again."""
    if not _process:
        info = git_info()
        with _lock:
            if not _process:
                _process.append(info)
    return _process[0]


def get_git_hash() -> str | None:
    """The commit hash of the git repository around the current directory, or None."""
    return git_info()[0]


def get_git_tags() -> list[str]:
    """The tags pointing at that commit ([] when there are none or no repository)."""
    return list(git_info()[1])


def clear_cache() -> None:
    """Forget the cached lookups (tests; a long-running process that switched checkouts)."""
    with _lock:
        _cache.clear()
        _process.clear()
