"""The spare uplink request: one opened ahead of the batch it will carry (see :class:`Spare`)."""

from __future__ import annotations

import collections
from collections.abc import Callable

import attrs
import httpx
import trio

import wire

__all__ = ["MAX_FRAMES", "SPARE_IDLE", "Spare"]

#: An uplink request opened ahead of its batch (see :class:`Spare`) that no batch took
#: within this long is closed with an empty one: proxies cut a request that sends nothing
#: for a minute, and an idle daemon keeps none open.
SPARE_IDLE = 30.0
#: Batches a spare request carries at most (the relay takes ``wire.MAX_FRAMES``): the
#: answer to all of them comes at its end.
MAX_FRAMES = 200


@attrs.define(eq=False)
class Spare(httpx.AsyncByteStream):
    """An uplink request opened before its batch exists: by the time a batch is handed
    over, the request's head is sent and the relay has routed it and checked its link token,
    so only the body is left to go (the batch's latency is one write and the relay's store).

    The body is frames (:data:`wire.UPLINK_FRAMES_TYPE`): after the first batch it stays
    open ``linger`` seconds for more, which the relay stores as each arrives, so the batches
    of a busy machine share one request; the answer to all of them comes when it ends. No
    batch within :data:`SPARE_IDLE`: an empty one ends it (``on_idle`` withdraws it from
    offer). When it takes no more, ``on_closed`` runs. An iterator, not an async generator,
    which httpcore would leave unfinished when the connection fails mid-request.
    """

    linger: float
    on_idle: Callable[[Spare], None]
    on_closed: Callable[[Spare], None]
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
    #: ``trio.current_time()`` until which it takes batches (None: waiting for its first).
    _until: float | None = None
    _closed: bool = False
    _answer: wire.UplinkFrames | None = None

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
            self._until = trio.current_time() + self.linger
        self._more.set()
        return self._added - 1

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
        if self._frames:
            return self._frames.popleft()
        if self._closed:
            raise StopAsyncIteration
        idle = self._until is None
        deadline = trio.current_time() + SPARE_IDLE if self._until is None else self._until
        with trio.move_on_at(deadline):
            while not self._frames:
                self._more = trio.Event()
                await self._more.wait()
        if self._frames:
            return self._frames.popleft()
        self._closed = True
        self.on_closed(self)
        if not idle:
            raise StopAsyncIteration
        self.on_idle(self)
        return wire.encode_json(wire.UplinkRequest(sessions=[])).encode() + b"\n"
