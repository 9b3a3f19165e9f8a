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
from common.backoff import full_jitter

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


def _final(failure: BaseException) -> bool:
    """The credential was revoked or the environment removed: retrying will not help, and
    the service manager should not restart us in a loop."""
    return isinstance(failure, RelayRejected) and failure.status in (401, 403, 404)


@attrs.define(eq=False)
class _Stream:
    """One downlink, from its opening to its end."""

    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    #: Set once it ended (or failed to open).
    done: trio.Event = attrs.Factory(trio.Event)
    #: Why it ended: None when the relay closed it (or it was cancelled).
    error: RelayUnreachable | RelayRejected | None = None
    opened_at: float = 0.0
    #: It delivered at least one directive.
    delivered: bool = False


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
    #: How long the newest directive must have been quiet before an ack of its own goes
    #: (uplink requests usually carry it by then: its turn's events). Acks only spare the
    #: relay redelivering on the next link (applying is idempotent by dseq), so they stay
    #: off the path of the turn the directive starts.
    ack_delay: float = 0.25
    #: While directives keep coming, one wait for them to pause lasts at most this long
    #: after it began; when uplink requests carried acks meanwhile, another wait follows,
    #: so a directive is acked within about 2 x (ack_max_wait + ack_delay) at worst.
    ack_max_wait: float = 1.0
    connected: bool = False
    _connects: int = 0
    _last_error: str | None = None
    _ack_wanted: trio.Event = attrs.Factory(trio.Event)
    #: When the newest directive was applied.
    _directive_at: float = float("-inf")
    _online: trio.Event = attrs.Factory(trio.Event)

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
        self, stream: _Stream, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """One downlink: reports once it is open, then applies directives until it ends
        (how: ``stream.error``) or ``stream.scope`` is cancelled. Failures before it opens
        are raised to the starter."""
        is_open = False
        with stream.scope:

            def opened() -> None:
                nonlocal is_open
                is_open = True
                stream.opened_at = trio.current_time()
                self._opened()
                task_status.started()

            try:
                async with aclosing(
                    self.client.downlink(
                        self.environment_id, self.applied_through(), on_open=opened
                    )
                ) as directives:
                    async for dseq, directive in directives:
                        stream.delivered = True
                        before = self.applied_through()
                        self.apply(dseq, directive)
                        if self.applied_through() > before:
                            # (Not one applied already, from a link being replaced.)
                            self._directive_at = trio.current_time()
                        self._ack_wanted.set()
            except (RelayUnreachable, RelayRejected) as exc:
                if not is_open:
                    raise
                stream.error = exc
            finally:
                stream.done.set()

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
        # The open downlink, while there is one.
        current: _Stream | None = None
        while True:
            new = _Stream()
            failure: BaseException | None
            try:
                await nursery.start(self._stream, new)
            except (RelayUnreachable, RelayRejected) as exc:
                failure = exc
                if current is not None and not current.done.is_set() and not _final(exc):
                    # Its successor could not open: the open downlink carries on (its
                    # token is good for a while yet) and the renewal is tried again
                    # after a backoff, unless it ends first.
                    log.info("link_renewal_failed", error=str(exc))
                    attempt += 1
                    with trio.move_on_after(self._backoff(attempt, None)):
                        await current.done.wait()
                    if not current.done.is_set():
                        continue
                    failure = current.error
                    if current.delivered or trio.current_time() - current.opened_at >= 10:
                        attempt = 0
            else:
                # Make before break: the stream being renewed is dropped only now that
                # its successor is open, so the environment never shows offline.
                if current is not None:
                    current.scope.cancel()
                current, outage_since = new, None
                with trio.move_on_at(self.client.link_renew_at()):
                    await new.done.wait()
                if not new.done.is_set():
                    log.info("link_renewal")
                    attempt = 0
                    continue
                failure = new.error
                if new.delivered or trio.current_time() - new.opened_at >= 10:
                    attempt = 0  # it was a good link: retry soon
            if current is not None:
                current.scope.cancel()
                current = None
            if isinstance(failure, RelayRejected):
                if _final(failure):
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
            await trio.sleep(self._backoff(attempt, outage_since))

    def _backoff(self, attempt: int, outage_since: float | None) -> float:
        delay = full_jitter(attempt, base=0.25, cap=self.backoff_cap)
        if self.outage_timeout and outage_since is not None:
            # Wake up in time to give up on schedule, not one long backoff later.
            now = trio.current_time()
            delay = min(delay, max(0.0, outage_since + self.outage_timeout - now))
        return delay

    async def _ack_loop(self) -> None:
        # Acks are coalesced: one in flight at a time, always for the latest directive,
        # sent once the newest directive is ``ack_delay`` old (or ``ack_max_wait`` after
        # the first) unless an uplink request carried it meanwhile. A directive that came
        # a moment ago has its turn's events, which carry its ack, still to come: an ack
        # sent then would be a request on the path of that turn.
        while True:
            await self._ack_wanted.wait()
            first, covering = trio.current_time(), self.applied_through()
            await trio.sleep(self.ack_delay)
            while True:
                wake = min(self._directive_at + self.ack_delay, first + self.ack_max_wait)
                if wake <= trio.current_time():
                    break
                await trio.sleep_until(wake)  # a directive came meanwhile
            self._ack_wanted = trio.Event()
            through = self.applied_through()
            if through <= self.client.directives_acked:
                continue  # an uplink request carried it
            if through <= self.client.directives_ack_riding:
                # One carries it, and its answer is on the way: look again then.
                self._ack_wanted.set()
                continue
            if max(self.client.directives_acked, self.client.directives_ack_riding) >= covering:
                # Uplink requests carried (or carry) what was applied when this wait
                # began: look again for the newer ones. (A ride that fails sets its ack
                # back, and the next look sends it.)
                self._ack_wanted.set()
                continue
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
