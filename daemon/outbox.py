"""One session's events on their way up: buffered in memory, spooled to disk beyond a
limit, dropped once the relay acknowledges them (see :class:`Outbox`)."""

from __future__ import annotations

from collections import deque

import attrs
import trio

import wire

from .spool import Spool
from .uplink_policy import oldest_after

__all__ = ["Outbox"]


@attrs.define(eq=False)
class Outbox:
    """One session's events not yet acknowledged, in seq order.

    At most ``memory_limit`` wait in memory; beyond that they go to ``spool`` (on disk) and
    come back in order as the head drains. Without a spool, memory is the only place.
    """

    events: deque[wire.Event] = attrs.field(factory=deque)
    acked: int = 0
    flushing: bool = False
    memory_limit: int = 10_000
    spool: Spool | None = None
    #: The session's last event (session_ended) is buffered: nothing more will come.
    complete: bool = False
    #: The highest seq handed to a request still in flight (or acknowledged).
    sending_through: int = 0
    #: Set when there may be something new to send (an event, an answer, a retry).
    wake: trio.Event = attrs.field(factory=trio.Event)
    #: ``trio.current_time()`` until which a user's message echo waits for the agent's
    #: first output, to go up with it (0: nothing held).
    hold_until: float = 0.0

    def push(self, event: wire.Event) -> None:
        if event.kind == "session_ended":
            self.complete = True
        if self.spool is not None and (self.spool.count or len(self.events) >= self.memory_limit):
            self.spool.append(event)  # behind everything in memory: order is kept
        else:
            self.events.append(event)

    def pending(self) -> int:
        return len(self.events) + (self.spool.count if self.spool else 0)

    def last_seq(self) -> int:
        """The highest seq buffered or acknowledged."""
        if self.spool is not None and self.spool.count:
            last = self.spool.last()
            if last is not None:
                return last.seq
        return self.events[-1].seq if self.events else self.acked

    def unsent(self) -> deque[wire.Event]:
        """The oldest events not yet acknowledged, in seq order (those spooled to disk come
        back into memory as the head drains)."""
        self._refill()
        return self.events

    def take_batch(self, limit: int, after: int = 0) -> list[wire.Event]:
        """The oldest events after seq ``after`` to send next (they stay buffered until
        acknowledged)."""
        return oldest_after(self.unsent(), after, limit)

    def drop(self, first: int, last: int) -> None:
        """Forget the events ``first..last`` without an acknowledgement (never storable)."""
        self.events = deque(e for e in self.events if not first <= e.seq <= last)
        self.sending_through = self.acked

    def acknowledge(self, acked: int) -> bool:
        """Apply the relay's answer (highest contiguous seq it holds): drop what it holds.

        Acks may arrive late or twice; they never move backwards. Returns False when the
        relay holds less than what was already dropped (it lost events: a gap it cannot
        fill), and the caller decides what to report.
        """
        self.acked = max(self.acked, acked)
        while True:
            while self.events and self.events[0].seq <= self.acked:
                self.events.popleft()
            if self.events or not self._refill():
                break
        return not (self.events and self.events[0].seq > self.acked + 1)

    def _refill(self) -> bool:
        if self.spool is None or not self.spool.count or len(self.events) > self.memory_limit // 2:
            return False
        self.events.extend(self.spool.read(self.memory_limit - len(self.events)))
        return True
