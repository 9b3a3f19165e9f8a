"""The relay link: keeps the downlink open, applies directives, acknowledges them.

Reconnects with exponential backoff and full jitter, capped. Past the outage timeout
(``0`` = never) it raises :class:`OutageTimeout` so the daemon ends sessions and exits
non-zero, and the service manager restarts it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing

import attrs
import structlog
import trio

import wire

from .backoff import full_jitter
from .errors import DaemonError, RelayRejected, RelayUnreachable
from .relay_client import RelayClient

__all__ = ["LinkStats", "OutageTimeout", "RelayLink"]

log = structlog.get_logger("daemon.link")


class OutageTimeout(DaemonError):
    def __init__(self, seconds: float, detail: str) -> None:
        super().__init__(f"the relay has been unreachable for {seconds:.0f}s ({detail}); giving up")


@attrs.frozen(kw_only=True)
class LinkStats:
    connected: bool
    connects: int
    applied_through: int
    last_error: str | None


@attrs.define(eq=False)
class RelayLink:
    client: RelayClient
    environment_id: str
    apply: Callable[[int, wire.Directive], None]
    applied_through: Callable[[], int]
    #: Called (in the event loop) after the relay acknowledged ``through``: persist it.
    on_acked: Callable[[int], None] = lambda through: None
    outage_timeout: float = 600.0
    backoff_cap: float = 30.0
    #: How long an ack waits for more directives to cover. Acks only spare the relay
    #: redelivering on the next link (applying is idempotent by dseq), so they stay off
    #: the path of the turn the directive starts.
    ack_delay: float = 0.25
    connected: bool = False
    _connects: int = 0
    _last_error: str | None = None
    _ack_wanted: trio.Event = attrs.Factory(trio.Event)
    _online: trio.Event = attrs.Factory(trio.Event)
    #: The open stream's cancel scope (the newest, while one is being renewed).
    _current: trio.CancelScope | None = None
    _stream_ended: trio.Event = attrs.Factory(trio.Event)
    _delivered: bool = False

    def __attrs_post_init__(self) -> None:
        # Uplink requests carry the ack when they go up before it would.
        self.client.carry_acks(self.applied_through, self.on_acked)

    async def wait_online(self) -> None:
        """Return once the downlink is open (at once if it is now)."""
        await self._online.wait()

    def _opened(self) -> None:
        self.connected = True
        self._connects += 1
        self._last_error = None
        self._online.set()
        log.info("link_up", environment_id=self.environment_id)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the link until cancelled; raises :class:`OutageTimeout`."""
        error: DaemonError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._ack_loop)
            task_status.started()
            try:
                await self._downlink_loop()
            except DaemonError as exc:
                # Raised below, outside the nursery, so callers get it bare (not in a group).
                error = exc
            nursery.cancel_scope.cancel()
        if error is not None:
            raise error

    async def _stream(
        self, ended: list[BaseException | None], task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        """One downlink: reports its cancel scope once open, then applies directives until
        it ends; how it ended goes into ``ended`` (None: the relay closed it). Failures
        before it opens are raised to the starter."""
        is_open = False
        with trio.CancelScope() as scope:

            def opened() -> None:
                nonlocal is_open
                is_open = True
                self._opened()
                task_status.started(scope)

            try:
                async with aclosing(
                    self.client.downlink(
                        self.environment_id, self.applied_through(), on_open=opened
                    )
                ) as directives:
                    async for dseq, directive in directives:
                        self._delivered = True
                        self.apply(dseq, directive)
                        self._ack_wanted.set()
                ended.append(None)
            except (RelayUnreachable, RelayRejected) as exc:
                if not is_open:
                    raise
                ended.append(exc)
            finally:
                self._stream_ended.set()

    async def _downlink_loop(self) -> None:
        error: DaemonError | None = None
        async with trio.open_nursery() as nursery:
            try:
                await self._connect_forever(nursery)
            except DaemonError as exc:
                error = exc  # raised bare, not in an exception group
            nursery.cancel_scope.cancel()
        if error is not None:
            raise error

    async def _connect_forever(self, nursery: trio.Nursery) -> None:
        attempt = 0
        outage_since: float | None = None
        while True:
            ended: list[BaseException | None] = []
            previous = self._current
            try:
                self._stream_ended = trio.Event()
                self._current = await nursery.start(self._stream, ended)
            except (RelayUnreachable, RelayRejected) as exc:
                failure: BaseException | None = exc
            else:
                # Make before break: the stream being renewed is dropped only now that
                # its successor is open, so the environment never shows offline.
                if previous is not None:
                    previous.cancel()
                opened_at, outage_since = trio.current_time(), None
                self._delivered = False
                with trio.move_on_at(self.client.link_renew_at()):
                    while not ended:
                        await self._stream_ended.wait()
                        self._stream_ended = trio.Event()
                if not ended:
                    log.info("link_renewal")
                    attempt = 0
                    continue
                failure = ended[0]
                if self._delivered or trio.current_time() - opened_at >= 10:
                    attempt = 0  # it was a good link: retry soon
            if previous is not None:
                previous.cancel()
            self._current = None
            if isinstance(failure, RelayRejected):
                if failure.status in (401, 403, 404):
                    # The credential was revoked or the environment removed: retrying
                    # will not help, and the service manager should not restart us in a
                    # loop.
                    raise failure
                detail = str(failure)
            elif isinstance(failure, RelayUnreachable):
                detail = failure.detail
            else:
                detail = "the relay closed the stream"
            if self.connected:
                log.warning("link_down", detail=detail)
            self.connected = False
            if self._online.is_set():
                # Waiters from now on wait for the next link; earlier ones returned.
                self._online = trio.Event()
            self._last_error = detail
            now = trio.current_time()
            if outage_since is None:
                outage_since = now
            elif self.outage_timeout and now - outage_since >= self.outage_timeout:
                raise OutageTimeout(now - outage_since, detail)
            attempt += 1
            delay = full_jitter(attempt, base=0.25, cap=self.backoff_cap)
            if self.outage_timeout:
                # Wake up in time to give up on schedule, not one long backoff later.
                delay = min(delay, max(0.0, outage_since + self.outage_timeout - now))
            await trio.sleep(delay)

    async def _ack_loop(self) -> None:
        # Acks are coalesced: one in flight at a time, always for the latest directive,
        # sent a moment after the directive (see ``ack_delay``) unless an uplink request
        # carried it meanwhile.
        while True:
            await self._ack_wanted.wait()
            await trio.sleep(self.ack_delay)
            self._ack_wanted = trio.Event()
            through = self.applied_through()
            if through <= self.client.directives_acked:
                continue  # an uplink request carried it
            try:
                await self.client.ack(self.environment_id, through)
            except (RelayUnreachable, RelayRejected) as exc:
                log.info("ack_failed", error=str(exc))
                await trio.sleep(1)
                self._ack_wanted.set()

    def statistics(self) -> LinkStats:
        return LinkStats(
            connected=self.connected,
            connects=self._connects,
            applied_through=self.applied_through(),
            last_error=self._last_error,
        )
