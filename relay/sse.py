"""Server-Sent Events: encoding, and a response that streams until the client goes away.

An :class:`EventStreamResponse` runs a *producer* coroutine with an :class:`EventStream`
to write to. A second task watches for the client's ``http.disconnect``; when it comes the
producer is cancelled (its ``finally`` blocks run, shielded cleanups included) and nothing
more is sent. When the producer returns, or the relay stops (``until`` is set), the response
ends cleanly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
import trio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["KEEPALIVE", "EventStream", "EventStreamResponse", "encode_sse"]

#: A comment line: ignored by SSE clients, but it keeps proxies from cutting idle streams.
KEEPALIVE = b": keep-alive\n\n"

_HEADERS = {
    "cache-control": "no-cache, no-store",
    # nginx would otherwise buffer the stream.
    "x-accel-buffering": "no",
}


def encode_sse(*, id: int | None, event: str, data: str) -> bytes:
    """One SSE message. ``data`` must be one line (compact JSON is). Without ``id`` the
    client's last event id stays what it was (a message outside the stream's sequence)."""
    if "\n" in data or "\r" in data:
        raise ValueError("SSE data must be a single line")
    if id is None:
        return f"event: {event}\ndata: {data}\n\n".encode()
    return f"id: {id}\nevent: {event}\ndata: {data}\n\n".encode()


@attrs.define(eq=False)
class EventStream:
    """Where a producer writes. The response head goes out on :meth:`start` (or the first
    write), so a producer can finish its setup before the client sees ``200``."""

    _send: Send
    _headers: list[tuple[bytes, bytes]]
    _started: bool = False

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self._send(
                {"type": "http.response.start", "status": 200, "headers": self._headers}
            )

    async def keepalive(self) -> None:
        await self.write(KEEPALIVE)

    async def write(self, chunk: bytes) -> None:
        """Send already encoded messages (:func:`encode_sse`), several in one chunk."""
        await self.start()
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def finish(self) -> None:
        await self.start()
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})


Producer = Callable[[EventStream], Awaitable[None]]


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(self, producer: Producer, *, until: trio.Event | None = None) -> None:
        """``producer`` writes the stream; it is cancelled when the client goes away, or
        once ``until`` is set (the stream then ends cleanly)."""
        # Not Response.__init__: it would set a body, hence ``content-length: 0``.
        self.status_code = 200
        self.background = None
        self.init_headers(_HEADERS)
        self._producer = producer
        self._until = until

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = EventStream(send, self.raw_headers)
        client_gone = False
        async with trio.open_nursery() as nursery:

            async def watch_disconnect() -> None:
                nonlocal client_gone
                while (await receive())["type"] != "http.disconnect":
                    pass
                client_gone = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_disconnect)
            if self._until is not None:
                nursery.start_soon(_cancel_when, self._until, nursery.cancel_scope)
            await self._producer(stream)
            nursery.cancel_scope.cancel()
        if not client_gone:
            await stream.finish()


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
