"""The SDK's spool segments are reserved and memory-mapped (``SegmentWriter(mapped=)``): a run is one
copy into the page cache before the decorated call returns. These tests hold that to what the
written segments promised: the same bytes on disk, every record readable after the writer is
killed mid-segment (its reserved zero bytes are not damage), and a disk without room for a
reserved segment still takes the runs that fit (a real, full tmpfs), counting the rest as dropped.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mltrace_otel as mltrace
from mltrace_otel import spool
from mltrace_otel.sdk import durable, export
from mltrace_otel.settings import Settings
from tests.collector.test_no_loss import _fill, small_disk  # noqa: F401 - a fixture


def _records(paths: list[Path]) -> list[tuple[int, int, bytes]]:
    out = []
    for p in sorted(paths, key=lambda p: p.name):
        data = p.read_bytes()
        records, corrupt, end = spool.scan(p, data)
        assert corrupt == 0 and end == len(data), p.name
        out += [(r.seq, r.spans, data[r.offset:r.offset + r.length]) for r in records]
    return out


def test_a_mapped_segment_holds_the_bytes_a_written_one_holds(tmp_path: Path) -> None:
    """Records that fill several reserved segments (each record bigger than what is left starts a
    new one) come back in order, and one segment's file is byte for byte what ``write`` gives."""
    rng = random.Random(7)
    payloads = [rng.randbytes(rng.randint(1, 3000)) for _ in range(40)]
    mapped = spool.SegmentWriter(tmp_path / "m", mapped=8192, seal_on_rotate=False)
    written = spool.SegmentWriter(tmp_path / "w")
    seq = spool.next_seq(0)
    for i, p in enumerate(payloads):
        mapped.append_one(seq + i, i % 3, p)
        written.append_one(seq + i, i % 3, p)
    m_paths, (w_path,) = mapped.detach(), written.detach()
    assert len(m_paths) > 5  # 40 records of ~1.5 KB in 8 KB segments
    assert all(p.stat().st_size <= 8192 for p in m_paths)  # the unused reserve is cut off
    want = [(seq + i, i % 3, p) for i, p in enumerate(payloads)]
    assert _records(m_paths) == _records([w_path]) == want
    one = spool.SegmentWriter(tmp_path / "one", mapped=1 << 20)
    one.append_one(seq, 1, payloads[0])
    one.append_one(seq + 1, 2, payloads[1])
    two = spool.SegmentWriter(tmp_path / "two")
    two.append([spool.Entry(seq, 1, payloads[0]), spool.Entry(seq + 1, 2, payloads[1])])
    (a,), (b,) = one.detach(), two.detach()
    assert a.read_bytes() == b.read_bytes()


def test_a_record_bigger_than_the_reserve_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    big = os.urandom(50_000)
    w = spool.SegmentWriter(tmp_path, mapped=4096, seal_on_rotate=False)
    seq = spool.next_seq(0)
    w.append_one(seq, 1, b"small")
    w.append_one(seq + 1, 7, big)
    w.append_one(seq + 2, 1, b"after")
    paths = w.detach()
    assert [r[2] for r in _records(paths)] == [b"small", big, b"after"]


_KILLED = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from mltrace_otel import spool
    w = spool.SegmentWriter(Path(sys.argv[1]), mapped=1 << 20)
    seq = spool.next_seq(0)
    for i in range(int(sys.argv[2])):
        w.append_one(seq + i, 1, b"run %d " % i * 40)
    print("written", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_writer_killed_mid_segment_leaves_every_record_readable(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """kill -9 before the segment is closed: the file keeps its reserved size, zero bytes after the
    last record. Every record is read back, nothing is reported damaged, and the store's drain
    (which takes a dead writer's open segment) gets them all."""
    d = tmp_path / "spool"
    r = subprocess.run([sys.executable, "-c", _KILLED, str(d), "300"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == -signal.SIGKILL and "written" in r.stdout, r.stderr
    (path,) = list(d.iterdir())
    assert path.name.endswith(spool.OPEN) and path.stat().st_size == 1 << 20
    with caplog.at_level(logging.ERROR, logger="mltrace_otel"):
        records, corrupt, end = spool.scan(path)
        claimed = list(spool.claim_all(d))
        entries, damaged = claimed[0].entries()
    assert corrupt == damaged == 0 and not caplog.records
    assert len(records) == len(entries) == 300 and end < path.with_name(claimed[0].path.name).stat().st_size
    assert [e.payload for e in entries] == [b"run %d " % i * 40 for i in range(300)]


def test_no_room_to_reserve_a_segment_writes_it_instead(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """posix_fallocate refused (a disk without 1 MiB free, or a file system without it): the
    records are written with ``write``, the same bytes, and the file is no bigger than they are."""
    def no_room(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_room)
    w = spool.SegmentWriter(tmp_path, mapped=1 << 20)
    seq = spool.next_seq(0)
    for i in range(10):
        w.append_one(seq + i, 1, b"x" * 100)
    (path,) = w.detach()
    assert path.stat().st_size == 10 * (spool.HEAD.size + 100)
    assert len(_records([path])) == 10


def test_runs_on_a_nearly_full_disk_are_spooled_or_counted_never_lost(small_disk: Path) -> None:  # noqa: F811
    """A real tmpfs with 300 KB left: no 1 MiB segment can be reserved, so runs are written until
    the disk is full; every run is either in the spool, readable, or counted as dropped."""
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


def test_the_sdk_spool_writes_runs_into_a_reserved_segment(sdk_settings: Settings) -> None:
    """What the tests above hold is what the SDK runs: a run's segment is reserved whole while open
    (SEGMENT_BYTES), and cut to its records when delivered (sealed for the store's drain)."""
    export.configure(settings=sdk_settings.replace(export="spool"))
    try:
        @mltrace.register("one", inputs=["in.csv"], outputs=["out.csv"])
        def step() -> None:
            pass

        step()
        (open_seg,) = list(sdk_settings.spool_dir.iterdir())
        assert open_seg.name.endswith(spool.OPEN) and open_seg.stat().st_size == durable.SEGMENT_BYTES
        export.flush()
        (sealed,) = spool.pending(sdk_settings.spool_dir)
        assert sealed.stat().st_size < 4096 and len(spool.payloads(sealed)) == 1
    finally:
        export.reset()


def test_the_spool_cap_counts_runs_not_the_reserve(sdk_settings: Settings) -> None:
    """MLTRACE_SPOOL_MAX_MB=1 (its least) with a 1 MiB reserved segment open: the cap is checked
    against the runs' bytes, so the runs are kept, also after the spool's size is read again."""
    export.configure(settings=sdk_settings.replace(export="spool", spool_max_mb=1))
    try:
        @mltrace.register("capped", inputs=["in.csv"], outputs=["out.csv"])
        def step() -> None:
            pass

        step()
        processor = export._pipeline.processor  # type: ignore[union-attr]
        for _ in range(50):
            processor._spool_checked = -1e9  # read the spool's size again at the next run
            step()
        assert mltrace.delivery_stats().dropped == 0
        export.flush()
        assert mltrace.delivery_stats().spooled == 51
    finally:
        export.reset()
