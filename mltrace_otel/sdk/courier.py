"""The courier: the process that delivers a pipeline's runs, so the pipeline's calls do not pay for it.

Why another process and not a thread: a delivery thread needs the pipeline's GIL a dozen times
per delivery (after each of its system calls). While it waits, every system call of the
pipeline's calls (the durable queue's ``write``, a file version's ``stat``) releases the GIL and
wakes it, and the pipeline takes the GIL back before the woken thread runs; CPython forces a
hand-over only after 5 ms *without* a release, which a pipeline making a call every 100 µs never
gives. So each of those waits costs the pipeline one futile wake-up (a futex call and an
interrupt to the other CPU) per call: measured, 0.65 context switches of the delivery thread per
``input_kwargs=`` call and 14 µs more per call while it delivered, against nothing measurable for
the same work in another process (``docs/benchmarks.md``). Weights & Biases moved its uploads
into a service process for the same reason.

How: :class:`~mltrace_otel.sdk.durable.DurableProcessor` starts one courier per pipeline process
(``python -c`` running :func:`main`) once that process has an OTLP endpoint and a run to send.
The runs are already on disk, in the process's own segments of the durable queue
(:mod:`mltrace_otel.spool`), before each call returns; the courier follows those segments as they
grow (:func:`mltrace_otel.spool.follow`), sends their requests as they are every ``delay_s`` or
once ``batch`` runs wait, and deletes a segment once it is complete (the pipeline moved to a
newer one) and sent. When the endpoint fails it seals the complete segments for the store's
drain (and the next SDK process's leftovers) and skips OTLP for ``OTLP_RETRY_AFTER_S``, as the
delivery thread did. It also sends the segments that other processes left (dead ones, failed
exports): at its start, as soon as the endpoint answers again after a failure, every
``LEFTOVERS_EVERY_S``, and for up to ``LEFTOVERS_AFTER_S`` after its pipeline is gone. SIGTERM or
SIGHUP (the pipeline's process group stopped, its terminal closed) makes it send what is on disk,
then exit.

The courier's stdin and stdout are one socket pair with the pipeline (a socket, so that a write
to a courier that died raises instead of sending SIGPIPE to a host that restored its default
action); one line per message, ASCII:

- to the courier: one JSON line of :class:`Config`, then ``C <segment>`` (the pipeline closed that
  segment: it and every older one are complete), ``F <seq> <segment>`` (a flush: the same, then
  deliver, or seal, every record up to ``seq`` and answer) and ``X`` (the pipeline is closing:
  deliver what is complete, then end the reports, so the pipeline stops waiting; a segment it may
  still write to stays for the drain). End of input without ``X``, or a change of the courier's
  parent pid (a copy of the socket inherited by a forked process may keep the input open), is the
  pipeline's death: every segment is then complete, and the courier delivers (or seals) them all
  before it exits.
- from the courier: ``A <exported> <spooled> <failures> <flushed> <failing> <sent>\t<last
  error>`` (:class:`Acks`, cumulative), written without blocking and coalesced: a pipeline that
  reads rarely gets the latest line, never a stalled courier.

Nothing is lost if the courier dies: the runs stay in the segments; the pipeline notices (at its
next segment, flush or exit) and starts another courier, which skips the runs the dead one
reported sent (``Config.skip_to``), or delivers them itself from a thread (at least once: the
store keeps one run per run id).

Imports :mod:`mltrace_otel.spool` and :mod:`mltrace_otel.otlp_send` only (not the OpenTelemetry
SDK): the courier starts in ~0.1 s.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mltrace_otel import spool

if TYPE_CHECKING:
    from mltrace_otel.otlp_send import Outcome

_log = logging.getLogger("mltrace_otel.sdk")

MAX_SEND_BYTES = 2 * 1024 * 1024
"""Requests are joined into one OTLP export up to this size."""
SEND_TRIES = 5
"""Tries of an export a busy endpoint answers with 429/503 before its runs stay in the spool."""
LEFTOVERS_EVERY_S = 60.0
"""How often (at most) segments that dead processes left are looked for and sent."""
OTLP_RETRY_AFTER_S = 30.0
"""After a failed export, OTLP is skipped this long (the runs go to the spool meanwhile)."""
POLL_S = 0.25
"""How often the courier looks at the pipeline's segments for new runs (it looks at once when the
pipeline closes a segment, every OTEL_BSP_MAX_EXPORT_BATCH_SIZE runs, or flushes)."""
LEFTOVERS_AFTER_S = 30.0
"""After the pipeline's exit, the courier sends other processes' leftovers this long at most."""
LIST_S = 1.0
"""How often the courier lists the spool directory for new segments (between, it reads the ones it
knows; a line from the pipeline makes it list at once)."""

Send = Callable[[bytes, float], "Outcome"]
"""Sends serialized requests (one request, or several concatenated) within a timeout."""


@dataclass(frozen=True)
class Config:
    """What a courier needs: whose segments to follow, where to send them, and when."""

    spool_dir: str
    writer: str  # the pipeline's SegmentWriter name (its segments are <seq>-<writer>.open)
    parent: int  # the pipeline's pid
    protocol: str  # OTEL_EXPORTER_OTLP_PROTOCOL
    endpoint: str
    headers: dict[str, str]
    delay_s: float
    batch: int
    timeout_s: float
    skip_to: int = 0  # runs up to this Seq were sent by an earlier courier
    closed: str = ""  # the newest segment the pipeline closed before this courier started


@dataclass(frozen=True)
class Acks:
    """A courier's cumulative report (runs, not requests)."""

    exported: int = 0
    spooled: int = 0
    failures: int = 0
    flushed: int = 0  # the highest flush Seq done
    failing: bool = False  # OTLP failed lately: runs go to the spool until OTLP_RETRY_AFTER_S passed
    sent: int = 0  # the highest Seq of the pipeline's runs sent
    last_error: str = ""

    def line(self) -> bytes:
        error = " ".join(self.last_error.split())[:300]
        return (f"A {self.exported} {self.spooled} {self.failures} {self.flushed} {int(self.failing)} "
                f"{self.sent}\t{error}\n").encode("ascii", "backslashreplace")

    @classmethod
    def parse(cls, line: bytes) -> Acks | None:
        head, _, error = line.decode("ascii", "replace").partition("\t")
        parts = head.split()
        if len(parts) != 7 or parts[0] != "A" or not all(p.isdigit() for p in parts[1:]):
            return None
        n = [int(p) for p in parts[1:]]
        return cls(n[0], n[1], n[2], n[3], n[4] == 1, n[5], error)

    def then(self, newer: Acks) -> Acks:
        """The later of two reports, field by field (counts only grow; a late line never undoes)."""
        return Acks(max(self.exported, newer.exported), max(self.spooled, newer.spooled),
                    max(self.failures, newer.failures), max(self.flushed, newer.flushed), newer.failing,
                    max(self.sent, newer.sent), newer.last_error or self.last_error)


