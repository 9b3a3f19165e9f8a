"""A small SSE client for tests and benchmarks, over a real httpx stream.

Leaving :func:`sse` hangs up in a way that unwinds httpx's nested async generators at once
(otherwise trio reports them to the garbage collector as a ResourceWarning).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import attrs
import httpx
import trio

__all__ = ["SSEMessage", "SSEReader", "sse"]


@attrs.frozen
class SSEMessage:
    id: str | None
    event: str | None
    data: str | None
    comment: str | None = None


class SSEReader:
    """Reads an SSE response message by message (comments too, if asked)."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self._lines = lines

    async def next(self, *, comments: bool = False) -> SSEMessage:
        fields: dict[str, str] = {}
        async for line in self._lines:
            if line == "":
                if fields:
                    return SSEMessage(fields.get("id"), fields.get("event"), fields.get("data"))
                continue
            if line.startswith(":"):
                if comments:
                    return SSEMessage(None, None, None, comment=line[1:].strip())
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise EOFError("the stream ended")

    async def expect_end(self) -> None:
        """Wait for the server to end the stream (skipping keep-alives)."""
        with suppress(EOFError):
            while True:
                await self.next()


@asynccontextmanager
async def sse(
    http: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> AsyncIterator[tuple[httpx.Response, SSEReader]]:
    """An SSE request; leaving the block hangs up (the server sees the client go away)."""
    headers = headers | {"accept": "text/event-stream"}
    async with http.stream("GET", url, headers=headers) as response:
        lines = response.aiter_lines()
        try:
            yield response, SSEReader(lines)
        finally:
            await _unwind(lines)


async def _unwind(lines: AsyncIterator[str]) -> None:
    # Closing an httpx stream half-way leaves its nested async generators to the garbage
    # collector (a ResourceWarning under trio, an error here). A read cancelled while it
    # waits on the socket unwinds every one of them instead.
    with trio.CancelScope() as scope:
        scope.cancel()
        with suppress(StopAsyncIteration, httpx.StreamError):
            while True:
                await lines.__anext__()
