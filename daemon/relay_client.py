"""The daemon's side of the relay protocol (see :mod:`wire.protocol`), over one injected
``httpx.AsyncClient``. Every call is outbound; errors become :mod:`daemon.errors`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import attrs
import httpx
import structlog
import trio
from httpx_sse import SSEError, aconnect_sse

import wire

from .errors import RelayRejected, RelayUnreachable

__all__ = ["RelayClient"]

log = structlog.get_logger("daemon.relay")

#: The relay sends a keep-alive at least every 15 s; three missed ones mean the link is dead
#: even if TCP has not noticed (a half-open connection after sleep or a NAT drop).
DOWNLINK_READ_TIMEOUT = 45.0


@attrs.define(eq=False)
class RelayClient:
    http: httpx.AsyncClient
    relay: str
    credential: str | None = None
    timeout: float = 15.0

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"} if self.credential else {}

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        url = self.relay + path
        try:
            with trio.fail_after(self.timeout):
                response = await self.http.request(
                    method,
                    url,
                    content=None if body is None else wire.encode_json(body),
                    headers={**self._headers(), "Content-Type": "application/json"},
                )
        except trio.TooSlowError:
            raise RelayUnreachable(
                self.relay, f"{method} {path} took over {self.timeout}s"
            ) from None
        except httpx.TransportError as exc:
            raise RelayUnreachable(self.relay, str(exc) or type(exc).__name__) from exc
        _raise_for_error(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def pair(self, code: str, machine: str) -> str:
        data = await self._call(
            "POST", "/daemon/v1/pair", wire.PairRequest(code=code, machine=machine)
        )
        return wire.decode(wire.PairResponse, data).credential

    async def register(self, request: wire.RegisterRequest) -> wire.RegisterResponse:
        data = await self._call("POST", "/daemon/v1/register", request)
        return wire.decode(wire.RegisterResponse, data)

    async def post_events(self, session_id: str, events: list[wire.Event]) -> int:
        """Upload a batch; returns the highest contiguous seq the relay holds."""
        data = await self._call(
            "POST", f"/daemon/v1/sessions/{session_id}/events", wire.EventBatch(events=events)
        )
        return wire.decode(wire.UplinkAck, data).acked

    async def ack(self, environment_id: str, through: int) -> None:
        await self._call(
            "POST", f"/daemon/v1/environments/{environment_id}/ack", wire.Ack(through=through)
        )

    async def goodbye(self, environment_id: str) -> None:
        await self._call("POST", f"/daemon/v1/environments/{environment_id}/goodbye")

    async def downlink(
        self, environment_id: str, after: int, on_open: Callable[[], None] = lambda: None
    ) -> AsyncIterator[tuple[int, wire.Directive]]:
        """Yield ``(dseq, directive)`` from the environment's stream, after ``after``.

        Returns when the relay ends the stream (e.g. a newer link replaced this one);
        raises :class:`RelayUnreachable` when the connection fails or goes silent.
        ``on_open`` is called once the relay has accepted the stream.
        A directive that does not decode is logged and skipped: it can never be applied.
        """
        url = f"{self.relay}/daemon/v1/environments/{environment_id}/downlink"
        headers = {**self._headers(), "Last-Event-ID": str(after)}
        timeout = httpx.Timeout(self.timeout, read=DOWNLINK_READ_TIMEOUT)
        try:
            async with aconnect_sse(
                self.http, "GET", url, headers=headers, timeout=timeout
            ) as source:
                if source.response.status_code >= 400:
                    await source.response.aread()
                    _raise_for_error(source.response)
                on_open()
                async with aclosing(source.aiter_sse()) as stream:
                    async for sse in stream:
                        if not sse.id:
                            continue
                        try:
                            dseq = int(sse.id)
                            directive: wire.Directive = wire.decode_json(wire.Directive, sse.data)
                        except (ValueError, wire.DecodeError) as exc:
                            log.error("bad_directive", id=sse.id, problem=str(exc))
                            continue
                        yield dseq, directive
        except (httpx.TransportError, SSEError) as exc:
            raise RelayUnreachable(self.relay, str(exc) or type(exc).__name__) from exc


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    code, message = "http_error", response.reason_phrase or "error"
    try:
        body = response.json()
        code = str(body["error"]["code"])
        message = str(body["error"]["message"])
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
        pass
    raise RelayRejected(response.status_code, code, message)
