"""httpx's ASGI transport for tests, with a request body an app may leave unfinished.

The relay reads a body up to its declared ``Content-Length`` and answers without waiting
for the request's (empty) end; its servers drop that end as the answer goes out. httpx's
own transport hands the body out of an async generator that would then be left to the
garbage collector (a ResourceWarning); this one closes it once the app has answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["ASGITransport"]


class ASGITransport(httpx.ASGITransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = _Body(request.stream)
        request.stream = body
        try:
            return await super().handle_async_request(request)
        finally:
            await body.aclose()


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._chunks: AsyncIterator[bytes] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._chunks is None:
            self._chunks = aiter(self._stream)
        return await anext(self._chunks)

    async def aclose(self) -> None:
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            await close()
