"""The issue-14 pipeline through the real SDK on real files (imported as ``sdk_pipeline``).

extract writes data/raw.csv, clean reads it and writes data/clean.csv (raising ValueError
"negative amount" after writing it when the data has a negative amount), report reads that and
writes report.txt; file names are plain strings, as mltrace's docs write them. The SDK gives
each existing local file a content version (mltrace_otel/sdk/files.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mltrace_otel as mltrace
from mltrace_otel.sdk import config, export, files


def settle(*paths: str | Path) -> None:
    """Wait until the files are older than the version cache's racy window (a real wait)."""
    deadline = time.monotonic() + 5
    while any(os.path.exists(p) and files._racy(os.stat(p)) for p in paths):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def three_steps() -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
    """(extract(rows), clean(src), report()) decorated as mltrace's docs do."""

    @mltrace.register("extract", outputs=["data/raw.csv"])
    def extract(rows: str) -> None:
        Path("data/raw.csv").write_text(rows)

    cleaning = mltrace.Component("clean", owner="plumber", tags=["etl"])

    @cleaning.run(input_vars=["src"], output_vars=["dest"])
    def clean(src: str) -> str:
        text = Path(src).read_text()
        dest = "data/clean.csv"
        Path(dest).write_text(text.replace(" ", ""))
        if "-" in text:
            raise ValueError("negative amount")
        return dest

    @mltrace.register("report", inputs=["data/clean.csv"], outputs=["report.txt"])
    def report() -> None:
        n = len(Path("data/clean.csv").read_text().splitlines())
        Path("report.txt").write_text(f"{n} lines\n")

    return extract, clean, report


@contextmanager
def sdk_into(store: Any, settings: Any, cwd: Path) -> Iterator[None]:
    """Log runs with the real SDK into ``settings``' spool in ``cwd`` (with a data/ folder);
    on exit flush and drain them into ``store``."""
    old = Path.cwd()
    (cwd / "data").mkdir(parents=True, exist_ok=True)
    os.chdir(cwd)
    export.reset()
    config.clear_overrides()
    export.configure(settings=settings.replace(export="spool"))
    try:
        yield
        assert export.flush()
    finally:
        export.reset()
        config.clear_overrides()
        os.chdir(old)
    store.drain_spool()


def run_ids(store: Any, component: str) -> list[str]:
    """Run ids of a component, oldest first."""
    return [r.id for r in reversed(store.history(component, 100))]
