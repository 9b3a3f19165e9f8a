"""The uplink: every session's events, in order, to the relay, each exactly once.

``publish`` never blocks: events wait in a per-session buffer until the relay acknowledges
them. One flusher per session sends whatever is buffered as one batch, so batches grow by
themselves while a request is in flight. Failures are retried with capped, jittered
backoff; nothing is dropped while the relay is away.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import structlog
import trio

import wire
from common.backoff import full_jitter

from .errors import RelayRejected, RelayUnreachable
from .outbox import Outbox
from .partials import Partials
from .relay_client import RelayClient
from .spool import Spool, spooled_sessions
from .uplink_policy import Flow, Limits, next_batch

#: Batches of one session in flight at once, each on a request of its own ...
LANES = Limits().lanes
#: ... and in all, counting those riding an open request behind the others.
MAX_IN_FLIGHT = Limits().max_in_flight

__all__ = ["Outbox", "Uplink", "UplinkStats"]

log = structlog.get_logger("daemon.uplink")


def _is_echo(event: wire.Event) -> bool:
    """Whether ``event`` only reports what a user just did, with the agent's reaction to it
    on its way: a message, or a decision on a permission prompt (not one the agent or the
    turn's end withdrew)."""
    if event.kind == "user_message":
        return True
    return event.kind == "permission_resolved" and event.data.get("origin") not in (
        "agent_cancelled",
        "turn_ended",
    )


def _keeps_hold(event: wire.Event) -> bool:
    """Whether ``event`` goes up with a held echo rather than ending its hold: the agent
    turning busy, a tool it is about to use, or the result of one it just ran (its next
    words, or a permission prompt, which ends the hold, follow)."""
    if event.kind == "status":
        return event.data.get("state") == "busy"
    return event.kind in ("tool_use", "tool_result")


def _retryable(exc: RelayRejected) -> bool:
    """Whether a refused batch may be stored later: a token, a timeout, a rate limit or
    the relay's own trouble. Any other refusal is final."""
    return exc.status in (401, 408, 429) or exc.status >= 500


@attrs.define(eq=False)
class _Sending:
    """One session's batches in flight, while its flusher runs."""

    lanes: int = 0
    #: Failure rounds in a row (the backoff's exponent).
    attempt: int = 0
    #: Batches waiting out a backoff before the session sends again.
    backing_off: int = 0


@attrs.frozen(kw_only=True)
class UplinkStats:
    buffered_events: int
    sessions_flushing: int
    batches_sent: int
    failures: int


@attrs.define(eq=False)
class Uplink:
    client: RelayClient
    #: Where events beyond ``memory_limit`` per session wait (None: memory only).
    spool_dir: Path | None = None
    memory_limit: int = 10_000
    batch_max: int = 500
    backoff_cap: float = 5.0
    #: How long the echo of what the user did (a message, a permission decision; see
    #: :func:`_is_echo`) waits for the agent's next output. An agent that answers quickly
    #: gets its answer up in the same request as the echo, and the echo's request does not
    #: compete for the CPU with the agent starting its work; a slow one has its echo shown
    #: this much later (the web app shows the message as sent, the decision as taken, at
    #: once anyway).
    echo_hold: float = 0.1
    _outboxes: dict[str, Outbox] = attrs.field(factory=dict)
    #: Replies being written (see :mod:`daemon.partials`), sent beside the events.
    partials: Partials = attrs.field(init=False)
    _nursery: trio.Nursery | None = None
    _changed: trio.Event = attrs.field(factory=trio.Event)
    _batches: int = 0
    _failures: int = 0
    _paused: bool = False
    _held: trio.Event = attrs.field(factory=trio.Event)
    #: Set once :meth:`run` has returned: events are kept (and spooled by
    #: :meth:`spool_unsent`) but no longer sent.
    _closed: bool = False

    def __attrs_post_init__(self) -> None:
        self.partials = Partials(send=lambda pieces: self.client.post_partials(pieces))

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
                nursery.start_soon(self.partials.run)
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
        self.partials.event(session_id, event.seq)
        if _is_echo(event):
            box.hold_until = trio.current_time() + self.echo_hold
        elif not _keeps_hold(event):
            box.hold_until = 0.0
        if box.complete and self._paused:
            self._wake_held()
        if box.flushing:
            box.wake.set()
        elif self._nursery is not None and not self._closed:
            box.flushing = True
            self._nursery.start_soon(self._flush, session_id, box)

    def publish_partial(self, session_id: str, piece: wire.AssistantPartial) -> None:
        """A piece of a reply being written (see :mod:`daemon.partials`); never blocks."""
        if not self._closed:
            self.partials.add(session_id, piece)

    def forget(self, session_id: str) -> None:
        """Drop the outbox of a session once everything in it was acknowledged."""
        self.partials.forget(session_id)
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

    def last_seq(self, session_id: str) -> int:
        """The highest seq buffered or acknowledged for the session here (0: none)."""
        box = self._outboxes.get(session_id)
        return box.last_seq() if box is not None else 0

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

    def _limits(self) -> Limits:
        return Limits(batch_max=self.batch_max, lanes=LANES, max_in_flight=MAX_IN_FLIGHT)

    async def _flush(self, session_id: str, box: Outbox) -> None:
        """Send a session's events in order until none is left (what goes when: see
        :mod:`daemon.uplink_policy`).

        The relay stores only a contiguous run, so a batch that overtakes its predecessor
        is answered with less than it carried, and what it missed is sent again.
        """
        sending = _Sending()
        try:
            # Leaving the nursery is a checkpoint: an event published meanwhile only sets
            # ``wake`` (this flusher still counts as running), so look again before leaving.
            while box.pending():
                async with trio.open_nursery() as nursery:
                    while box.pending() or sending.lanes:
                        wake = box.wake = trio.Event()
                        if self._paused and not box.complete:
                            await self._held.wait()
                            continue
                        if box.hold_until > trio.current_time():
                            with trio.move_on_at(box.hold_until):
                                await wake.wait()
                            continue
                        box.sending_through = max(box.sending_through, box.acked)
                        flow = Flow(
                            acked=box.acked,
                            sending_through=box.sending_through,
                            in_flight=sending.lanes,
                            backing_off=sending.backing_off > 0,
                            rides_open_request=self.client.takes_batches(),
                        )
                        batch = next_batch(box.unsent(), flow, self._limits())
                        if not batch:
                            await wake.wait()
                            continue
                        box.sending_through = batch[-1].seq
                        sending.lanes += 1
                        # Each batch takes its place in the client's queue before the next
                        # is taken: batches riding one request go in seq order.
                        placed = trio.Event()
                        nursery.start_soon(self._send, session_id, box, sending, batch, placed)
                        await placed.wait()
            if box.complete:
                # Its last event is in: nothing more will come for this session.
                self.forget(session_id)
        finally:
            box.flushing = False

    async def _send(
        self,
        session_id: str,
        box: Outbox,
        sending: _Sending,
        batch: list[wire.Event],
        placed: trio.Event,
    ) -> None:
        """Send one batch and apply the answer; sets ``placed`` once the batch has its
        place among those to send (or failed)."""
        try:
            try:
                acked = await self.client.post_events(session_id, batch, placed.set)
            except (RelayUnreachable, RelayRejected) as exc:
                placed.set()
                if isinstance(exc, RelayUnreachable) or _retryable(exc):
                    await self._back_off(session_id, box, sending, exc)
                else:
                    self._refused(session_id, box, batch, exc)
                return
            placed.set()
            sending.attempt = 0
            self._acknowledged(session_id, box, batch, acked)
        finally:
            sending.lanes -= 1
            box.wake.set()

    async def _back_off(
        self,
        session_id: str,
        box: Outbox,
        sending: _Sending,
        exc: RelayUnreachable | RelayRejected,
    ) -> None:
        self._failures += 1
        if not sending.backing_off:
            # One failure round, however many batches were in flight (all of those riding
            # one request fail together when it does).
            sending.attempt += 1
        delay = full_jitter(sending.attempt, base=0.1, cap=self.backoff_cap)
        log.warning("uplink_retry", session_id=session_id, error=str(exc), delay=delay)
        sending.backing_off += 1
        box.sending_through = box.acked  # everything after the head, again
        try:
            await trio.sleep(delay)
        finally:
            sending.backing_off -= 1

    def _refused(
        self, session_id: str, box: Outbox, batch: list[wire.Event], exc: RelayRejected
    ) -> None:
        # The relay will never take these events (unknown session, bad batch): keeping
        # them would retry forever. Say so loudly.
        log.error("uplink_rejected", session_id=session_id, error=str(exc), dropped=len(batch))
        box.drop(batch[0].seq, batch[-1].seq)
        self._notify()

    def _acknowledged(
        self, session_id: str, box: Outbox, batch: list[wire.Event], acked: int
    ) -> None:
        self._batches += 1
        if not box.acknowledge(acked):
            # The relay lost events it had acknowledged (restored from an old copy): they
            # cannot be resent, and nothing after them could be stored.
            log.error("uplink_gap", session_id=session_id, acked=acked)
            box.events.clear()
            box.sending_through = box.acked
        elif acked < batch[-1].seq:
            # Overtaken, or the relay stopped at a gap: resend from what it holds.
            box.sending_through = min(box.sending_through, box.acked)
        self._notify()

    def statistics(self) -> UplinkStats:
        return UplinkStats(
            buffered_events=self.pending(),
            sessions_flushing=sum(1 for b in self._outboxes.values() if b.flushing),
            batches_sent=self._batches,
            failures=self._failures,
        )
