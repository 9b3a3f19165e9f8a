"""How the daemon is asked to stop: SIGTERM or SIGINT (or ``q`` on its screen) asks for a
graceful stop, a second one forces it; a failure of a part stops it with an exit code."""

from __future__ import annotations

import signal

import attrs
import structlog
import trio

__all__ = ["Stopper"]

log = structlog.get_logger("daemon")


@attrs.define(eq=False)
class Stopper:
    requested: trio.Event = attrs.Factory(trio.Event)
    forced: trio.Event = attrs.Factory(trio.Event)
    exit_code: int = 0
    error: BaseException | None = None

    def stop(self, why: str) -> None:
        """The first call asks for a graceful stop; a second one forces it."""
        if not self.requested.is_set():
            log.info("stopping", by=why)
            self.requested.set()
        elif not self.forced.is_set():
            log.warning("forced_stop", by=why)
            self.forced.set()

    async def watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                self.stop(signal.Signals(signum).name)

    def fail(self, exc: BaseException, code: int) -> None:
        """Stop because a part failed: the daemon exits with ``code``."""
        self.error = exc
        self.exit_code = code
        self.requested.set()
