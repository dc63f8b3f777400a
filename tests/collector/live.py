"""The collectors a test has running, so the read helpers can flush them first.

Its own module: pytest loads ``conftest.py`` as ``conftest`` while tests import it as
``tests.collector.conftest`` (two module objects); this one is imported under one name only.
"""

from __future__ import annotations

from typing import Any

LIVE: list[Any] = []


def flush_live() -> None:
    """Index everything the running collectors acknowledged (journaled acknowledgement)."""
    for c in LIVE:
        assert c.flush(60), "the collector did not index what it acknowledged within 60 s"
