"""The uplink: every session's events, in order, to the relay, each exactly once.

``publish`` never blocks: events wait in a per-session buffer until the relay acknowledges
them. One flusher per session sends whatever is buffered as one batch, so batches grow by
themselves while a request is in flight. Failures are retried with capped, jittered
backoff; nothing is dropped while the relay is away.
"""

from __future__ import annotations

import itertools
from collections import deque
from pathlib import Path

import attrs
import structlog
import trio

import wire

from .backoff import full_jitter
from .errors import RelayRejected, RelayUnreachable
from .relay_client import RelayClient
from .spool import Spool, spooled_sessions

#: Batches of one session in flight at once, each on a request of its own ...
LANES = 2
#: ... and in all, counting those riding an open request behind the others.
MAX_IN_FLIGHT = 16

__all__ = ["Outbox", "Uplink", "UplinkStats"]

log = structlog.get_logger("daemon.uplink")


@attrs.frozen(kw_only=True)
class UplinkStats:
    buffered_events: int
    sessions_flushing: int
    batches_sent: int
    failures: int


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

    def take_batch(self, limit: int, after: int = 0) -> list[wire.Event]:
        """The oldest events after seq ``after`` to send next (they stay buffered until
        acknowledged)."""
        self._refill()
        pending = (e for e in self.events if e.seq > after)
        return list(itertools.islice(pending, limit))

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