# --- sending (the courier, and the pipeline's own delivery when it has no courier) -------------------

def send_all(send: Send, payloads: Sequence[bytes], timeout_s: float) -> str | None:
    """Send requests in exports of up to :data:`MAX_SEND_BYTES`; None, or why it failed.

    A busy endpoint (429/503 with Retry-After) is waited for a few times, as OTel exporters do; a
    dead one or a refusal fails at once (the runs then stay in the spool)."""
    k = 0
    while k < len(payloads):
        size, j = 0, k
        while j < len(payloads) and (j == k or size + len(payloads[j]) <= MAX_SEND_BYTES):
            size += len(payloads[j])
            j += 1
        body, backoff, tries = b"".join(payloads[k:j]), 0.5, 0
        while True:
            try:
                outcome = send(body, timeout_s)
            except Exception as e:  # noqa: BLE001 - a sender must not raise; treat as a failure
                return f"{type(e).__name__}: {e}"
            if outcome.ok:
                break
            tries += 1
            if not outcome.busy or tries >= SEND_TRIES:
                return outcome.reason or "refused"
            time.sleep(min(outcome.retry_after if outcome.retry_after is not None else backoff, 5.0))
            backoff *= 2
        k = j
    return None


def deliver_leftovers(directory: Path, send: Send, timeout_s: float,
                      at_most: int | None = None) -> tuple[int, str | None, bool]:
    """Send the segments dead processes (or failed exports) left in the spool, deleting each once
    sent; stop at the first failure (the rest stay for the next try or the store's drain), or
    after ``at_most`` segments. Returns (runs sent, the failure or None, whether any may be left)."""
    sent = 0
    for n, claimed in enumerate(spool.claim_all(directory)):
        if at_most is not None and n >= at_most:
            claimed.release()
            return sent, None, True
        try:
            entries, _ = claimed.entries()
        except OSError:
            claimed.release()
            continue
        error = send_all(send, [e.payload for e in entries], timeout_s) if entries else None
        if error is not None:
            claimed.release()
            return sent, error, True
        claimed.done()
        sent += sum(max(e.spans, 1) for e in entries)
    return sent, None, False


