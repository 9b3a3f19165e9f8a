"""The uplink transport: sessions' event batches on as few requests as keep them moving.

While earlier uplink requests are in flight, batches of other sessions wait and then go out
together in one request (and one transaction on the relay): under load the number of
requests stays flat while the number of busy sessions grows. A batch alone, with nothing
open, goes on its session's own route; otherwise on an uplink request, preferably one
already open (a :class:`~.spare.Spare`). Uplink requests also carry the ack of the
directives applied, when one is due.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import httpx
import structlog
import trio

import wire

from ..errors import DaemonError, RelayRejected, RelayUnreachable
from .calls import Calls, is_stale_token, raise_for_error
from .spare import Spare
from .tokens import Bearer, TokenAuth, Tokens

__all__ = ["UplinkRequests"]

log = structlog.get_logger("daemon.relay")


@attrs.define(eq=False)
class _Part:
    """One session's events waiting to go up, alone or with other sessions' events."""

    session_id: str
    token: str
    events: list[wire.Event]
    sent: bool = False
    result: int | DaemonError | None = None
    done: trio.Event = attrs.Factory(trio.Event)


@attrs.define(eq=False)
class UplinkRequests:
    calls: Calls
    tokens: Tokens
    #: The registered environment's id (None before registration).
    environment_id: Callable[[], str | None]
    #: Uplink requests in flight at once; events that come up meanwhile go out together.
    parallel: int = 2
    #: How long a spare request keeps taking batches after its first (see :class:`Spare`).
    linger: float = 0.025
    #: Uplink requests sent so far (each may carry several sessions' events).
    requests: int = attrs.field(default=0, init=False)
    #: Uplink batches sent on a request opened ahead of them.
    spares_used: int = attrs.field(default=0, init=False)
    #: The highest dseq the relay confirmed as applied (by an ack or an uplink).
    directives_acked: int = attrs.field(default=0, init=False)
    _queued: list[_Part] = attrs.field(factory=list, init=False)
    _in_flight: int = attrs.field(default=0, init=False)
    _slot_free: trio.Event = attrs.field(factory=trio.Event, init=False)
    #: Where spare uplink requests run (see :meth:`run`); None: every batch opens its own.
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    _spare: Spare | None = attrs.field(default=None, init=False)
    #: The spare request carrying batches now, while it takes more.
    _lingering: Spare | None = attrs.field(default=None, init=False)
    #: Directive acks riding on uplink requests (see :meth:`carry_acks`).
    _applied: Callable[[], int] | None = attrs.field(default=None, init=False)
    _on_directives_acked: Callable[[int], None] = attrs.field(
        default=lambda through: None, init=False
    )
    #: The highest ack an uplink request in flight carries (0: none).
    _ack_in_flight: int = attrs.field(default=0, init=False)
    #: Downlinks open now (two overlap while one is renewed).
    _downlinks: int = attrs.field(default=0, init=False)
    #: The relay answered a frame on the open downlink: new requests start long.
    _downlink_answers: bool = attrs.field(default=False, init=False)
    #: Requests that asked for their answers on the downlink, by stream name.
    _streams: dict[str, Spare] = attrs.field(factory=dict, init=False)
    #: The relay takes replies being written (its registration answer said so).
    takes_partials: bool = attrs.field(default=False, init=False)

    def downlink_opened(self) -> None:
        """A downlink is open: uplink requests opened from now on ask for their answers
        on it (see :class:`Spare`)."""
        self._downlinks += 1

    def downlink_closed(self) -> None:
        """A downlink ended. Once none is open, requests that asked for answers on it
        take no more batches, and their answers come with their responses."""
        self._downlinks = max(0, self._downlinks - 1)
        if self._downlinks:
            return
        self._downlink_answers = False
        for spare in self._streams.values():
            spare.finish()

    def downlink_answer(self, ack: wire.UplinkFrameAck) -> None:
        """The relay's answer to a frame, from the downlink."""
        if not self._downlink_answers:
            # The relay answers there: requests open now may stay open for many batches.
            self._downlink_answers = True
            for open_spare in self._streams.values():
                open_spare.go_long()
        spare = self._streams.get(ack.stream)
        if spare is not None:  # (else its request ended, and its response answered it)
            spare.acknowledge(ack.frame, ack.answer)

    def carry_acks(self, applied: Callable[[], int], on_acked: Callable[[int], None]) -> None:
        """Let uplink requests carry the ack of what ``applied()`` says the daemon applied;
        ``on_acked(through)`` runs once the relay confirmed it (by either route)."""
        self._applied = applied
        self._on_directives_acked = on_acked

    def _ack_to_carry(self) -> int | None:
        """The ack for the next uplink request, unless one in flight carries it already."""
        through = self._applied() if self._applied is not None else 0
        if through <= max(self.directives_acked, self._ack_in_flight):
            return None
        self._ack_in_flight = through
        return through

    @property
    def directives_ack_riding(self) -> int:
        """The highest ack an uplink request in flight carries, not yet confirmed (0:
        none)."""
        return self._ack_in_flight if self._ack_in_flight > self.directives_acked else 0

    def directives_confirmed(self, through: int | None) -> None:
        """The relay confirmed the ack of ``through`` (None: no ack went)."""
        if through is not None and through > self.directives_acked:
            self.directives_acked = through
            self._on_directives_acked(through)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep an uplink request open ahead of the next batch while events flow (see
        :class:`Spare`), until cancelled. Without it every batch opens its own request."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._spare = None

    async def post(
        self, session_id: str, events: list[wire.Event], on_queued: Callable[[], None]
    ) -> int:
        """See :meth:`RelayClient.post_events <daemon.relay_client.RelayClient.post_events>`.

        The session's token rides in the request (alone: its header; with others: the
        body), so a refusal of it is known only from the answer: then the batch goes once
        more, with a fresh token.
        """
        for attempt in range(2):
            token = (await self.tokens.get(session_id)).value
            try:
                return await self._submit(_Part(session_id, token, events), on_queued)
            except RelayRejected as exc:
                if attempt or not is_stale_token(exc):
                    raise
                log.info("token_refresh", scope="session", code=exc.code)
                self.tokens.drop(session_id, token)
        raise AssertionError("unreachable")  # pragma: no cover

    async def post_partials(self, pieces: list[tuple[str, wire.AssistantPartial]]) -> None:
        """See :meth:`RelayClient.post_partials <daemon.relay_client.RelayClient.post_partials>`.
        Nothing goes to a relay that does not take them."""
        if not self.takes_partials:
            return
        partials = [
            wire.SessionPartial(
                session_id=session_id, token=(await self.tokens.get(session_id)).value, partial=p
            )
            for session_id, p in pieces
        ]
        request = wire.UplinkRequest(sessions=[], partials=partials)
        spare = self._joinable()
        if spare is None and self._in_flight < self.parallel:
            spare = self._take_spare()
            self.requests += spare is not None
        if spare is not None:
            spare.add(wire.encode_json(request).encode())
            return
        self.requests += 1
        await self.calls.call("POST", self._path(), request, auth=TokenAuth(self.tokens, None))

    async def _submit(self, part: _Part, on_queued: Callable[[], None]) -> int:
        self._queued.append(part)
        on_queued()
        try:
            while not part.done.is_set():
                if not part.sent and (
                    self._in_flight < self.parallel or self._joinable() is not None
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
        while self._queued and (
            not batch or total + len(self._queued[0].events) <= wire.MAX_EVENTS_PER_BATCH
        ):
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
            self.requests += 1
        try:
            if len(batch) == 1 and spare is None:
                # Alone and nothing open: the session's own route (no ownership lookup).
                [part] = batch
                data = await self.calls.call(
                    "POST",
                    f"/daemon/v1/sessions/{part.session_id}/events",
                    wire.EventBatch(events=part.events),
                    auth=Bearer(part.token),
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
                self.directives_confirmed(ack)
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
            if ack is not None and self.directives_acked < ack:
                self._ack_in_flight = 0  # not confirmed: the next request carries it again
            if not joined:
                self._in_flight -= 1
            self._open_spare()
            for part in batch:
                if part.result is None:
                    part.result = RelayUnreachable(self.calls.relay, "the request was cancelled")
                part.done.set()
            self._slot_free.set()
            self._slot_free = trio.Event()

    @property
    def spare(self) -> Spare | None:
        """The request open ahead of the next batch, if there is one."""
        return self._spare

    def takes_batches(self) -> bool:
        """See :meth:`RelayClient.takes_batches <daemon.relay_client.RelayClient.takes_batches>`."""
        return self._joinable() is not None

    def _joinable(self) -> Spare | None:
        """The spare request that carries batches now and still takes more, if any."""
        spare = self._lingering
        return spare if spare is not None and spare.accepting() else None

    def _take_spare(self) -> Spare | None:
        """The open spare request for a batch about to go, if there is one."""
        spare, self._spare = self._spare, None
        if spare is not None:
            self._lingering = spare
        return spare

    def _open_spare(self) -> None:
        """Open a spare request for the next batch, unless one is open. Called once a
        batch's answer is in, or a spare stopped taking batches: opening it while a batch
        goes would put its CPU (in the daemon and in the relay) on that batch's path."""
        if self._spare is None and self._nursery is not None and self.environment_id():
            self._spare = Spare(
                linger=self.linger,
                on_idle=self._withdraw,
                on_closed=self._window_over,
                stream=Spare.new_stream() if self._downlinks else None,
                long=self._downlink_answers,
            )
            self._nursery.start_soon(self._run_spare, self._spare)

    def _withdraw(self, spare: Spare) -> None:
        if self._spare is spare:
            self._spare = None

    def _window_over(self, spare: Spare) -> None:
        if self._lingering is spare:
            self._lingering = None
            self._open_spare()

    def _path(self) -> str:
        return f"/daemon/v1/environments/{self.environment_id()}/uplink"

    async def _run_spare(self, spare: Spare) -> None:
        headers = {"Content-Type": wire.UPLINK_FRAMES_TYPE, "Transfer-Encoding": "chunked"}
        if spare.stream is not None:
            headers[wire.UPLINK_STREAM_HEADER] = spare.stream
            self._streams[spare.stream] = spare
        with spare.scope:
            try:
                request = self.calls.http.build_request(
                    "POST", self.calls.url(self._path()), headers=headers
                )
                request.stream = spare
                # A body that is a stream cannot be sent again: a refused token is only
                # dropped, and the batches on it go again on a request of their own.
                auth = TokenAuth(self.tokens, None, retry=False)
                spare.response = await self.calls.http.send(request, auth=auth)
            except (httpx.TransportError, DaemonError) as exc:
                spare.error = exc
            finally:
                self._withdraw(spare)
                if self._lingering is spare:
                    self._lingering = None
                if spare.stream is not None:
                    del self._streams[spare.stream]
                spare.ended()

    async def _uplink(
        self, request: wire.UplinkRequest, spare: Spare | None
    ) -> wire.UplinkResponse:
        """``POST .../uplink``: on ``spare`` when there is one, else a request of its own
        (also when the spare's connection had gone, or its token had expired)."""
        if spare is not None:
            index = spare.add(wire.encode_json(request).encode())
            answered: wire.UplinkResponse | None = None
            with trio.move_on_after(self.calls.timeout) as waiting:
                answered = await spare.wait_answer(index)
            if answered is not None:
                self.spares_used += 1
                return answered
            if waiting.cancelled_caught:
                spare.scope.cancel()
                raise self.calls.too_slow("POST", self._path())
            if spare.response is not None:
                try:
                    raise_for_error(spare.response)
                    answer = spare.answer(index)
                    self.spares_used += 1
                    return answer
                except RelayRejected as exc:
                    if not is_stale_token(exc):
                        raise
            else:
                log.debug("spare_failed", error=str(spare.error))
        data = await self.calls.call(
            "POST", self._path(), request, auth=TokenAuth(self.tokens, None)
        )
        return wire.decode(wire.UplinkResponse, data)
