"""The stop: stop taking work, end every session at once and flush their last events under
one deadline (``--stop-timeout``), force what is left, say goodbye.

Clean worktrees of the sessions just ended stay where they are: the next start makes them
spares again (a stop waits for no git work it can leave).
"""

from __future__ import annotations

import attrs
import structlog
import trio

from . import sdnotify
from .errors import RelayRejected, RelayUnreachable
from .link import OutageTimeout
from .relay_client import RelayClient
from .stopper import Stopper
from .supervisor import Supervisor
from .uplink import Uplink

__all__ = ["Teardown"]

log = structlog.get_logger("daemon")


@attrs.frozen(kw_only=True)
class Teardown:
    """What a stop ends, and its deadline."""

    stopper: Stopper
    supervisor: Supervisor
    uplink: Uplink
    client: RelayClient
    environment_id: str
    stop_timeout: float

    async def run(self, link_scope: trio.CancelScope) -> None:
        """Stop, from the moment the stop was asked for; returns when it is done or its
        deadline has passed (events left unsent are the caller's to spool)."""
        stopper, supervisor, uplink = self.stopper, self.supervisor, self.uplink
        outage = isinstance(stopper.error, OutageTimeout)
        sdnotify.notify_stopping()
        # 1. Stop taking work: no new directives, no new sessions.
        supervisor.stop_accepting()
        link_scope.cancel()
        # 2. End every session at once and flush their last events, under one deadline
        #    that leaves room for forcing what is left and for the goodbye.
        stop_started = trio.current_time()
        hard_deadline = stop_started + self.stop_timeout
        # Room after the sessions' deadline: forcing what is left, the goodbye, and the
        # process exiting, all before the service manager's own deadline.
        reserve = min(3.0, self.stop_timeout / 3)
        with trio.move_on_at(hard_deadline - reserve) as deadline:
            async with trio.open_nursery() as teardown:

                async def force_on_second_signal() -> None:
                    await stopper.forced.wait()
                    supervisor.kill_all()

                teardown.start_soon(force_on_second_signal)
                uplink.pause()
                try:
                    await supervisor.stop_all()
                finally:
                    uplink.resume()
                sessions_done = trio.current_time()
                if not outage:
                    # (After an outage the relay is gone: the events stay unsent.)
                    await uplink.drain()
                log.info(
                    "sessions_stopped",
                    stop_ms=round((sessions_done - stop_started) * 1000, 1),
                    flush_ms=round((trio.current_time() - sessions_done) * 1000, 1),
                )
                teardown.cancel_scope.cancel()
        if deadline.cancelled_caught:
            log.warning(
                "stop_timeout",
                stop_timeout=self.stop_timeout,
                sessions_left=supervisor.active(),
                pending=uplink.pending(),
            )
            # Forced: agents get a moment, are killed and reaped; their sessions still end
            # (workspaces reported as kept, unreleased) and those last events go up.
            supervisor.kill_all()
            with trio.move_on_at(hard_deadline - reserve / 2):
                await supervisor.wait_all_ended()
                if not outage:
                    await uplink.drain()
        # 3. Goodbye: the environment goes offline (sessions still open are ended by it).
        goodbye_by = trio.current_time() if outage else None
        with trio.move_on_at(goodbye_by or max(hard_deadline - 0.8, trio.current_time() + 0.3)):
            try:
                await self.client.goodbye(self.environment_id)
            except (RelayUnreachable, RelayRejected) as exc:
                log.warning("goodbye_failed", error=str(exc))
        # 4. Clean worktrees stay for the next start to recycle.
        if supervisor.worktrees.recycles_left:
            log.info("worktrees_left_to_next_start", worktrees=supervisor.worktrees.recycles_left)
        log.info("stopped")
