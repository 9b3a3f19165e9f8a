"""Exponential backoff with jitter (the AWS architecture blog's "full" and "equal" jitter),
for everything that retries a relay: the daemon's link and uplink, ``rcd attach``.
"""

from __future__ import annotations

import random

__all__ = ["equal_jitter", "full_jitter"]


def _ceiling(attempt: int, base: float, cap: float) -> float:
    # The exponent is bounded, so a week-long outage never overflows.
    return min(cap, base * 2.0 ** min(max(attempt, 0), 30))


def full_jitter(attempt: int, *, base: float, cap: float) -> float:
    """A delay drawn uniformly from ``[0, min(cap, base * 2**attempt)]``.

    ``attempt`` counts from 1; any number of attempts is fine.
    """
    return random.uniform(0, _ceiling(attempt, base, cap))


def equal_jitter(attempt: int, *, base: float, cap: float) -> float:
    """A delay drawn uniformly from the upper half of ``[0, min(cap, base * 2**attempt)]``:
    never shorter than half of it, for a person who watches the retries.

    ``attempt`` counts from 1; any number of attempts is fine.
    """
    ceiling = _ceiling(attempt, base, cap)
    return ceiling / 2 + random.uniform(0, ceiling / 2)
