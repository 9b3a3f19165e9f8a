"""The daemon's side of the relay protocol (see :mod:`wire.protocol`), over one injected
``httpx.AsyncClient``. Every call is outbound; errors become :mod:`daemon.errors`.

Credentials: the long-lived environment credential is sent only to register and to mint
access tokens. Everything else carries a short-lived access token: the *link* token for the
downlink, acks and goodbye, and one *session* token per session for its events. Tokens are
minted on first use, renewed once 80 % of their life has passed, and a 401 on a token
(expired, or unknown after a relay restart) mints a new one and retries once. A 401 on the
credential itself means it was revoked: that :class:`RelayRejected` is final.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

import attrs
import httpx
import structlog
import trio
from httpx_sse import SSEError, aconnect_sse

import wire

from .errors import DaemonError, RelayRejected, RelayUnreachable

__all__ = ["RENEW_AFTER", "RelayClient"]

log = structlog.get_logger("daemon.relay")

#: The relay sends a keep-alive at least every 15 s; three missed ones mean the link is dead
#: even if TCP has not noticed (a half-open connection after sleep or a NAT drop).
DOWNLINK_READ_TIMEOUT = 45.0
#: A token is renewed once this share of its lifetime has passed.
RENEW_AFTER = 0.8
#: 401 codes that a fresh access token cures.
_TOKEN_CODES = frozenset({"token_expired", "invalid_token"})


#: Events in one uplink request at most (the relay's limit).
_MAX_EVENTS = 1000


@attrs.define(eq=False)
class _Part:
    """One session's events waiting to go up, alone or with other sessions' events."""

    session_id: str
    token: str
    events: list[wire.Event]
    sent: bool = False
    result: int | DaemonError | None = None
    done: trio.Event = attrs.Factory(trio.Event)


@attrs.frozen
class _Token:
    value: str
    #: ``trio.current_time()`` after which the token is renewed before use.
    renew_at: float


@attrs.define(eq=False)
class RelayClient:
    http: httpx.AsyncClient
    relay: str
    credential: str | None = None
    timeout: float = 15.0
    #: Set by :meth:`register`; tokens are minted for this environment.
    environment_id: str | None = None
    #: Access tokens by scope: None for the link, else a session id.
    _tokens: dict[str | None, _Token] = attrs.field(factory=dict, init=False)
    _minting: dict[str | None, trio.Lock] = attrs.field(factory=dict, init=False)
    _minted: int = attrs.field(default=0, init=False)
    #: Uplink requests in flight at once; events that come up meanwhile go out together.
    uplink_parallel: int = 2
    _queued: list[_Part] = attrs.field(factory=list, init=False)
    _in_flight: int = attrs.field(default=0, init=False)
    _slot_free: trio.Event = attrs.field(factory=trio.Event, init=False)
    _uplink_requests: int = attrs.field(default=0, init=False)

    @property
    def uplink_requests(self) -> int:
        """Uplink requests sent so far (each may carry several sessions' events)."""
        return self._uplink_requests

    @property
    def tokens_minted(self) -> int:
        """Access tokens minted so far (each one request to the relay)."""
        return self._minted

    def link_renew_at(self) -> float:
        """When (``trio.current_time()``) the link token in use should be renewed."""
        token = self._tokens.get(None)
        return token.renew_at if token else float("inf")

    def forget_session(self, session_id: str) -> None:
        """Drop a session's token once nothing more will be sent for it."""
        self._tokens.pop(session_id, None)
        self._minting.pop(session_id, None)

    async def _token(self, scope: str | None) -> str:
        token = self._tokens.get(scope)
        if token is not None and trio.current_time() < token.renew_at:
            return token.value
        lock = self._minting.setdefault(scope, trio.Lock())
        async with lock:
            # Whoever held the lock may have minted it already.
            token = self._tokens.get(scope)
            if token is not None and trio.current_time() < token.renew_at:
                return token.value
            if self.environment_id is None:
                raise RuntimeError("register before asking for access tokens")
            asked_at = trio.current_time()
            data = await self._call(
                "POST",
                f"/daemon/v1/environments/{self.environment_id}/tokens",
                wire.TokenRequest(session_id=scope),
                bearer=self.credential,
            )
            minted: wire.AccessToken = wire.decode(wire.AccessToken, data)
            self._minted += 1
            self._tokens[scope] = _Token(
                minted.token, asked_at + RENEW_AFTER * max(0.0, minted.expires_in)
            )
            return minted.token

    def _drop(self, scope: str | None, value: str) -> None:
        token = self._tokens.get(scope)
        if token is not None and token.value == value:
            del self._tokens[scope]

    async def _scoped(self, scope: str | None, method: str, path: str, body: Any = None) -> Any:
        """A call with the scope's access token; one fresh token and retry on a token 401."""
        token = await self._token(scope)
        try:
            return await self._call(method, path, body, bearer=token)
        except RelayRejected as exc:
            if exc.status != 401 or exc.code not in _TOKEN_CODES:
                raise
            log.info("token_refresh", scope="link" if scope is None else "session", code=exc.code)
            self._drop(scope, token)
        return await self._call(method, path, body, bearer=await self._token(scope))

    async def _call(self, method: str, path: str, body: Any = None, *, bearer: str | None) -> Any:
        url = self.relay + path
        headers = {"Content-Type": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            with trio.fail_after(self.timeout):
                response = await self.http.request(
                    method,
                    url,
                    content=None if body is None else wire.encode_json(body),
                    headers=headers,
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
            "POST", "/daemon/v1/pair", wire.PairRequest(code=code, machine=machine), bearer=None
        )
        return wire.decode(wire.PairResponse, data).credential

    async def register(self, request: wire.RegisterRequest) -> wire.RegisterResponse:
        data = await self._call("POST", "/daemon/v1/register", request, bearer=self.credential)
        registration: wire.RegisterResponse = wire.decode(wire.RegisterResponse, data)
        if registration.environment_id != self.environment_id:
            self._tokens.clear()
            self.environment_id = registration.environment_id
        return registration

    async def post_events(self, session_id: str, events: list[wire.Event]) -> int:
        """Upload a batch; returns the highest contiguous seq the relay holds.

        While earlier uplink requests are in flight, batches of other sessions wait and
        then go out together in one request (and one transaction on the relay): under load
        the number of requests stays flat while the number of busy sessions grows.
        """
        token = await self._token(session_id)
        try:
            return await self._submit(_Part(session_id, token, events))
        except RelayRejected as exc:
            if exc.status != 401 or exc.code not in _TOKEN_CODES:
                raise
            log.info("token_refresh", scope="session", code=exc.code)
            self._drop(session_id, token)
        return await self._submit(_Part(session_id, await self._token(session_id), events))

    async def _submit(self, part: _Part) -> int:
        self._queued.append(part)
        try:
            while not part.done.is_set():
                if not part.sent and self._in_flight < self.uplink_parallel:
                    await self._send_queued()
                elif not part.sent:
                    await self._slot_free.wait()
                else:
                    await part.done.wait()
        finally:
            if not part.sent:
                self._queued.remove(part)
        if isinstance(part.result, DaemonError):
            raise part.result
        assert part.result is not None
        return part.result

    async def _send_queued(self) -> None:
        batch: list[_Part] = []
        total = 0
        while self._queued and (not batch or total + len(self._queued[0].events) <= _MAX_EVENTS):
            part = self._queued.pop(0)
            part.sent = True
            batch.append(part)
            total += len(part.events)
        self._in_flight += 1
        self._uplink_requests += 1
        try:
            if len(batch) == 1:
                [part] = batch
                data = await self._call(
                    "POST",
                    f"/daemon/v1/sessions/{part.session_id}/events",
                    wire.EventBatch(events=part.events),
                    bearer=part.token,
                )
                part.result = wire.decode(wire.UplinkAck, data).acked
            else:
                data = await self._scoped(
                    None,
                    "POST",
                    f"/daemon/v1/environments/{self.environment_id}/uplink",
                    wire.UplinkRequest(
                        sessions=[
                            wire.SessionEvents(
                                session_id=p.session_id, token=p.token, events=p.events
                            )
                            for p in batch
                        ]
                    ),
                )
                answer: wire.UplinkResponse = wire.decode(wire.UplinkResponse, data)
                for part, ack in zip(batch, answer.sessions, strict=True):
                    if ack.acked is not None:
                        part.result = ack.acked
                    else:
                        part.result = RelayRejected(
                            ack.status or 400, ack.code or "rejected", ack.message or ""
                        )
        except DaemonError as exc:
            for part in batch:
                part.result = exc
        except (wire.DecodeError, ValueError) as exc:
            for part in batch:
                part.result = RelayRejected(502, "bad_response", f"unreadable answer: {exc}")
        finally:
            self._in_flight -= 1
            for part in batch:
                if part.result is None:
                    part.result = RelayUnreachable(self.relay, "the request was cancelled")
                part.done.set()
            self._slot_free.set()
            self._slot_free = trio.Event()

    async def ack(self, environment_id: str, through: int) -> None:
        await self._scoped(
            None,
            "POST",
            f"/daemon/v1/environments/{environment_id}/ack",
            wire.Ack(through=through),
        )

    async def goodbye(self, environment_id: str) -> None:
        await self._scoped(None, "POST", f"/daemon/v1/environments/{environment_id}/goodbye")

    async def downlink(
        self, environment_id: str, after: int, on_open: Callable[[], None] = lambda: None
    ) -> AsyncGenerator[tuple[int, wire.Directive], None]:
        """Yield ``(dseq, directive)`` from the environment's stream, after ``after``.

        Returns when the relay ends the stream (e.g. a newer link replaced this one);
        raises :class:`RelayUnreachable` when the connection fails or goes silent.
        ``on_open`` is called once the relay has accepted the stream.
        A directive that does not decode is logged and skipped: it can never be applied.
        """
        url = f"{self.relay}/daemon/v1/environments/{environment_id}/downlink"
        timeout = httpx.Timeout(self.timeout, read=DOWNLINK_READ_TIMEOUT)
        try:
            for attempt in range(2):
                token = await self._token(None)
                headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": str(after)}
                async with aconnect_sse(
                    self.http, "GET", url, headers=headers, timeout=timeout
                ) as source:
                    if source.response.status_code >= 400:
                        await source.response.aread()
                        try:
                            _raise_for_error(source.response)
                        except RelayRejected as exc:
                            if attempt or exc.status != 401 or exc.code not in _TOKEN_CODES:
                                raise
                            self._drop(None, token)
                            continue
                    on_open()
                    async with aclosing(source.aiter_sse()) as stream:
                        async for sse in stream:
                            if not sse.id:
                                continue
                            try:
                                dseq = int(sse.id)
                                directive: wire.Directive = wire.decode_json(
                                    wire.Directive, sse.data
                                )
                            except (ValueError, wire.DecodeError) as exc:
                                log.error("bad_directive", id=sse.id, problem=str(exc))
                                continue
                            yield dseq, directive
                    return
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
