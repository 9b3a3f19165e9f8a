"""``RelayClient``: the daemon's side of the relay protocol (see :mod:`wire.protocol`)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

import attrs
import httpx
import trio

import wire

from .calls import Calls
from .downlink import directives
from .spare import Spare
from .tokens import Bearer, Token, TokenAuth, Tokens
from .uplink_requests import UplinkRequests

__all__ = ["RelayClient"]


@attrs.define(eq=False)
class RelayClient:
    """Every call the daemon makes to ``relay``, over the one injected ``http`` client;
    errors are :mod:`daemon.errors`. See :mod:`daemon.relay_client` for the credentials."""

    http: httpx.AsyncClient
    relay: str
    credential: str | None = None
    #: Seconds a call may take (a downlink: to open).
    timeout: float = 15.0
    #: Set by :meth:`register`; tokens are minted for this environment.
    environment_id: str | None = None
    #: The relay keeps environments' settings (its registration answer said so).
    takes_settings: bool = attrs.field(default=False, init=False)
    #: ... and approval grants in their settings and in ``permission_resolved``.
    takes_grants: bool = attrs.field(default=False, init=False)
    #: ... and the agents sessions may ask for.
    takes_agents: bool = attrs.field(default=False, init=False)
    _calls: Calls = attrs.field(init=False)
    _tokens: Tokens = attrs.field(init=False)
    _uplink: UplinkRequests = attrs.field(init=False)
    #: See :meth:`link_renew_at`.
    _downlink_renew_at: float = attrs.field(default=float("inf"), init=False)

    def __attrs_post_init__(self) -> None:
        self._calls = Calls(self.http, self.relay, self.timeout)
        self._tokens = Tokens(self._mint)
        self._uplink = UplinkRequests(self._calls, self._tokens, lambda: self.environment_id)

    @property
    def uplink_parallel(self) -> int:
        """Uplink requests in flight at once; events that come up meanwhile go out together."""
        return self._uplink.parallel

    @uplink_parallel.setter
    def uplink_parallel(self, value: int) -> None:
        self._uplink.parallel = value

    @property
    def uplink_linger(self) -> float:
        """How long an uplink request opened ahead keeps taking batches after its first."""
        return self._uplink.linger

    @uplink_linger.setter
    def uplink_linger(self, value: float) -> None:
        self._uplink.linger = value

    @property
    def uplink_requests(self) -> int:
        """Uplink requests sent so far (each may carry several sessions' events)."""
        return self._uplink.requests

    @property
    def spares_used(self) -> int:
        """Uplink batches sent on a request opened ahead of them."""
        return self._uplink.spares_used

    @property
    def spare_request(self) -> Spare | None:
        """The uplink request open ahead of the next batch, if there is one (its
        ``head_sent`` says when a batch posted costs only a write; ``done``, when it ends)."""
        return self._uplink.spare

    @property
    def directives_acked(self) -> int:
        """The highest dseq the relay confirmed as applied (by an ack or an uplink)."""
        return self._uplink.directives_acked

    @property
    def directives_ack_riding(self) -> int:
        """The highest ack an uplink request in flight carries, not yet confirmed (0:
        none): confirmed (or failed) when that request's answer comes."""
        return self._uplink.directives_ack_riding

    @property
    def tokens_minted(self) -> int:
        """Access tokens minted so far (each one request to the relay)."""
        return self._tokens.minted

    def carry_acks(self, applied: Callable[[], int], on_acked: Callable[[int], None]) -> None:
        """Let uplink requests carry the ack of what ``applied()`` says the daemon applied;
        ``on_acked(through)`` runs once the relay confirmed it (by either route)."""
        self._uplink.carry_acks(applied, on_acked)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep an uplink request open ahead of the next batch while events flow, until
        cancelled. Without it every batch opens its own request."""
        await self._uplink.run(task_status=task_status)

    def link_renew_at(self) -> float:
        """When (``trio.current_time()``) the newest open downlink should be renewed: when
        the link token it was opened with is due for renewal (the relay ends a downlink
        once its token expires). ``inf`` before any downlink opened."""
        return self._downlink_renew_at

    def forget_session(self, session_id: str) -> None:
        """Drop a session's token once nothing more will be sent for it."""
        self._tokens.forget(session_id)

    def _credential(self) -> Bearer | None:
        return Bearer(self.credential) if self.credential else None

    async def _mint(self, scope: str | None) -> wire.AccessToken:
        if self.environment_id is None:
            raise RuntimeError("register before asking for access tokens")
        data = await self._calls.call(
            "POST",
            f"/daemon/v1/environments/{self.environment_id}/tokens",
            wire.TokenRequest(session_id=scope),
            auth=self._credential(),
        )
        minted: wire.AccessToken = wire.decode(wire.AccessToken, data)
        return minted

    async def pair(self, code: str, machine: str) -> str:
        data = await self._calls.call(
            "POST", "/daemon/v1/pair", wire.PairRequest(code=code, machine=machine), auth=None
        )
        return wire.decode(wire.PairResponse, data).credential

    async def register(self, request: wire.RegisterRequest) -> wire.RegisterResponse:
        def features(response: httpx.Response) -> None:
            listed = response.headers.get(wire.FEATURES_HEADER, "")
            features = listed.replace(" ", "").split(",")
            self._uplink.takes_partials = "partials" in features
            self.takes_settings = "settings" in features
            self.takes_grants = "grants" in features
            self.takes_agents = "agents" in features

        data = await self._calls.call(
            "POST",
            "/daemon/v1/register",
            request,
            auth=self._credential(),
            on_answer=features,
            # In a header, which a relay of before it leaves unread (the body's keys it
            # would refuse).
            headers={wire.FEATURES_HEADER: ", ".join(wire.DAEMON_FEATURES)},
        )
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
        return await self._uplink.post(session_id, events, on_queued)

    async def post_partials(self, pieces: list[tuple[str, wire.AssistantPartial]]) -> None:
        """Send replies being written (``(session id, partial)``; see :mod:`wire.partial`):
        on the uplink request open now if there is one, else on one of their own. Nothing
        is answered for them; raises ``DaemonError`` when they could not go."""
        await self._uplink.post_partials(pieces)

    def takes_batches(self) -> bool:
        """Whether a batch posted now rides an uplink request that is still taking batches,
        as a frame behind those already on it: it costs no request of its own and reaches
        the relay after them (after those on other requests too, unless one of those
        failed and goes again)."""
        return self._uplink.takes_batches()

    async def ack(self, environment_id: str, through: int) -> None:
        await self._calls.call(
            "POST",
            f"/daemon/v1/environments/{environment_id}/ack",
            wire.Ack(through=through),
            auth=TokenAuth(self._tokens, None),
        )
        self._uplink.directives_confirmed(through)

    async def post_settings(self, view: wire.SettingsView) -> None:
        """Report the settings that apply (to a relay whose registration answer listed
        ``settings``: :attr:`takes_settings`)."""
        await self._calls.call(
            "POST",
            f"/daemon/v1/environments/{self.environment_id}/settings",
            view,
            auth=TokenAuth(self._tokens, None),
        )

    async def post_answer(self, answer: wire.WorkspaceAnswer) -> None:
        """Answer a :class:`wire.WorkspaceRequest` (the relay hands it to the client)."""
        await self._calls.call(
            "POST",
            f"/daemon/v1/environments/{self.environment_id}/answers",
            answer,
            auth=TokenAuth(self._tokens, None),
        )

    async def goodbye(self, environment_id: str) -> None:
        await self._calls.call(
            "POST",
            f"/daemon/v1/environments/{environment_id}/goodbye",
            auth=TokenAuth(self._tokens, None),
        )

    def downlink(
        self,
        environment_id: str,
        after: int,
        on_open: Callable[[], None] = lambda: None,
        on_keepalive: Callable[[], None] = lambda: None,
    ) -> AsyncGenerator[tuple[int, wire.Directive], None]:
        """Yield ``(dseq, directive)`` from the environment's stream, after ``after``.

        Returns when the relay ends the stream (e.g. a newer link replaced this one);
        raises :class:`RelayUnreachable` when the connection fails or goes silent.
        ``on_open`` is called once the relay has accepted the stream (:meth:`link_renew_at`
        then says when to open its successor). A keep-alive is never a directive
        (``on_keepalive`` is called for each); a directive that does not decode is logged
        and skipped: it can never be applied.
        """

        def opened(token: Token) -> None:
            self._downlink_renew_at = token.renew_at
            self._uplink.downlink_opened()
            on_open()

        return directives(
            self._calls,
            self._tokens,
            environment_id,
            after,
            opened,
            on_keepalive,
            on_uplink_answer=self._uplink.downlink_answer,
            on_close=self._uplink.downlink_closed,
        )
