"""An agent process in its own process group, always reaped, and (on Linux) never outliving
the daemon: it gets SIGTERM the moment the daemon's process dies, however it dies."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import select
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

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
        # A line the pipe takes whole goes now: trio's send_all (and an uncontended lock)
        # would first let every other ready task run, and the agent waits for it.
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.write_line_now(line):
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        assert self.process.stdin is not None
        async with self._send_lock:
            await self.process.stdin.send_all(line + b"\n")

    def write_line_now(self, line: bytes) -> bool:
        """Write one line at once if the pipe takes it whole without waiting and nobody else
        is writing (True); else nothing was written (False: :meth:`write_line` is the way,
        and says what went wrong). Lines up to ``PIPE_BUF`` go whole or not at all."""
        stdin = self.process.stdin
        data = line + b"\n"
        if (
            not isinstance(stdin, trio.lowlevel.FdStream)
            or self._send_lock.locked()
            or len(data) > select.PIPE_BUF
        ):
            return False
        try:
            written = os.write(stdin.fileno(), data)
        except OSError:  # full (EAGAIN), closed, broken: the waiting write reports it
            return False
        if written != len(data):  # a pipe never does this under PIPE_BUF (POSIX)
            raise RuntimeError(f"the agent's stdin took {written} of a {len(data)}-byte line")
        return True

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

    On Linux the agent is tied to the daemon's life (``PR_SET_PDEATHSIG``): if the daemon
    is killed, the agent gets SIGTERM at once instead of running on with parent 1. (Its own
    children are not told; the next daemon ends the whole group, see
    :mod:`daemon.agents_record`.)

    Raises :class:`AgentNotFound` when the executable does not exist or cannot run.
    """
    try:
        if sys.platform == "linux":
            process = await _open_tied_to_daemon(argv, cwd, env)
        else:
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


# -- Linux: agents die with the daemon ----------------------------------------------------

_PR_SET_PDEATHSIG = 1


@functools.cache
def _spawner() -> ThreadPoolExecutor:
    """The threads that fork agents. The kernel sends PR_SET_PDEATHSIG's signal when the
    *thread* that forked the child ends, not the process: trio's worker threads end after
    10 s idle, which would kill every agent they started. These threads live as long as
    the daemon's process."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="rcd-agent-spawn")


@functools.cache
def _prctl() -> Callable[..., int]:
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def _die_with(parent: int) -> Callable[[], None]:
    """What the child runs between fork and exec: SIGTERM when ``parent`` dies."""
    prctl = _prctl()  # looked up here, not in the child

    def pre_exec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            # The daemon died between fork and prctl: nobody will ever read this agent.
            os._exit(1)

    return pre_exec


async def _open_tied_to_daemon(
    argv: Sequence[str], cwd: str, env: Mapping[str, str]
) -> trio.Process:
    """``trio.lowlevel.open_process`` with piped stdio and a new session, forked by one of
    :func:`_spawner`'s threads with :func:`_die_with` the daemon. Not cancellable while the
    fork runs (a started process is always handed back, never leaked)."""
    with contextlib.ExitStack() as child_ends, contextlib.ExitStack() as on_failure:
        stdin_r, stdin_w = os.pipe()
        child_ends.callback(os.close, stdin_r)
        stdin = trio.lowlevel.FdStream(stdin_w)
        on_failure.callback(stdin.close)
        outputs: list[trio.lowlevel.FdStream] = []
        output_ends: list[int] = []
        for _ in range(2):
            read_end, write_end = os.pipe()
            child_ends.callback(os.close, write_end)
            outputs.append(trio.lowlevel.FdStream(read_end))
            on_failure.callback(outputs[-1].close)
            output_ends.append(write_end)
        fork = functools.partial(
            subprocess.Popen,
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=stdin_r,
            stdout=output_ends[0],
            stderr=output_ends[1],
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()),
        )
        future = _spawner().submit(fork)
        popen = await trio.to_thread.run_sync(future.result)
        on_failure.pop_all()
    # trio has no public way to adopt a Popen; this is what trio.lowlevel.open_process
    # itself returns (pidfd-based waiting and all).
    return trio.Process._create(popen, stdin, outputs[0], outputs[1])
