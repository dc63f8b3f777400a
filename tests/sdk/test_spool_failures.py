"""The SDK's spool when things go wrong on the caller's machine: a process killed (kill -9) while
its segment is open leaves every run it appended readable, nothing reported as damaged, and the
store's drain takes them all; on a real, nearly full disk (a tmpfs) every run is either in the
spool, readable, or counted as dropped, and runs are kept again once there is room.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mltrace_otel as mltrace
from mltrace_otel import spool
from mltrace_otel.sdk import export
from mltrace_otel.settings import Settings
from tests.collector.test_no_loss import _fill, small_disk  # noqa: F401 - a fixture

_KILLED = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from mltrace_otel import spool
    w = spool.SegmentWriter(Path(sys.argv[1]), seal_on_rotate=False)
    seq = spool.next_seq(0)
    for i in range(int(sys.argv[2])):
        w.append_one(seq + i, 1, b"run %d " % i * 40)
    print("written", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_writer_killed_mid_segment_leaves_every_record_readable(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """kill -9 before the segment is closed or sealed: every record is read back, nothing is
    reported damaged, and the store's drain (which takes a dead writer's open segment) gets them
    all."""
    d = tmp_path / "spool"
    r = subprocess.run([sys.executable, "-c", _KILLED, str(d), "300"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == -signal.SIGKILL and "written" in r.stdout, r.stderr
    (path,) = list(d.iterdir())
    assert path.name.endswith(spool.OPEN)
    with caplog.at_level(logging.ERROR, logger="mltrace_otel"):
        records, corrupt, end = spool.scan(path)
        claimed = list(spool.claim_all(d))
        entries, damaged = claimed[0].entries()
    assert corrupt == damaged == 0 and not caplog.records
    assert len(records) == len(entries) == 300 and end == claimed[0].path.stat().st_size
    assert [e.payload for e in entries] == [b"run %d " % i * 40 for i in range(300)]


def test_runs_on_a_nearly_full_disk_are_spooled_or_counted_never_lost(small_disk: Path) -> None:  # noqa: F811
    """A real tmpfs with 300 KB left: runs are written until the disk is full; every run is either
    in the spool, readable, or counted as dropped (with a warning), and once there is room again
    the next run is kept."""
    settings = Settings.from_env({}, mltrace_dir=small_disk / "mltrace").replace(export="spool")
    export.configure(settings=settings)
    try:
        filler = _fill(small_disk, leave_bytes=300_000)

        @mltrace.register("filler", inputs=["in.csv"], outputs=["out.csv"])
        def step() -> None:
            pass

        calls = 1500  # ~0.5 KB a run: more than 300 KB holds
        for _ in range(calls):
            step()
        export.flush()
        stats = mltrace.delivery_stats()
        kept = sum(len(spool.payloads(p)) for p in settings.spool_dir.iterdir()
                   if spool.segment_slot(p) is not None)
        assert stats.dropped > 0 and stats.spooled > 0
        assert kept == stats.spooled and stats.spooled + stats.dropped == calls
        filler.unlink()
        step()  # room again: the next run is kept
        export.flush()
        assert mltrace.delivery_stats().spooled == stats.spooled + 1
    finally:
        export.reset()
