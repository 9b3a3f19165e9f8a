"""The spare uplink request: one opened ahead of the batch it will carry (see :class:`Spare`)."""

from __future__ import annotations

import collections
import secrets
from collections.abc import Callable

import attrs
import httpx
import trio

import wire

__all__ = ["LONG_LIFE", "MAX_FRAMES", "SPARE_IDLE", "Spare"]

#: An uplink request opened ahead of its batch (see :class:`Spare`) that no batch took
#: within this long is closed with an empty one: proxies cut a request that sends nothing
#: for a minute, and an idle daemon keeps none open.
SPARE_IDLE = 30.0
#: Batches a spare request carries at most (the relay takes ``wire.MAX_FRAMES``).
MAX_FRAMES = 200
#: How long, from its head, a request whose frames the relay answers on the downlink
#: keeps taking batches: well inside the relay's deadline for a body (60 s by default).
LONG_LIFE = 40.0


@attrs.define(eq=False)
class Spare(httpx.AsyncByteStream):
    """An uplink request opened before its batch exists: by the time a batch is handed
    over, the request's head is sent and the relay has routed it and checked its link token,
    so only the body is left to go (the batch's latency is one write and the relay's store).

    The body is frames (:data:`wire.UPLINK_FRAMES_TYPE`), each answered in the response
    when the body ends. After the first batch it stays open ``linger`` seconds for more,
    which the relay stores as each arrives, so the batches of a busy machine share one
    request. When it was opened with ``stream`` (:data:`wire.UPLINK_STREAM_HEADER`, sent
    while the downlink is open) the relay also answers each frame on the downlink as soon
    as it is stored (:meth:`acknowledge`); once such an answer came (:meth:`go_long`) the
    request takes batches for :data:`LONG_LIFE` from its head, so a busy session's turns
    cost no request of their own. No batch within :data:`SPARE_IDLE`: an empty one ends it
    (``on_idle`` withdraws it from offer). When it takes no more, ``on_closed`` runs. An
    iterator, not an async generator, which httpcore would leave unfinished when the
    connection fails mid-request.
    """

    linger: float
    on_idle: Callable[[Spare], None]
    on_closed: Callable[[Spare], None]
    #: The name the relay's downlink answers give it (None: answered with the response only).
    stream: str | None = None
    #: Takes batches for :data:`LONG_LIFE` (see :meth:`go_long`).
    long: bool = False
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    #: Set once the request's head is sent and its body is asked for (its first batch).
    head_sent: trio.Event = attrs.Factory(trio.Event)
    done: trio.Event = attrs.Factory(trio.Event)
    response: httpx.Response | None = None
    #: The request failed before an answer (its connection had gone, say).
    error: BaseException | None = None
    _frames: collections.deque[bytes] = attrs.Factory(collections.deque)
    _added: int = 0
    _more: trio.Event = attrs.Factory(trio.Event)
    #: ``trio.current_time()`` when the body was first asked for.
    _head_at: float | None = None
    #: ``trio.current_time()`` until which it takes batches (None: waiting for its first).
    _until: float | None = None
    _closed: bool = False
    _answer: wire.UplinkFrames | None = None
    #: Answers that came on the downlink, by frame.
    _acks: dict[int, wire.UplinkResponse] = attrs.Factory(dict)
    _answered: trio.Event = attrs.Factory(trio.Event)

    @staticmethod
    def new_stream() -> str:
        return secrets.token_urlsafe(12)

    def accepting(self) -> bool:
        return (
            not self._closed
            and self._added < MAX_FRAMES
            and (self._until is None or trio.current_time() < self._until)
        )

    def add(self, frame: bytes) -> int:
        """Queue one batch (an encoded :class:`wire.UplinkRequest`); its index in the
        answer. Only while :meth:`accepting`."""
        self._frames.append(frame + b"\n")
        self._added += 1
        if self._until is None:
            self._until = self._window(trio.current_time() + self.linger)
        self._more.set()
        return self._added - 1

    def _window(self, until: float) -> float:
        if self.long and self._head_at is not None:
            return max(until, self._head_at + LONG_LIFE)
        return until

    def go_long(self) -> None:
        """The relay answers this request's frames on the downlink: keep taking batches
        for :data:`LONG_LIFE` from the head, rather than ``linger`` after the first."""
        if self.long or self.stream is None:
            return
        self.long = True
        if self._until is not None:
            self._until = self._window(self._until)

    def finish(self) -> None:
        """Take no more batches once those queued are sent (the downlink that answered
        them went: the answers come with the response)."""
        self.long = False
        if self._until is not None:
            self._until = min(self._until, trio.current_time())
            self._more.set()

    def acknowledge(self, frame: int, answer: wire.UplinkResponse) -> None:
        """The relay's answer to ``frame``, as the downlink brought it."""
        if 0 <= frame < self._added and frame not in self._acks:
            self._acks[frame] = answer
            self._wake_waiters()

    def ended(self) -> None:
        """The request ended (answered or failed): :attr:`done`."""
        self.done.set()
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        self._answered.set()
        self._answered = trio.Event()

    async def wait_answer(self, index: int) -> wire.UplinkResponse | None:
        """The answer to batch ``index`` once the downlink brought it, or None once the
        request ended first (then :meth:`answer` reads it from the response)."""
        while index not in self._acks and not self.done.is_set():
            await self._answered.wait()
        return self._acks.get(index)

    def answer(self, index: int) -> wire.UplinkResponse:
        """The relay's answer to batch ``index`` (the request must have succeeded)."""
        if self._answer is None:
            assert self.response is not None
            self._answer = wire.decode(wire.UplinkFrames, self.response.json())
        return self._answer.frames[index]

    def __aiter__(self) -> Spare:
        return self

    async def __anext__(self) -> bytes:
        # The HTTP client asks for the body once it has written the head.
        self.head_sent.set()
        if self._head_at is None:
            self._head_at = trio.current_time()
            if self._until is not None:
                self._until = self._window(self._until)
        idle = True
        while not self._frames and not self._closed and self._added < MAX_FRAMES:
            idle = self._until is None
            deadline = self._head_at + SPARE_IDLE if idle else self._until
            assert deadline is not None
            if trio.current_time() >= deadline:
                break
            self._more = trio.Event()
            with trio.move_on_at(deadline):
                await self._more.wait()
        if self._frames:
            # Every frame queued by now goes in one write (the relay reads a frame a line):
            # a busy machine's sessions that answer together cost one chunk, not one each.
            chunk = b"".join(self._frames)
            self._frames.clear()
            return chunk
        was_open = not self._closed
        self._closed = True
        if was_open:
            self.on_closed(self)
        if not idle or not was_open or self._added:
            raise StopAsyncIteration
        self.on_idle(self)
        return wire.encode_json(wire.UplinkRequest(sessions=[])).encode() + b"\n"
