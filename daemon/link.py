"""The relay link: keeps the downlink open, applies directives, acknowledges them.

Reconnects with exponential backoff and full jitter, capped. Past the outage timeout
(``0`` = never) it raises :class:`OutageTimeout` so the daemon ends sessions and exits
non-zero, and the service manager restarts it.
"""

from __future__ import annotations

from collections.abc import Callable

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
    connected: bool = False
    _connects: int = 0
    _last_error: str | None = None
    _acked: int = 0
    _ack_wanted: trio.Event = attrs.Factory(trio.Event)
    _online: trio.Event = attrs.Factory(trio.Event)

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

    async def _downlink_loop(self) -> None:
        attempt = 0
        outage_since: float | None = None
        while True:
            try:
                async for dseq, directive in self.client.downlink(
                    self.environment_id, self.applied_through(), on_open=self._opened
                ):
                    attempt, outage_since = 0, None
                    self.apply(dseq, directive)
                    self._ack_wanted.set()
                detail = "the relay closed the stream"
            except RelayUnreachable as exc:
                detail = exc.detail
            except RelayRejected as exc:
                if exc.status in (401, 403, 404):
                    # The credential was revoked or the environment removed: retrying will
                    # not help, and the service manager should not restart us in a loop.
                    raise
                detail = str(exc)
            if self.connected:
                log.warning("link_down", detail=detail)
            self.connected = False
            if self._online.is_set():
                # Waiters from now on wait for the next link; earlier ones already returned.
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
        # Acks are coalesced: one in flight at a time, always for the latest directive.
        while True:
            await self._ack_wanted.wait()
            self._ack_wanted = trio.Event()
            through = self.applied_through()
            if through <= self._acked:
                continue
            try:
                await self.client.ack(self.environment_id, through)
                self._acked = through
                self.on_acked(through)
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
