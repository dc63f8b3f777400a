"""Output statistics: compact, mergeable summaries of numeric outputs, sent as span events.

(Stub owned by the metrics work, issue 7: the SDK already calls :func:`output_events`.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def output_events(outputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Span-event attribute dicts summarizing each numeric output value (number, array,
    DataFrame column); [] for values that are not numeric. Must never raise."""
    return []