def seal(path: Path) -> None:
    """Hand a closed ``.open`` segment to the store's drain (and other processes' leftovers);
    never raises: one that cannot be sealed stays ``.open``, drained once its writer is dead."""
    try:
        spool.seal_path(path)
    except FileNotFoundError:  # a drain took it already
        pass
    except OSError as e:
        _log.warning("mltrace: cannot seal spool segment %s: %s", path, e)


def _readable(fd: int, timeout_s: float | None) -> bool:
    """Whether ``fd`` has input (or its end closed) within ``timeout_s`` (None: wait). ``poll``,
    not ``select``: a pipeline process may hold more than 1,024 descriptors (FD_SETSIZE)."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(None if timeout_s is None else int(timeout_s * 1000)))


# --- the pipeline's side ----------------------------------------------------------------------------

def supported() -> bool:
    """Whether couriers can run here (POSIX sockets and ``select``; a Python executable to start)."""
    return os.name == "posix" and bool(sys.executable)


_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGHUP}


class Courier:
    """The pipeline's handle on its courier process (thread-safe)."""

    def __init__(self, config: Config) -> None:
        root = str(Path(__file__).resolve().parents[2])  # where this mltrace_otel is importable from
        code = (f"import sys; sys.path.insert(0, {root!r}); "
                "from mltrace_otel.sdk import courier; sys.exit(courier.main())")
        mine, theirs = socket.socketpair()
        # the courier starts with SIGTERM and SIGHUP blocked (the mask is inherited; only this
        # thread's is changed, for the moment of the fork): one sent to the process group while it
        # starts waits until it can deliver what it read (see _Follower.run)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            if not _NOSIGNAL and hasattr(socket, "SO_NOSIGPIPE"):  # macOS
                mine.setsockopt(socket.SOL_SOCKET, socket.SO_NOSIGPIPE, 1)
            self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=theirs, stdout=theirs,
                                         close_fds=True)
        except BaseException:
            mine.close()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            theirs.close()
        mine.setblocking(False)
        self._sock = mine
        self._lock = threading.Lock()
        self._buf = b""
        self.acks = Acks()
        self.send_line(json.dumps(asdict(config)).encode() + b"\n")

    def send_line(self, line: bytes) -> bool:
        """Send one line without blocking; False if the courier is gone or not reading."""
        with self._lock:
            try:
                return self._sock.send(line, _NOSIGNAL) == len(line)
            except OSError:  # EPIPE / ECONNRESET (it died), EAGAIN (it stopped reading), closed
                return False

    def poll(self, timeout_s: float = 0.0) -> bool:
        """Read what the courier reported (waiting up to ``timeout_s`` for something); False once
        its output ended (it exited)."""
        if timeout_s > 0 and not _readable(self._sock.fileno(), timeout_s):
            return True
        with self._lock:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            self._buf += data
            *lines, self._buf = self._buf.split(b"\n")
            for line in lines:
                acks = Acks.parse(line)
                if acks is not None:
                    self.acks = self.acks.then(acks)
            return True

    def alive(self) -> bool:
        return self.proc.poll() is None

    def flush(self, seq: int, segment: str, timeout_s: float) -> bool:
        """Ask for every run up to ``seq`` to be delivered (or sealed for the store) and wait for
        the answer; ``segment``: the name of the segment the pipeline closed for this flush (it
        and every older one are complete). False on timeout or if the courier died."""
        if not self.send_line(f"F {seq} {segment}\n".encode()):
            return False
        deadline = time.monotonic() + timeout_s
        while self.acks.flushed < seq:
            left = deadline - time.monotonic()
            if left <= 0 or not self.poll(min(left, 0.5)):
                return self.acks.flushed >= seq
        return True

    def close(self, timeout_s: float) -> bool:
        """Tell the courier the pipeline is closing and wait until it is done with the pipeline's
        runs (its reports end; it may go on a little with other processes' leftovers); True then,
        False after ``timeout_s`` (it is left to finish on its own)."""
        self.send_line(b"X\n")
        deadline = time.monotonic() + timeout_s
        done = False
        while not done and time.monotonic() < deadline:
            done = not self.poll(min(0.5, max(0.01, deadline - time.monotonic())))
        self._sock.close()
        return done

    def abandon(self) -> None:
        """Forget a courier inherited through ``fork`` (it is the parent process's): close this
        process's copy of the socket (no lock taken: one a parent thread held at the fork would
        never be released here)."""
        try:
            self._sock.close()
        except OSError:
            pass


