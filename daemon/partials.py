"""Replies being written, on their way up: coalesced, never stored, best effort.

A session hands each piece of the block its agent is writing to :meth:`Partials.add`
(see :mod:`wire.partial`). The first piece of a block goes up at once; later ones wait
until :data:`INTERVAL` has passed since the session's last send and go together, so a
fast writer costs at most one send per session per interval, and every session with
something new goes in the same request. Once the log has an event after the piece's
(:meth:`Partials.event`: the finished message, an error), what was not sent is dropped.
A send that fails is not retried: the next one starts the block over from its first
character, and the finished message makes good anything lost. A piece can also be lost
unseen (on an open uplink request that fails later, or overtaken by one sent on a request
of its own; the relay then ignores what follows the gap): so a block that keeps growing
goes whole again every :data:`FULL_EVERY` seconds (the relay sends its readers only
what they lack).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
import structlog
import trio

import wire

from .errors import DaemonError

__all__ = ["INTERVAL", "Partials", "SendPartials"]

log = structlog.get_logger("daemon.partials")

#: Seconds between two sends of one session's partials at most.
INTERVAL = 0.05
#: A block that keeps growing goes whole again this often (seconds).
FULL_EVERY = 1.0
#: After a failed send, a session's next waits this long (the relay is away, or refused).
AFTER_FAILURE = 1.0

#: Sends the pieces (session id, partial) in one request; raises ``DaemonError``.
SendPartials = Callable[[list[tuple[str, wire.AssistantPartial]]], Awaitable[None]]


@attrs.define(eq=False)
class _Writing:
    """One session's block being written: its whole text so far (offset 0), how much of
    it went up, and when."""

    partial: wire.AssistantPartial
    sent: int = 0
    sent_at: float = float("-inf")
    #: When it last went whole (from its first character).
    whole_at: float = float("-inf")


def _same_block(a: wire.AssistantPartial, b: wire.AssistantPartial) -> bool:
    return a.after_seq == b.after_seq and a.block == b.block


@attrs.define(eq=False)
class Partials:
    send: SendPartials
    interval: float = INTERVAL
    #: Partials sent, and sends that failed (for ``rcd status`` and benchmarks).
    sent: int = attrs.field(default=0, init=False)
    failures: int = attrs.field(default=0, init=False)
    _writing: dict[str, _Writing] = attrs.field(factory=dict, init=False)
    _wake: trio.Event = attrs.field(factory=trio.Event, init=False)

    def add(self, session_id: str, piece: wire.AssistantPartial) -> None:
        """A piece of the block the session's agent is writing (never blocks)."""
        writing = self._writing.get(session_id)
        if writing is not None and _same_block(writing.partial, piece):
            text = writing.partial.text
            if piece.offset > len(text):
                return  # a piece was lost on the way here: the finished message will do
            writing.partial = attrs.evolve(writing.partial, text=text[: piece.offset] + piece.text)
            writing.sent = min(writing.sent, piece.offset)
        elif piece.offset == 0:
            self._writing[session_id] = _Writing(piece)
        else:
            return
        self._wake.set()

    def event(self, session_id: str, seq: int) -> None:
        """The session's log has event ``seq``: a block written before it is over."""
        writing = self._writing.get(session_id)
        if writing is not None and seq > writing.partial.after_seq:
            del self._writing[session_id]

    def forget(self, session_id: str) -> None:
        self._writing.pop(session_id, None)

    def waiting(self) -> int:
        """Sessions with text not sent yet."""
        return sum(1 for w in self._writing.values() if w.sent < len(w.partial.text))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send what is due, one request at a time, until cancelled."""
        task_status.started()
        while True:
            self._wake = trio.Event()
            now = trio.current_time()
            due = [
                (session_id, writing)
                for session_id, writing in self._writing.items()
                if writing.sent < len(writing.partial.text)
            ]
            ready = [(s, w) for s, w in due if w.sent_at + self.interval <= now]
            if ready:
                await self._send(ready, now)
            elif due:
                with trio.move_on_at(min(w.sent_at for _, w in due) + self.interval):
                    await self._wake.wait()
            else:
                await self._wake.wait()

    async def _send(self, ready: list[tuple[str, _Writing]], now: float) -> None:
        pieces = []
        for session_id, writing in ready:
            whole = writing.partial
            if writing.sent and now - writing.whole_at >= FULL_EVERY:
                writing.sent = 0
            if not writing.sent:
                writing.whole_at = now
            pieces.append(
                (
                    session_id,
                    attrs.evolve(whole, offset=writing.sent, text=whole.text[writing.sent :]),
                )
            )
            writing.sent = len(whole.text)
            writing.sent_at = now
        try:
            await self.send(pieces)
        except Exception as exc:  # best effort: nothing here may take the daemon down
            self.failures += 1
            if isinstance(exc, DaemonError):
                log.info("partials_not_sent", sessions=len(pieces), error=str(exc))
            else:
                log.warning("partials_not_sent", sessions=len(pieces), exc_info=exc)
            for session_id, piece in pieces:
                failed = self._writing.get(session_id)
                if failed is not None and _same_block(failed.partial, piece):
                    failed.sent = 0
                    failed.sent_at = trio.current_time() + AFTER_FAILURE - self.interval
            return
        self.sent += len(pieces)
