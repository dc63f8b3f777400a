"""What a pipeline installs and imports: the base install (``pip install mltrace-otel``, no extras).

Builds a fresh venv holding this tree installed without extras (the tree is copied first, as
``tests/test_base_install.py`` does, so the build leaves nothing behind), then prints:

* the size of its site-packages (and without pip and setuptools, which every venv brings);
* the wall-clock time of ``python -c "import mltrace_otel"`` against
  ``python -c "import opentelemetry.sdk.trace"`` in that venv, the minimum of 5 each, and the
  import times Python itself reports (``-X importtime``, cumulative µs of the top module).

    python bench/bench_install.py            # about 1 min (pip install from the package index)

Target (issue 16): site-packages at most 80 MB; the import at most 1.5x the OTel SDK's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}


def _best_wall(python: Path, module: str, n: int = 5) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([str(python), "-c", f"import {module}"], check=True, env=_env())
        best = min(best, time.perf_counter() - t0)
    return best


def _importtime_us(python: Path, module: str) -> int:
    out = subprocess.run([str(python), "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                         text=True, check=True, env=_env())
    last = [line for line in out.stderr.splitlines() if line.rstrip().endswith(f"| {module}")][-1]
    return int(last.split("|")[1])


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mltrace-install-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        shutil.copytree(ROOT / "mltrace_otel", src / "mltrace_otel",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(src)],
                       check=True, env=_env())
        site = next((venv / "lib").glob("python3*/site-packages"))
        total = _size_mb(site)
        tools = sum(_size_mb(p) for p in site.iterdir() if p.name.split("-")[0] in ("pip", "setuptools"))
        print(f"base install site-packages: {total:.0f} MB "
              f"({total - tools:.0f} MB without pip and setuptools)")
        ours, theirs = _best_wall(python, "mltrace_otel"), _best_wall(python, "opentelemetry.sdk.trace")
        print(f"python -c 'import mltrace_otel': {ours * 1000:.0f} ms, 'import opentelemetry.sdk.trace': "
              f"{theirs * 1000:.0f} ms (min of 5, wall): {ours / theirs:.2f}x")
        print(f"-X importtime: mltrace_otel {_importtime_us(python, 'mltrace_otel')} us, "
              f"opentelemetry.sdk.trace {_importtime_us(python, 'opentelemetry.sdk.trace')} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
