"""The relay's app as an httpx transport, for a client in the relay's own process.

The embedded relay (``rcd start`` without ``--relay``) runs in the daemon's process; the
daemon's calls to it need no socket, no HTTP parsing on either side and no second trip
through the event loop per message: each request is handed to the ASGI app as it is, in a
task of the relay's nursery, and the answer's body streams back as the app sends it (a
downlink's Server-Sent Events included). Everything the app checks — tokens, limits,
bodies — is checked the same way; only the bytes on loopback are gone.

Unlike httpx's own ``ASGITransport`` (which collects the whole answer before returning, so
a stream that never ends never answers), a request body is read only as the app asks for
it (an uplink request's frames go as they come) and an answer's body as it is sent.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import attrs
import httpx
import structlog
import trio
from starlette.types import ASGIApp, Message

__all__ = ["InProcessTransport"]

log = structlog.get_logger("relay")


@attrs.define(eq=False)
class InProcessTransport(httpx.AsyncBaseTransport):
    """Serve ``app``'s requests in tasks of ``nursery`` (their lifetime is the relay's)."""

    app: ASGIApp
    nursery: trio.Nursery
    #: ``(host, port)`` the app sees as its own address.
    server: tuple[str, int]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        path, _, _ = url.raw_path.partition(b"?")
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": url.scheme,
            "path": unquote(path.decode("ascii")),
            "raw_path": path,
            "query_string": url.query,
            "root_path": "",
            "headers": [(name.lower(), value) for name, value in request.headers.raw],
            "server": self.server,
            # Loopback, as a socket from this machine would be.
            "client": ("127.0.0.1", 0),
        }
        exchange = _Exchange(request.stream, _read_timeout(request))
        self.nursery.start_soon(exchange.run, self.app, scope)
        try:
            await exchange.wait_started()
        except BaseException:
            exchange.abandon()
            raise
        assert exchange.status is not None
        return httpx.Response(
            exchange.status, headers=exchange.headers, stream=exchange, request=request
        )


def _read_timeout(request: httpx.Request) -> float | None:
    timeout = request.extensions.get("timeout", {})
    read = timeout.get("read") if isinstance(timeout, dict) else None
    return read if isinstance(read, int | float) else None


@attrs.define(eq=False)
class _Exchange(httpx.AsyncByteStream):
    """One request: the app's side (receive, send) and the client's (the answer's body)."""

    #: The request's body (an httpx stream: async-iterable, as an async client's are).
    body: Any
    read_timeout: float | None
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = attrs.Factory(list)
    _scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    _started: trio.Event = attrs.Factory(trio.Event)
    _chunks: collections.deque[bytes] = attrs.Factory(collections.deque)
    _more: trio.Event = attrs.Factory(trio.Event)
    _complete: bool = False
    _failed: BaseException | None = None
    _body_read: bool = False
    _body_iter: Any = None
    #: Set once the client is done with the answer: the app sees ``http.disconnect``.
    _closed: trio.Event = attrs.Factory(trio.Event)

    async def run(self, app: ASGIApp, scope: dict[str, Any]) -> None:
        with self._scope:
            try:
                await app(scope, self._receive, self._send)
            except Exception as exc:
                self._failed = exc
                log.error("in-process request failed", path=scope["path"], error=repr(exc))
            finally:
                self._complete = True
                self._started.set()
                self._more.set()
                # The app may leave the body's (empty) end unread: close the iterator here
                # rather than leave it to the garbage collector.
                close = getattr(self._body_iter, "aclose", None)
                if close is not None:
                    with trio.CancelScope(shield=True):
                        await close()

    async def wait_started(self) -> None:
        with _timeout(self.read_timeout):
            await self._started.wait()
        if self.status is None:
            raise httpx.RemoteProtocolError(f"the relay's app gave no answer: {self._failed!r}")

    def abandon(self) -> None:
        self._closed.set()
        self._scope.cancel()

    async def _receive(self) -> Message:
        if not self._body_read:
            if self._body_iter is None:
                self._body_iter = aiter(self.body)
            try:
                chunk = await anext(self._body_iter)
            except StopAsyncIteration:
                self._body_read = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.request", "body": bytes(chunk), "more_body": True}
        await self._closed.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        if self._closed.is_set():
            return  # nobody reads it any more
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
            self._started.set()
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body:
                self._chunks.append(body)
            if not message.get("more_body", False):
                self._complete = True
            self._more.set()

    def __aiter__(self) -> _Exchange:
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            if self._complete:
                if self._failed is not None:
                    raise httpx.RemoteProtocolError(
                        f"the relay's app failed mid-answer: {self._failed!r}"
                    )
                raise StopAsyncIteration
            self._more = trio.Event()
            with _timeout(self.read_timeout):
                await self._more.wait()
        if len(self._chunks) == 1:
            return self._chunks.popleft()
        chunk = b"".join(self._chunks)
        self._chunks.clear()
        return chunk

    async def aclose(self) -> None:
        self.abandon()


@contextmanager
def _timeout(seconds: float | None) -> Iterator[None]:
    """Raise :class:`httpx.ReadTimeout` if the block takes over ``seconds`` (None: no limit)."""
    if seconds is None:
        yield
        return
    with trio.move_on_after(seconds) as scope:
        yield
    if scope.cancelled_caught:
        raise httpx.ReadTimeout("the relay's app did not answer in time")
