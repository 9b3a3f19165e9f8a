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

import collections
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
from .transport import unreachable

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
#: An uplink request opened ahead of its batch (see :class:`_Spare`) that no batch took
#: within this long is closed with an empty one: proxies cut a request that sends nothing
#: for a minute, and an idle daemon keeps none open.
SPARE_IDLE = 30.0
#: Batches a spare request carries at most (the relay takes 1000).
_MAX_FRAMES = 200


@attrs.define(eq=False)
class _Spare(httpx.AsyncByteStream):
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
    on_idle: Callable[[_Spare], None]
    on_closed: Callable[[_Spare], None]
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    #: The link token the request carries.
    token: str | None = None
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
            and self._added < _MAX_FRAMES
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

    def __aiter__(self) -> _Spare:
        return self

    async def __anext__(self) -> bytes:
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
    #: Where spare uplink requests run (see :meth:`run`); None: every batch opens its own.
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    #: How long a spare request keeps taking batches after its first (see :class:`_Spare`).
    uplink_linger: float = 0.025
    _spare: _Spare | None = attrs.field(default=None, init=False)
    #: The spare request carrying batches now, while it takes more.
    _lingering: _Spare | None = attrs.field(default=None, init=False)
    _spares_used: int = attrs.field(default=0, init=False)
    #: Directive acks riding on uplink requests (see :meth:`carry_acks`).
    _applied: Callable[[], int] | None = attrs.field(default=None, init=False)
    _on_directives_acked: Callable[[int], None] = attrs.field(
        default=lambda through: None, init=False
    )
    _directives_acked: int = attrs.field(default=0, init=False)
    #: The highest ack an uplink request in flight carries (0: none).
    _ack_in_flight: int = attrs.field(default=0, init=False)
    #: See :meth:`link_renew_at`.
    _downlink_renew_at: float = attrs.field(default=float("inf"), init=False)

    @property
    def uplink_requests(self) -> int:
        """Uplink requests sent so far (each may carry several sessions' events)."""
        return self._uplink_requests

    @property
    def spares_used(self) -> int:
        """Uplink batches sent on a request opened ahead of them."""
        return self._spares_used

    @property
    def directives_acked(self) -> int:
        """The highest dseq the relay confirmed as applied (by an ack or an uplink)."""
        return self._directives_acked

    def carry_acks(self, applied: Callable[[], int], on_acked: Callable[[int], None]) -> None:
        """Let uplink requests carry the ack of what ``applied()`` says the daemon applied;
        ``on_acked(through)`` runs once the relay confirmed it (by either route)."""
        self._applied = applied
        self._on_directives_acked = on_acked

    def _ack_to_carry(self) -> int | None:
        """The ack for the next uplink request, unless one in flight carries it already."""
        through = self._applied() if self._applied is not None else 0
        if through <= max(self._directives_acked, self._ack_in_flight):
            return None
        self._ack_in_flight = through
        return through

    def _directives_confirmed(self, through: int | None) -> None:
        if through is not None and through > self._directives_acked:
            self._directives_acked = through
            self._on_directives_acked(through)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep an uplink request open ahead of the next batch while events flow (see
        :class:`_Spare`), until cancelled. Without it every batch opens its own request."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._spare = None

    @property
    def tokens_minted(self) -> int:
        """Access tokens minted so far (each one request to the relay)."""
        return self._minted

    def link_renew_at(self) -> float:
        """When (``trio.current_time()``) the newest open downlink should be renewed: when
        the link token it was opened with is due for renewal (the relay ends a downlink
        once its token expires). ``inf`` before any downlink opened."""
        return self._downlink_renew_at

    def forget_session(self, session_id: str) -> None:
        """Drop a session's token once nothing more will be sent for it."""
        self._tokens.pop(session_id, None)
        self._minting.pop(session_id, None)

    async def _token(self, scope: str | None) -> str:
        return (await self._fresh_token(scope)).value

    async def _fresh_token(self, scope: str | None) -> _Token:
        token = self._tokens.get(scope)
        if token is not None and trio.current_time() < token.renew_at:
            return token
        lock = self._minting.setdefault(scope, trio.Lock())
        async with lock:
            # Whoever held the lock may have minted it already.
            token = self._tokens.get(scope)
            if token is not None and trio.current_time() < token.renew_at:
                return token
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
            token = self._tokens[scope] = _Token(
                minted.token, asked_at + RENEW_AFTER * max(0.0, minted.expires_in)
            )
            return token

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
            raise unreachable(self.relay, exc, str(exc) or type(exc).__name__) from exc
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

    async def post_events(
        self,
        session_id: str,
        events: list[wire.Event],
        on_queued: Callable[[], None] = lambda: None,
    ) -> int:
        """Upload a batch; returns the highest contiguous seq the relay holds.

        While earlier uplink requests are in flight, batches of other sessions wait and
        then go out together in one request (and one transaction on the relay): under load
        the number of requests stays flat while the number of busy sessions grows.
        ``on_queued`` is called once the batch has its place among the batches to send
        (a batch posted after that one goes after it, on the same request or a later one).
        """
        token = await self._token(session_id)
        try:
            return await self._submit(_Part(session_id, token, events), on_queued)
        except RelayRejected as exc:
            if exc.status != 401 or exc.code not in _TOKEN_CODES:
                raise
            log.info("token_refresh", scope="session", code=exc.code)
            self._drop(session_id, token)
        part = _Part(session_id, await self._token(session_id), events)
        return await self._submit(part, on_queued)

    async def _submit(self, part: _Part, on_queued: Callable[[], None]) -> int:
        self._queued.append(part)
        on_queued()
        try:
            while not part.done.is_set():
                if not part.sent and (
                    self._in_flight < self.uplink_parallel or self._joinable() is not None
                ):
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
        # A spare request still taking batches carries this one too; else the open spare
        # (a new request in flight), else a request of its own.
        ack: int | None = None
        spare = self._joinable()
        joined = spare is not None
        if not joined:
            spare = self._take_spare()
            self._in_flight += 1
            self._uplink_requests += 1
        try:
            if len(batch) == 1 and spare is None:
                # Alone and nothing open: the session's own route (no ownership lookup).
                [part] = batch
                data = await self._call(
                    "POST",
                    f"/daemon/v1/sessions/{part.session_id}/events",
                    wire.EventBatch(events=part.events),
                    bearer=part.token,
                )
                part.result = wire.decode(wire.UplinkAck, data).acked
            else:
                ack = self._ack_to_carry()
                request = wire.UplinkRequest(
                    sessions=[
                        wire.SessionEvents(session_id=p.session_id, token=p.token, events=p.events)
                        for p in batch
                    ],
                    ack=ack,
                )
                answer = await self._uplink(request, spare)
                self._directives_confirmed(ack)
                for part, result in zip(batch, answer.sessions, strict=True):
                    if result.acked is not None:
                        part.result = result.acked
                    else:
                        part.result = RelayRejected(
                            result.status or 400, result.code or "rejected", result.message or ""
                        )
        except DaemonError as exc:
            for part in batch:
                part.result = exc
        except (wire.DecodeError, ValueError, IndexError) as exc:
            for part in batch:
                part.result = RelayRejected(502, "bad_response", f"unreadable answer: {exc}")
        finally:
            if ack is not None and self._directives_acked < ack:
                self._ack_in_flight = 0  # not confirmed: the next request carries it again
            if not joined:
                self._in_flight -= 1
            self._open_spare()
            for part in batch:
                if part.result is None:
                    part.result = RelayUnreachable(self.relay, "the request was cancelled")
                part.done.set()
            self._slot_free.set()
            self._slot_free = trio.Event()

    def takes_batches(self) -> bool:
        """Whether a batch posted now rides an uplink request that is still taking batches,
        as a frame behind those already on it: it costs no request of its own and reaches
        the relay after them (after those on other requests too, unless one of those
        failed and goes again)."""
        return self._joinable() is not None

    def _joinable(self) -> _Spare | None:
        """The spare request that carries batches now and still takes more, if any."""
        spare = self._lingering
        return spare if spare is not None and spare.accepting() else None

    def _take_spare(self) -> _Spare | None:
        """The open spare request for a batch about to go, if there is one."""
        spare, self._spare = self._spare, None
        if spare is not None:
            self._lingering = spare
        return spare

    def _open_spare(self) -> None:
        """Open a spare request for the next batch, unless one is open. Called once a
        batch's answer is in, or a spare stopped taking batches: opening it while a batch
        goes would put its CPU (in the daemon and in the relay) on that batch's path."""
        if self._spare is None and self._nursery is not None and self.environment_id:
            self._spare = _Spare(
                linger=self.uplink_linger, on_idle=self._withdraw, on_closed=self._window_over
            )
            self._nursery.start_soon(self._run_spare, self._spare)

    def _withdraw(self, spare: _Spare) -> None:
        if self._spare is spare:
            self._spare = None

    def _window_over(self, spare: _Spare) -> None:
        if self._lingering is spare:
            self._lingering = None
            self._open_spare()

    async def _run_spare(self, spare: _Spare) -> None:
        path = f"/daemon/v1/environments/{self.environment_id}/uplink"
        with spare.scope:
            try:
                spare.token = await self._token(None)
                request = self.http.build_request(
                    "POST",
                    self.relay + path,
                    headers={
                        "Content-Type": wire.UPLINK_FRAMES_TYPE,
                        "Authorization": f"Bearer {spare.token}",
                        "Transfer-Encoding": "chunked",
                    },
                )
                request.stream = spare
                spare.response = await self.http.send(request)
            except (httpx.TransportError, DaemonError) as exc:
                spare.error = exc
            finally:
                self._withdraw(spare)
                if self._lingering is spare:
                    self._lingering = None
                spare.done.set()

    async def _uplink(
        self, request: wire.UplinkRequest, spare: _Spare | None
    ) -> wire.UplinkResponse:
        """``POST .../uplink``: on ``spare`` when there is one, else a request of its own
        (also when the spare's connection had gone, or its token had expired)."""
        path = f"/daemon/v1/environments/{self.environment_id}/uplink"
        if spare is not None:
            index = spare.add(wire.encode_json(request).encode())
            with trio.move_on_after(self.timeout):
                await spare.done.wait()
            if not spare.done.is_set():
                spare.scope.cancel()
                raise RelayUnreachable(self.relay, f"POST {path} took over {self.timeout}s")
            if spare.response is not None:
                try:
                    _raise_for_error(spare.response)
                    answer = spare.answer(index)
                    self._spares_used += 1
                    return answer
                except RelayRejected as exc:
                    if exc.status != 401 or exc.code not in _TOKEN_CODES:
                        raise
                    if spare.token is not None:
                        self._drop(None, spare.token)
            else:
                log.debug("spare_failed", error=str(spare.error))
        data = await self._scoped(None, "POST", path, request)
        return wire.decode(wire.UplinkResponse, data)

    async def ack(self, environment_id: str, through: int) -> None:
        await self._scoped(
            None,
            "POST",
            f"/daemon/v1/environments/{environment_id}/ack",
            wire.Ack(through=through),
        )
        self._directives_confirmed(through)

    async def goodbye(self, environment_id: str) -> None:
        await self._scoped(None, "POST", f"/daemon/v1/environments/{environment_id}/goodbye")

    async def downlink(
        self, environment_id: str, after: int, on_open: Callable[[], None] = lambda: None
    ) -> AsyncGenerator[tuple[int, wire.Directive], None]:
        """Yield ``(dseq, directive)`` from the environment's stream, after ``after``.

        Returns when the relay ends the stream (e.g. a newer link replaced this one);
        raises :class:`RelayUnreachable` when the connection fails or goes silent.
        ``on_open`` is called once the relay has accepted the stream (:meth:`link_renew_at`
        then says when to open its successor). A keep-alive is never a directive; a
        directive that does not decode is logged and skipped: it can never be applied.
        """
        url = f"{self.relay}/daemon/v1/environments/{environment_id}/downlink"
        timeout = httpx.Timeout(self.timeout, read=DOWNLINK_READ_TIMEOUT)
        try:
            for attempt in range(2):
                link_token = await self._fresh_token(None)
                token = link_token.value
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
                    self._downlink_renew_at = link_token.renew_at
                    on_open()
                    async with aclosing(source.aiter_sse()) as stream:
                        async for sse in stream:
                            if not sse.data:
                                # Not a message: a keep-alive comment, which httpx-sse
                                # hands over as an empty event carrying the stream's last
                                # id (the SSE spec dispatches no event without data).
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
            raise unreachable(self.relay, exc, str(exc) or type(exc).__name__) from exc


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
