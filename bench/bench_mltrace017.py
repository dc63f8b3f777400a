"""Side by side with mltrace 0.17: the same 12-diamond pipeline (37 runs), logged and traced.

    python bench/bench_mltrace017.py [--repeat 5] [--legacy-repeat 1]

mltrace 0.17 runs in a Python 3.9 venv (bench/_mltrace017_venv, git-ignored, created on demand:
pip install mltrace==0.17 'SQLAlchemy<2' joblib pandas: 0.17 imports both without declaring
them) on a SQLite file. Ours runs in this process on the
embedded chDB store, with runs logged through our SDK (ComponentRun + log_component_run, the same
calls) and drained from the spool. Prints medians and the ratio mltrace / ours.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / "_mltrace017_venv"


def python39() -> str:
    """A Python 3.9 for mltrace 0.17 (it breaks on 3.11): $PY39, python3.9 on PATH, or pyenv's."""
    import os

    candidates = [os.environ.get("PY39"), shutil.which("python3.9")]
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
        candidates += [str(p) for p in sorted(Path(root, "versions").glob("3.9*/bin/python"), reverse=True)]
    except (OSError, subprocess.CalledProcessError):
        pass
    for cand in filter(None, candidates):
        ok = subprocess.run([cand, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 9))"],
                            capture_output=True)
        if ok.returncode == 0:
            return cand
    sys.exit("bench_mltrace017 needs Python 3.9: set PY39=/path/to/python3.9")

DIAMONDS = 12

# Runs inside the 0.17 venv. SQLite file engine: 0.17 accepts only postgresql:// URIs (or
# "test" = an in-memory SQLite that each call would recreate), so its engine factory is
# pointed at a SQLite file.
LEGACY = r'''
import json, statistics, sys, time
from datetime import datetime, timedelta
import sqlalchemy
import mltrace
import mltrace.db.store as st
path, n, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
st._create_engine_wrapper = lambda uri, max_retries=5: sqlalchemy.create_engine(f"sqlite:///{path}")
mltrace.set_db_uri("test")
t0 = datetime(2026, 1, 1)
k = [0]
def log(name, ins, outs):
    k[0] += 1
    cr = mltrace.ComponentRun(name, start_timestamp=t0 + timedelta(seconds=10 * k[0]),
                              end_timestamp=t0 + timedelta(seconds=10 * k[0] + 1))
    cr.add_inputs(ins); cr.add_outputs(outs)
    mltrace.log_component_run(cr)
t = time.perf_counter()
log("d_src", ["raw"], ["d0"])
for i in range(n):
    log("d_left", [f"d{i}"], [f"d{i}_l"])
    log("d_right", [f"d{i}"], [f"d{i}_r"])
    log("d_join", [f"d{i}_l", f"d{i}_r"], [f"d{i + 1}"])
log_s = time.perf_counter() - t
ts = []
for _ in range(repeat):
    t = time.perf_counter()
    tr = mltrace.backtrace(f"d{n}")
    ts.append(time.perf_counter() - t)
print(json.dumps({"log_s": log_s, "trace_s": statistics.median(ts), "entries": len(tr),
                  "distinct": len({cr.id for _, cr in tr})}))
'''


def ensure_venv() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([python39(), "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "mltrace==0.17", "SQLAlchemy<2",
                        "joblib", "pandas"],
                       check=True)
    return py


def ours(root: Path, repeat: int) -> dict:
    from datetime import datetime, timedelta, timezone

    import mltrace_otel as mltrace
    from mltrace_otel import api
    from mltrace_otel.sdk import export
    from mltrace_otel.settings import Settings

    settings = Settings.from_env({}, mltrace_dir=root, store_url=f"chdb://{root / 'store'}",
                                 export="spool")
    export.configure(settings=settings, sync=True)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    k = [0]

    def log(name: str, ins: list[str], outs: list[str]) -> None:
        k[0] += 1
        cr = mltrace.ComponentRun(name, start_timestamp=t0 + timedelta(seconds=10 * k[0]),
                                  end_timestamp=t0 + timedelta(seconds=10 * k[0] + 1))
        cr.add_inputs(ins)
        cr.add_outputs(outs)
        mltrace.log_component_run(cr)

    t = time.perf_counter()
    log("d_src", ["raw"], ["d0"])
    for i in range(DIAMONDS):
        log("d_left", [f"d{i}"], [f"d{i}_l"])
        log("d_right", [f"d{i}"], [f"d{i}_r"])
        log("d_join", [f"d{i}_l", f"d{i}_r"], [f"d{i + 1}"])
    export.flush()
    log_s = time.perf_counter() - t
    mltrace.backtrace(f"d{DIAMONDS}")  # opens the store (migrations, spool drain): not timed
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        tr = mltrace.backtrace(f"d{DIAMONDS}")
        ts.append(time.perf_counter() - t)
    api.close()
    export.reset()
    return {"log_s": log_s, "trace_s": statistics.median(ts), "entries": len(tr),
            "distinct": len({cr.id for _, cr in tr})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="traces timed on our side")
    ap.add_argument("--legacy-repeat", type=int, default=1,
                    help="traces timed on mltrace 0.17 (each takes minutes: 16,381 entries)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mltrace-vs017-"))
    try:
        py = ensure_venv()
        out = subprocess.run([str(py), "-c", LEGACY, str(root / "mltrace017.sqlite"), str(DIAMONDS),
                              str(args.legacy_repeat)], check=True, capture_output=True, text=True)
        old = json.loads(out.stdout.strip().splitlines()[-1])
        new = ours(root / "ours", args.repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"12-diamond pipeline ({1 + 3 * DIAMONDS} runs), median of {args.legacy_repeat} / "
          f"{args.repeat} traces")
    print(f"{'':28} {'mltrace 0.17 (SQLite)':>22} {'mltrace-otel (chDB)':>20}")
    print(f"{'trace entries (distinct)':28} {old['entries']:>14} ({old['distinct']}) "
          f"{new['entries']:>13} ({new['distinct']})")
    print(f"{'backtrace median':28} {old['trace_s'] * 1000:>19.1f} ms {new['trace_s'] * 1000:>17.1f} ms")
    print(f"{'logging 37 runs':28} {old['log_s'] * 1000:>19.1f} ms {new['log_s'] * 1000:>17.1f} ms")
    print(f"ratio (mltrace 0.17 / ours): backtrace {old['trace_s'] / new['trace_s']:.1f}x, "
          f"logging {old['log_s'] / new['log_s']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
