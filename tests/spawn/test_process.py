"""An agent process never outlives the daemon that started it (Linux: PR_SET_PDEATHSIG),
and the threads that fork agents ending early does not kill them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import aclosing
from pathlib import Path

import pytest
import trio

from spawn.lines import iter_lines
from testkit.harness import REPO
from testkit.waiting import eventually

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")

# A stand-in for the daemon: starts an agent (`sleep`) the way the daemon does, prints its
# pid, lets trio's worker threads end (their idle timeout cut short), says whether the agent
# still runs, then waits to be killed.
STAND_IN = """
import os, sys, trio
import trio._core._thread_cache as thread_cache
thread_cache.IDLE_TIMEOUT = 0.05
from spawn.process import open_agent_process

async def main():
    agent = await open_agent_process(
        ["sleep", "300"], cwd=".", env=dict(os.environ), not_found_hint=""
    )
    print(agent.pid, flush=True)
    await trio.sleep(0.5)  # clock: the idle threads end, and a death signal would land
    print("running" if agent.process.returncode is None else "exited", flush=True)
    await trio.sleep_forever()

trio.run(main)
"""


def is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def test_an_agent_dies_with_the_daemon_and_not_with_a_thread() -> None:
    agent_pid = 0
    with trio.fail_after(20):
        daemon = await trio.lowlevel.open_process(
            [sys.executable, "-c", STAND_IN], cwd=str(REPO), stdout=subprocess.PIPE
        )
        try:
            assert daemon.stdout is not None
            async with aclosing(iter_lines(daemon.stdout)) as lines:
                agent_pid = int(await anext(lines))
                assert await anext(lines) == b"running"  # the forking thread's end is harmless
            assert is_running(agent_pid)
            daemon.send_signal(signal.SIGKILL)
            await daemon.wait()
            await eventually(
                lambda: not is_running(agent_pid),
                timeout=10,
                what=f"the agent ({agent_pid}) to die with the daemon",
            )
        finally:
            if daemon.returncode is None:
                daemon.kill()
                await daemon.wait()
            if agent_pid and is_running(agent_pid):
                os.kill(agent_pid, signal.SIGKILL)