# --- the courier process ------------------------------------------------------------------------------

class _Out:
    """The courier's reports, written without blocking: a line not yet sent is replaced by a newer
    one (the counts are cumulative), a line half sent is finished first."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.partial = b""
        self.latest = b""
        self.gone = False  # the pipeline's end is closed

    def write(self, line: bytes | None = None) -> None:
        if line is not None:
            self.latest = line
        while not self.gone and (self.partial or self.latest):
            if not self.partial:
                self.partial, self.latest = self.latest, b""
            try:
                n = os.write(self.fd, self.partial)
            except BlockingIOError:
                return
            except OSError:  # EPIPE / ECONNRESET: nobody reads any more
                self.gone = True
                return
            self.partial = self.partial[n:]

    def close(self) -> None:
        """End the reports (the pipeline's end reads end-of-file: done with its runs)."""
        self.write()
        try:
            with socket.socket(fileno=os.dup(self.fd)) as s:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.gone = True


class _Follower:
    """Delivers one pipeline's segments as they grow."""

    def __init__(self, config: Config, send: Send, out: _Out) -> None:
        self.c = config
        self.directory = Path(config.spool_dir)
        self.suffix = f"-{config.writer}{spool.OPEN}"
        self.send = send
        self.out = out
        self.offsets: dict[Path, int] = {}  # bytes of each segment read (whole records)
        self.pending: list[tuple[Path, spool.Entry]] = []  # read, not yet sent
        self.first_at = 0.0  # when the oldest pending run was read
        self.complete_upto = config.closed  # segments named up to this are complete (closed)
        self.flush_to = 0
        self.skip_until = 0.0
        self.leftovers_at = 0.0  # at once: runs a dead or failed process left go out first thing
        self.leftovers_left = False  # a pass over other processes' segments is under way
        self.listed_at = 0.0
        self.known: list[Path] = []
        self.unreadable: set[Path] = set()
        self.kept: set[Path] = set()  # sent, but could not be deleted (not sent again)
        self.acks = Acks(sent=config.skip_to)
        self.reported = Acks()

    def segments(self, fresh: bool) -> list[Path]:
        """The pipeline's segments, oldest first (the directory listed every LIST_S, or ``fresh``)."""
        now = time.monotonic()
        if fresh or now - self.listed_at >= LIST_S:
            try:
                names = sorted(n for n in os.listdir(self.directory) if n.endswith(self.suffix))
            except FileNotFoundError:
                names = []
            self.known, self.listed_at = [self.directory / n for n in names], now
        return self.known

    def read(self, final: bool, fresh: bool) -> list[Path]:
        """Read the runs appended since the last look; the complete segments read to their end
        (complete: all but the newest, those the pipeline closed, or all of them once it died)."""
        paths = self.segments(fresh or final)
        newest = paths[-1].name if paths else ""
        complete = []
        for p in paths:
            if p in self.kept:
                continue
            whole = final or p.name != newest or p.name <= self.complete_upto
            try:
                entries, self.offsets[p] = spool.follow(p, self.offsets.get(p, 0), whole)
            except FileNotFoundError:  # claimed by a drain: its runs are the drain's now
                self.forget(p)
                continue
            except (OSError, ValueError) as e:  # left alone: the drain takes it in the end
                if p not in self.unreadable:
                    _log.warning("mltrace: cannot read spool segment %s: %s", p, e)
                    self.unreadable.add(p)
                continue
            self.unreadable.discard(p)
            entries = [e for e in entries if e.seq > self.c.skip_to]
            if entries and not self.pending:
                self.first_at = time.monotonic()
            self.pending += [(p, e) for e in entries]
            if whole:
                complete.append(p)
        for p in list(self.offsets):
            if p not in paths:
                self.forget(p)
        return complete

    def forget(self, path: Path) -> None:
        self.offsets.pop(path, None)
        self.pending = [(p, e) for p, e in self.pending if p != path]

    def cycle(self, final: bool, closing: bool, fresh: bool) -> None:
        """Read, send what is due, delete the complete segments sent (seal them while OTLP
        fails), answer a flush, send a leftover segment now and then, report."""
        complete = self.read(final, fresh)
        now = time.monotonic()
        asked = self.flush_to > self.acks.flushed
        due = closing or asked or len(self.pending) >= self.c.batch or (
            bool(self.pending) and now - self.first_at >= self.c.delay_s)
        if due and self.pending and now >= self.skip_until:
            error = send_all(self.send, [e.payload for _, e in self.pending], self.c.timeout_s)
            if error is None:
                self.count(exported=sum(max(e.spans, 1) for _, e in self.pending),
                           sent=max(e.seq for _, e in self.pending))
                self.pending = []
                if self.acks.failing:  # the endpoint is back: what the outage sealed goes out now
                    self.leftovers_at = 0.0
            else:
                self.skip_until = now + OTLP_RETRY_AFTER_S
                _log.warning("mltrace: OTLP export failed (%s); these %d run(s), and those of the next "
                             "%.0f s, stay in the spool %s, sent when OTLP is back (or taken by the "
                             "store's drain)", error, len(self.pending), OTLP_RETRY_AFTER_S, self.directory)
                self.count(failures=1, error=f"OTLP export failed ({error}); spooled instead")
        failing = now < self.skip_until
        unsent = {p for p, _ in self.pending}
        for p in complete:  # delete what was sent; while failing, seal the rest for the drain
            if p not in unsent:
                self.remove(p)
            elif failing and due:
                self.seal(p)
        if asked and not self.unreadable and not any(e.seq <= self.flush_to for _, e in self.pending):
            self.count(flushed=self.flush_to)
        self.acks = replace(self.acks, failing=failing)
        if not failing and not closing and not asked and (self.leftovers_left or now >= self.leftovers_at):
            # one segment per cycle, so that a flush or the pipeline's exit never waits for them all
            sent_n, error, self.leftovers_left = deliver_leftovers(self.directory, self.send,
                                                                   self.c.timeout_s, at_most=1)
            if not self.leftovers_left:
                self.leftovers_at = now + LEFTOVERS_EVERY_S
            if sent_n:
                self.count(exported=sent_n)
            if error is not None:
                self.skip_until = now + OTLP_RETRY_AFTER_S
        self.report()

    def remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:  # sent: kept out of every later look, so never sent again
            _log.warning("mltrace: cannot delete sent spool segment %s: %s", path, e)
            self.kept.add(path)
            return
        self.offsets.pop(path, None)

    def seal(self, path: Path) -> None:
        n = sum(max(e.spans, 1) for p, e in self.pending if p == path)
        seal(path)
        self.forget(path)
        self.count(spooled=n)

    def count(self, exported: int = 0, spooled: int = 0, failures: int = 0, flushed: int = 0,
              sent: int = 0, error: str = "") -> None:
        a = self.acks
        self.acks = Acks(a.exported + exported, a.spooled + spooled, a.failures + failures,
                         max(a.flushed, flushed), a.failing, max(a.sent, sent), error or a.last_error)

    def report(self) -> None:
        if self.acks != self.reported:
            self.reported = self.acks
            self.out.write(self.acks.line())
        else:
            self.out.write()  # finish what a full socket held back

    def run(self, fd: int, buf: bytes) -> None:
        """Follow, deliver and answer until the pipeline closes or dies; then tell it so (end the
        reports) and send other processes' leftovers for at most LEFTOVERS_AFTER_S. SIGTERM or
        SIGHUP (the pipeline's process group stopped, its terminal closed): send what was read,
        then exit."""
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # (one sent meanwhile: now)
            self._follow(fd, buf)
        except _Stop:
            self.cycle(final=os.getppid() != self.c.parent, closing=True, fresh=True)
            return
        self.out.close()
        deadline = time.monotonic() + LEFTOVERS_AFTER_S
        while time.monotonic() < deadline and time.monotonic() >= self.skip_until:
            _sent, error, left = deliver_leftovers(self.directory, self.send, self.c.timeout_s, at_most=1)
            if error is not None or not left:
                return

    def _follow(self, fd: int, buf: bytes) -> None:
        closing = parting = False
        while True:
            *lines, buf = buf.split(b"\n")  # (the first read may have brought lines with the config)
            for line in lines:
                parts = line.decode("ascii", "replace").split()
                if len(parts) == 3 and parts[0] == "F" and parts[1].isdigit():
                    self.flush_to = max(self.flush_to, int(parts[1]))
                    self.complete_upto = max(self.complete_upto, parts[2])
                elif len(parts) == 2 and parts[0] == "C":
                    self.complete_upto = max(self.complete_upto, parts[1])
                elif parts == ["X"]:
                    parting = closing = True
            # a line (a closed segment, a flush) is acted on at once; else wait for one, or POLL_S
            if not closing and not lines and _readable(fd, POLL_S):
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    data = None
                except OSError:
                    data = b""
                if data is not None:
                    closing = closing or not data
                    buf += data
                    continue
            # the input ended without X, the pipeline's end of the socket is gone, or we were
            # re-parented: the pipeline's process is gone, and every segment of it is complete
            dead = (closing and not parting) or self.out.gone or os.getppid() != self.c.parent
            self.cycle(final=dead, closing=closing or dead, fresh=bool(lines))
            if closing or dead:
                return


class _Stop(Exception):
    """SIGTERM or SIGHUP reached the courier."""


def _stop(signum: int, frame: object) -> None:
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise _Stop


def _read_line(fd: int) -> tuple[bytes, bytes]:
    buf = b""
    while b"\n" not in buf:
        _readable(fd, None)
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not data:
            raise SystemExit("mltrace courier: no configuration on stdin")
        buf += data
    line, _, rest = buf.partition(b"\n")
    return line, rest


def main() -> int:
    """The courier process: configuration from stdin, reports to stdout (see the module doc)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the pipeline, which then ends us
    for sig in _STOP_SIGNALS:  # (blocked until the follower runs: see Courier)
        signal.signal(sig, _stop)
    from mltrace_otel.otlp_send import exporter_sender

    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    os.set_blocking(fd_out, False)  # (one socket: stdin is non-blocking too)
    try:
        line, rest = _read_line(fd_in)
        config = Config(**json.loads(line))
        sender = exporter_sender(config.protocol, config.endpoint, config.headers)
        try:
            _Follower(config, sender.send, _Out(fd_out)).run(fd_in, rest)
        finally:
            sender.close()
    except _Stop:  # before or after following the pipeline: nothing of it is in hand
        pass
    return 0
