"""Failed-attempt limits for the two doors that take a guessable secret: sign-in links and
pair codes.

Each caller gets ``limit`` failures per ``window`` seconds; past that every attempt is
refused with 429 ``rate_limited`` and ``Retry-After`` until the oldest failure ages out,
right code or not. A pair code has about 39 bits and a login code 144, so a handful of
guesses a minute leaves nothing to find.

Checking and counting are one step (:meth:`AttemptLimiter.begin`, no ``await`` inside): an
attempt counts as a failure from the moment it is let through, and only a success takes it
back (:meth:`Attempt.succeeded`). So 200 guesses sent at once get ``limit`` codes checked
and 429 for the rest, instead of all of them passing the check before any has failed.

Who the caller is (:func:`limit_key`): its address, with every loopback address one caller
(127.0.0.2 is the same machine as 127.0.0.1) and an IPv6 address counted by its /64 (one
host or LAN normally holds a whole /64, so it must not get 2^64 fresh allowances).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

import attrs

from .errors import RateLimited

__all__ = ["Attempt", "AttemptLimiter", "limit_key"]

#: Callers remembered at once; the least recently failing are forgotten first.
_MAX_KEYS = 10_000
#: The key every loopback address shares.
LOOPBACK_KEY = "loopback"


def limit_key(address: str) -> str:
    """The caller an attempt is counted against, from its address (see the module doc).
    Anything that is not an IP address (a Unix socket, ``unknown``) is its own key."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return LOOPBACK_KEY
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@attrs.define(eq=False)
class Attempt:
    """One attempt let through by :meth:`AttemptLimiter.begin`, counted as a failure until
    :meth:`succeeded` says otherwise."""

    _limiter: AttemptLimiter
    _key: str
    _at: float

    def succeeded(self) -> None:
        """The secret was right: this attempt no longer counts."""
        self._limiter._forget(self._key, self._at)


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
        """Raise :class:`RateLimited` if ``key`` has used up its failures; counts nothing
        (a cheap early refusal: the attempt itself goes through :meth:`begin`)."""
        failures = self._recent(key)
        if len(failures) >= self.limit:
            retry_after = max(1.0, failures[0] + self.window - self.clock())
            raise RateLimited(
                f"too many failed {self.what} attempts from this address; "
                f"try again in {math.ceil(retry_after)} s",
                retry_after,
            )

    def begin(self, key: str) -> Attempt:
        """Check and count in one step: raise :class:`RateLimited` if ``key`` has used up
        its failures, else count this attempt as one of them and return it (call
        :meth:`Attempt.succeeded` if the secret turns out right)."""
        self.check(key)
        now = self.clock()
        failures = self._recent(key)
        failures.append(now)
        self._failures[key] = failures
        self._failures.move_to_end(key)
        while len(self._failures) > _MAX_KEYS:
            self._failures.popitem(last=False)
        return Attempt(self, key, now)

    def _forget(self, key: str, at: float) -> None:
        failures = self._failures.get(key)
        if failures is not None and at in failures:
            failures.remove(at)
            if not failures:
                del self._failures[key]
