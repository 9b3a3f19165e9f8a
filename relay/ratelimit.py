"""Failed-attempt limits for the two doors that take a guessable secret: sign-in links and
pair codes.

Each caller (by address) gets ``limit`` failures per ``window`` seconds; past that every
attempt is refused with 429 ``rate_limited`` and ``Retry-After`` until the oldest failure
ages out, right code or not. A pair code has about 39 bits and a login code 144, so a
handful of guesses a minute leaves nothing to find.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

import attrs

from .errors import RateLimited

__all__ = ["AttemptLimiter"]

#: Callers remembered at once; the least recently failing are forgotten first.
_MAX_KEYS = 10_000


@attrs.define(eq=False)
class AttemptLimiter:
    what: str
    limit: int = 10
    window: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _failures: OrderedDict[str, deque[float]] = attrs.field(factory=OrderedDict, init=False)

    def _recent(self, key: str) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        horizon = self.clock() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def check(self, key: str) -> None:
        """Raise :class:`RateLimited` if ``key`` has used up its failures."""
        failures = self._recent(key)
        if len(failures) >= self.limit:
            retry_after = max(1.0, failures[0] + self.window - self.clock())
            raise RateLimited(
                f"too many failed {self.what} attempts from this address; "
                f"try again in {math.ceil(retry_after)} s",
                retry_after,
            )

    def failed(self, key: str) -> None:
        failures = self._recent(key)
        failures.append(self.clock())
        self._failures[key] = failures
        self._failures.move_to_end(key)
        while len(self._failures) > _MAX_KEYS:
            self._failures.popitem(last=False)
