"""Waiting for state a test can only observe from outside: another process, a file, a git
repository, a relay's HTTP API.

A test waits on an event wherever the code under test offers one (a ``trio.Event``, the
next message of a stream, a process's exit). Where it cannot, it polls through
:func:`eventually` (or :func:`eventually_sync` outside trio), the one place in the tests
allowed to sleep between looks: the deadline is the caller's, and running out of it fails
with a message naming what was awaited. See tests/CONVENTIONS.md.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

import trio

__all__ = ["eventually", "eventually_sync"]

T = TypeVar("T")

#: Time between two looks: short next to the deadlines, long enough not to busy a shared
#: machine's CPU.
EVERY = 0.02


@overload
async def eventually(
    predicate: Callable[[], Awaitable[T]], *, timeout: float, what: str, every: float = EVERY
) -> T: ...


@overload
async def eventually(
    predicate: Callable[[], T], *, timeout: float, what: str, every: float = EVERY
) -> T: ...


async def eventually(
    predicate: Callable[[], object], *, timeout: float, what: str, every: float = EVERY
) -> object:
    """Call ``predicate`` (plain or async) until it returns something truthy, and return
    that; the first look is immediate.

    Raises :class:`AssertionError` naming ``what`` (and the last value seen) once
    ``timeout`` seconds have passed. An exception from ``predicate`` propagates at once.
    """
    last: object = None
    with trio.move_on_after(timeout):
        while True:
            last = predicate()
            if inspect.isawaitable(last):
                last = await last
            if last:
                return last
            await trio.sleep(every)
    raise AssertionError(_timed_out(timeout, what, last))


def eventually_sync(
    predicate: Callable[[], T], *, timeout: float, what: str, every: float = EVERY
) -> T:
    """:func:`eventually` for code that runs outside trio (a thread, a sync fixture)."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(timeout, what, last))
        time.sleep(every)


def _timed_out(timeout: float, what: str, last: object) -> str:
    seen = repr(last)
    if len(seen) > 2000:
        seen = seen[:2000] + "..."
    return f"timed out after {timeout} s waiting for {what} (last seen: {seen})"
