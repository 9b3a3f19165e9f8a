"""What a session sends next: the uplink's batching policy, as pure functions.

A session's events wait in its outbox until the relay acknowledges them. Up to
``Limits.lanes`` batches of one session are in flight at once, each on a request of its
own: a burst that starts while a batch is on its way (the agent's answer right after the
user's message, say) goes out at once rather than a round trip later. A batch that can
ride an uplink request still taking batches goes even past that (up to
``Limits.max_in_flight``): such a request is answered only when its window ends, and the
next step of a turn must not wait for that. While a failed batch waits out its backoff,
nothing more goes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import attrs

import wire

__all__ = ["Flow", "Limits", "may_send", "next_batch", "oldest_after"]


@attrs.frozen(kw_only=True)
class Limits:
    #: Events in one batch at most.
    batch_max: int = 500
    #: Batches of one session in flight at once, each on a request of its own ...
    lanes: int = 2
    #: ... and in all, counting those riding an open request behind the others.
    max_in_flight: int = 16


@attrs.frozen(kw_only=True)
class Flow:
    """Where one session's uplink stands."""

    #: The highest seq the relay holds.
    acked: int = 0
    #: The highest seq handed to a request still in flight (or acknowledged).
    sending_through: int = 0
    #: Batches in flight.
    in_flight: int = 0
    #: A failed batch waits out its backoff.
    backing_off: bool = False
    #: An uplink request is open that takes more batches (behind those already on it).
    rides_open_request: bool = False


def may_send(flow: Flow, limits: Limits) -> bool:
    """Whether one more batch of the session goes now (if it has events to send)."""
    if flow.backing_off:
        return False
    return flow.in_flight < limits.lanes or (
        flow.in_flight < limits.max_in_flight and flow.rides_open_request
    )


def oldest_after(events: Iterable[wire.Event], after: int, limit: int) -> list[wire.Event]:
    """The first ``limit`` of ``events`` (in seq order) whose seq is above ``after``."""
    return list(itertools.islice((e for e in events if e.seq > after), limit))


def next_batch(pending: Iterable[wire.Event], flow: Flow, limits: Limits) -> list[wire.Event]:
    """The events (``pending``: the outbox, in seq order) the session's next request
    carries: the oldest not yet acknowledged nor in flight, at most ``limits.batch_max``;
    none when :func:`may_send` says no, or nothing is left to send."""
    if not may_send(flow, limits):
        return []
    return oldest_after(pending, max(flow.sending_through, flow.acked), limits.batch_max)
