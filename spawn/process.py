"""An agent process in its own process group, always reaped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections import deque
from collections.abc import Mapping, Sequence

import attrs
import structlog
import trio

from .errors import AgentNotFound
from .lines import iter_lines

__all__ = ["AgentProcess", "open_agent_process"]

log = structlog.get_logger("spawn.process")


@attrs.define(eq=False)
class AgentProcess:
    """A running agent with piped stdin/stdout.

    Only :meth:`terminate` ends it: close stdin, then SIGTERM to the whole process group,
    then SIGKILL after a grace period, and always wait for the exit so nothing is left.
    """

    process: trio.Process
    argv: Sequence[str]
    _send_lock: trio.Lock = attrs.field(factory=trio.Lock)
    #: The last lines the agent wrote on stderr, for error messages.
    stderr_tail: deque[str] = attrs.field(factory=lambda: deque(maxlen=20))

    @property
    def pid(self) -> int:
        return self.process.pid

    async def write_line(self, line: bytes) -> None:
        """Write one line to the agent's stdin. Writers never interleave.

        Raises ``trio.BrokenResourceError`` or ``trio.ClosedResourceError`` once the agent is gone.
        """
        assert self.process.stdin is not None
        async with self._send_lock:
            await self.process.stdin.send_all(line + b"\n")

    async def drain_stderr(self) -> None:
        """Read stderr until EOF, keeping the last lines (an unread pipe would block the agent)."""
        assert self.process.stderr is not None
        async for line in iter_lines(self.process.stderr, max_bytes=1024 * 1024):
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self.stderr_tail.append(text)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    async def terminate(self, grace: float = 3.0) -> int:
        """Stop the agent and reap it; returns its exit code.

        Safe to call more than once and under cancellation (it shields itself: a cancelled
        caller still gets the group killed and reaped, bounded by twice ``grace``).
        """
        returncode = -1
        with trio.CancelScope(shield=True):
            if self.process.returncode is None and self.process.stdin is not None:
                with trio.move_on_after(grace / 2):
                    await self.process.stdin.aclose()
                with trio.move_on_after(grace / 2):
                    await self.process.wait()
            if self.process.returncode is None:
                self._signal_group(signal.SIGTERM)
                with trio.move_on_after(grace):
                    await self.process.wait()
            if self.process.returncode is None:
                log.warning("agent_killed", pid=self.process.pid, grace=grace)
            # The agent's own children (tools it started) may outlive it: the group goes too.
            self._signal_group(signal.SIGKILL)
            returncode = await self.process.wait()
        return returncode


async def open_agent_process(
    argv: Sequence[str], *, cwd: str, env: Mapping[str, str], not_found_hint: str
) -> AgentProcess:
    """Start ``argv`` in ``cwd`` in a new session (so its own process group).

    Raises :class:`AgentNotFound` when the executable does not exist or cannot run.
    """
    try:
        process = await trio.lowlevel.open_process(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        raise AgentNotFound(argv[0], not_found_hint) from exc
    return AgentProcess(process=process, argv=argv)