@attrs.define(eq=False)
class Uplink:
    client: RelayClient
    #: Where events beyond ``memory_limit`` per session wait (None: memory only).
    spool_dir: Path | None = None
    memory_limit: int = 10_000
    batch_max: int = 500
    backoff_cap: float = 5.0
    #: How long the echo of a user's message (and the busy state) waits for the agent's
    #: first output. An agent that answers quickly gets its answer up in the same request
    #: as the echo, and the echo's requests do not compete for the CPU with the agent
    #: starting its turn; a slow one has its echo shown this much later (the web app shows
    #: the message as sent at once anyway).
    echo_hold: float = 0.1
    _outboxes: dict[str, Outbox] = attrs.field(factory=dict)
    _nursery: trio.Nursery | None = None
    _changed: trio.Event = attrs.field(factory=trio.Event)
    _batches: int = 0
    _failures: int = 0
    _paused: bool = False
    _held: trio.Event = attrs.field(factory=trio.Event)
    #: Set once :meth:`run` has returned: events are kept (and spooled by
    #: :meth:`spool_unsent`) but no longer sent.
    _closed: bool = False

    def pause(self) -> None:
        """Hold batches of sessions that are still running (events keep buffering) until
        :meth:`resume`; a session whose last event is buffered sends at once.

        Used while every session stops at once: each sends its last events in one request,
        as soon as it has ended, overlapping the other sessions' stops.
        """
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._wake_held()

    def _wake_held(self) -> None:
        self._held.set()
        self._held = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; flushers run inside this task's nursery."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for session_id, box in self._outboxes.items():
                    if box.pending() and not box.flushing:
                        box.flushing = True
                        nursery.start_soon(self._flush, session_id, box)
                task_status.started()
                await trio.sleep_forever()
        finally:
            # Sessions may still be writing their last events (a stop cut short by its
            # deadline): those are buffered from now on, never sent, never an error.
            self._closed = True
            self._nursery = None

    def publish(self, session_id: str, event: wire.Event) -> None:
        """Buffer ``event`` (seqs of one session must come in order) and wake its flusher.

        Never raises and never blocks. After :meth:`run` has ended the event is only
        buffered: :meth:`spool_unsent` writes it to disk for the next start to send.
        """
        box = self._box(session_id)
        box.push(event)
        if event.kind == "user_message":
            box.hold_until = trio.current_time() + self.echo_hold
        elif event.kind != "status" or event.data.get("state") != "busy":
            box.hold_until = 0.0
        if box.complete and self._paused:
            self._wake_held()
        if box.flushing:
            box.wake.set()
        elif self._nursery is not None and not self._closed:
            box.flushing = True
            self._nursery.start_soon(self._flush, session_id, box)

    def forget(self, session_id: str) -> None:
        """Drop the outbox of a session once everything in it was acknowledged."""
        box = self._outboxes.get(session_id)
        if box is not None and not box.pending():
            del self._outboxes[session_id]
            self.client.forget_session(session_id)

    def _box(self, session_id: str) -> Outbox:
        box = self._outboxes.get(session_id)
        if box is None:
            spool = Spool(self.spool_dir / f"{session_id}.jsonl") if self.spool_dir else None
            box = self._outboxes[session_id] = Outbox(memory_limit=self.memory_limit, spool=spool)
        return box

    def recover(self, held: dict[str, int]) -> dict[str, int]:
        """Load events an earlier run spooled but never sent (call before :meth:`run`).

        ``held`` is the highest seq the relay holds per open session. A spool that does not
        continue it (the events between were lost with the crashed process) is dropped, with
        an error logged: the relay could never store anything after a gap. A spool of a
        session not in ``held`` is sent as it is (the relay's answer tells what it holds).
        Returns the last seq now buffered per session.
        """
        if self.spool_dir is None:
            return {}
        found = {}
        for session_id in spooled_sessions(self.spool_dir):
            box = self._box(session_id)
            assert box.spool is not None
            first = box.spool.first()
            # A session the relay no longer lists as open (a goodbye ended it before its
            # last events got there) still takes them: its answer says what it holds.
            relay_has = held.get(session_id, first.seq - 1 if first is not None else 0)
            if first is None or first.seq > relay_has + 1:
                log.error(
                    "spool_dropped",
                    session_id=session_id,
                    relay_has=relay_has,
                    spool_starts=first.seq if first else None,
                )
                box.spool.discard()
                continue
            found[session_id] = box.last_seq()
            log.info("spool_recovered", session_id=session_id, events=box.pending())
        return found

    def pending(self) -> int:
        return sum(box.pending() for box in self._outboxes.values())

    def is_complete(self, session_id: str) -> bool:
        """Whether the session's last event (``session_ended``) is buffered."""
        box = self._outboxes.get(session_id)
        return box is not None and box.complete

    def spool_unsent(self) -> int:
        """Write every event not yet acknowledged to its session's spool, in order, so the
        next start sends it (see :meth:`recover`); call once :meth:`run` has ended.
        Returns how many events wait there. Without a spool directory they are lost, and
        an error says how many."""
        waiting = 0
        for session_id, box in self._outboxes.items():
            if not box.pending():
                continue
            if box.spool is None:
                log.error("uplink_unsent_lost", session_id=session_id, events=box.pending())
                continue
            # Memory holds the oldest events, the spool the newest: rewrite it whole.
            events = list(box.events) + box.spool.read(box.spool.count)
            box.events.clear()
            box.spool.discard()
            for event in events:
                box.spool.append(event)
            waiting += len(events)
        if waiting:
            log.info("uplink_unsent_spooled", events=waiting)
        return waiting

    async def drain(self) -> None:
        """Wait until every buffered event is acknowledged (the caller sets the deadline)."""
        while self.pending():
            changed = self._changed
            await changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _flush(self, session_id: str, box: Outbox) -> None:
        """Send a session's events in order until none is left.

        Up to :data:`LANES` batches of one session are in flight at once: a burst that
        starts while a batch is on its way (the agent's answer right after the user's
        message, say) goes out at once rather than a round trip later. The relay stores
        only a contiguous run, so a batch that overtakes its predecessor is answered with
        less than it carried, and what it missed is sent again. A batch that can ride an
        uplink request still taking batches goes at once even past :data:`LANES` (up to
        :data:`MAX_IN_FLIGHT`): such a request is answered only when its window ends, and
        the next step of a turn must not wait for that.
        """
        lanes = 0
        attempt = 0
        #: Batches waiting out a backoff before the session sends again.
        backing_off = 0

        async def send(
            batch: list[wire.Event],
            *,
            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
        ) -> None:
            nonlocal lanes, attempt, backing_off
            queued = False

            def in_line() -> None:
                # The batch has its place in the client's queue: the next may be taken.
                nonlocal queued
                if not queued:
                    queued = True
                    task_status.started()

            try:
                acked = await self.client.post_events(session_id, batch, in_line)
                in_line()
            except (RelayUnreachable, RelayRejected) as exc:
                in_line()
                retry = isinstance(exc, RelayUnreachable) or (
                    exc.status in (401, 408, 429) or exc.status >= 500
                )
                if retry:
                    self._failures += 1
                    if not backing_off:
                        # One failure round, however many batches were in flight (all of
                        # those riding one request fail together when it does).
                        attempt += 1
                    delay = full_jitter(attempt, base=0.1, cap=self.backoff_cap)
                    log.warning("uplink_retry", session_id=session_id, error=str(exc), delay=delay)
                    backing_off += 1
                    box.sending_through = box.acked  # everything after the head, again
                    try:
                        await trio.sleep(delay)
                    finally:
                        backing_off -= 1
                    return
                # The relay will never take these events (unknown session, bad batch):
                # keeping them would retry forever. Say so loudly.
                log.error(
                    "uplink_rejected", session_id=session_id, error=str(exc), dropped=len(batch)
                )
                box.drop(batch[0].seq, batch[-1].seq)
                self._notify()
                return
            finally:
                lanes -= 1
                box.wake.set()
            attempt = 0
            self._batches += 1
            if not box.acknowledge(acked):
                # The relay lost events it had acknowledged (restored from an old copy):
                # they cannot be resent, and nothing after them could be stored.
                log.error("uplink_gap", session_id=session_id, acked=acked)
                box.events.clear()
                box.sending_through = box.acked
            elif acked < batch[-1].seq:
                # Overtaken, or the relay stopped at a gap: resend from what it holds.
                box.sending_through = min(box.sending_through, box.acked)
            self._notify()

        try:
            # Leaving the nursery is a checkpoint: an event published meanwhile only sets
            # ``wake`` (this flusher still counts as running), so look again before leaving.
            while box.pending():
                async with trio.open_nursery() as nursery:
                    while box.pending() or lanes:
                        wake = box.wake = trio.Event()
                        if self._paused and not box.complete:
                            await self._held.wait()
                            continue
                        if box.hold_until > trio.current_time():
                            with trio.move_on_at(box.hold_until):
                                await wake.wait()
                            continue
                        box.sending_through = max(box.sending_through, box.acked)
                        batch = (
                            box.take_batch(self.batch_max, after=box.sending_through)
                            if self._may_send(lanes) and not backing_off
                            else []
                        )
                        if not batch:
                            await wake.wait()
                            continue
                        box.sending_through = batch[-1].seq
                        lanes += 1
                        # Each batch takes its place before the next is taken: batches
                        # riding one request go in seq order.
                        await nursery.start(send, batch)
            if box.complete:
                # Its last event is in: nothing more will come for this session.
                self.forget(session_id)
        finally:
            box.flushing = False

    def _may_send(self, lanes: int) -> bool:
        """Whether one more batch of a session with ``lanes`` batches in flight goes now."""
        return lanes < LANES or (lanes < MAX_IN_FLIGHT and self.client.takes_batches())

    def statistics(self) -> UplinkStats:
        return UplinkStats(
            buffered_events=self.pending(),
            sessions_flushing=sum(1 for b in self._outboxes.values() if b.flushing),
            batches_sent=self._batches,
            failures=self._failures,
        )
