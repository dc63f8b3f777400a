"""Random output ids for pipelines whose outputs have no natural name (mltrace's helper)."""

from __future__ import annotations

import uuid


def create_random_ids(num_outputs: int = 1) -> list[str]:
    """Return ``num_outputs`` fresh random ids (uuid4 strings) a client can use to tag outputs."""
    return [str(uuid.uuid4()) for _ in range(int(num_outputs))]
