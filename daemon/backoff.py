"""Exponential backoff with full jitter (AWS architecture blog's "full jitter")."""

from __future__ import annotations

import random

__all__ = ["full_jitter"]


def full_jitter(attempt: int, *, base: float, cap: float) -> float:
    """A delay drawn uniformly from ``[0, min(cap, base * 2**attempt)]``.

    ``attempt`` counts from 1; any number of attempts is fine (the exponent is bounded, so a
    week-long outage never overflows).
    """
    return random.uniform(0, min(cap, base * 2 ** min(max(attempt, 0), 30)))
