"""Fixtures for the metrics tests (span helpers in metrics_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from metrics_helpers import RunSpec, SpanFactory


@pytest.fixture
def spans() -> SpanFactory:
    return SpanFactory()


@pytest.fixture
def load(store: Any, spans: SpanFactory) -> Callable[[Sequence[RunSpec]], None]:
    """Emit runs and insert them into the test's store."""

    def _load(runs: Sequence[RunSpec]) -> None:
        res = store.insert_spans(spans.emit(runs))
        assert res.accepted == len(runs), res

    return _load
