"""The record of the daemon's agents: the next daemon ends what a killed one left (checking
each pid is still that agent), never disturbs a daemon that runs, and tells a clean stop
from a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from daemon.agents_record import (
    AGENT_MARKER,
    AgentsRecord,
    ProcessId,
    RecordedAdapter,
    process_id,
    take_over,
)
from daemon.errors import DaemonError
from spawn import AgentEvent, AgentHandle, AgentLaunch, ClaudeCode
from testkit.harness import TINY_AGENT
from testkit.waiting import eventually

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def session_of(leader: int) -> list[int]:
    """Live processes of the session ``leader`` leads."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader and fields[0] != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; whatever is left of their sessions is killed after it."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        for pid in session_of(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


def start_agent(
    spawned: list[subprocess.Popen[bytes]], script: str, marker: str | None = None
) -> ProcessId:
    """A stand-in agent: a session leader running ``script``, as the daemon starts agents
    (with ``marker``: as a process an agent started, marked in its environment)."""
    env = {**os.environ, AGENT_MARKER: marker} if marker else None
    proc = subprocess.Popen(["sh", "-c", script], start_new_session=True, env=env)
    spawned.append(proc)
    found = process_id(proc.pid)
    assert found is not None
    return found


def write_record(
    path: Path, daemon: ProcessId, agents: list[ProcessId], stopped: bool, token: str = "t"
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "daemon": {"pid": daemon.pid, "start": daemon.start},
                "token": token,
                "stopped": stopped,
                "agents": [{"pid": a.pid, "start": a.start} for a in agents],
            }
        )
    )


def gone_daemon() -> ProcessId:
    """The identity of a process that has exited (a killed daemon)."""
    proc = subprocess.Popen(["true"])
    found = process_id(proc.pid)
    proc.wait()
    return found or ProcessId(pid=proc.pid, start=1)


async def wait_for_session(leader: int, size: int) -> None:
    await eventually(
        lambda: len(session_of(leader)) >= size,
        timeout=5,
        what=f"{size} processes in the session of {leader}",
    )


async def test_what_a_killed_daemon_left_is_ended_whole(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    # An agent that ignores SIGTERM and has a tool of its own running (which ignores it too).
    stubborn = start_agent(spawned, "trap '' TERM; sleep 300 & wait")
    polite = start_agent(spawned, "sleep 300")
    await wait_for_session(stubborn.pid, 2)
    path = tmp_path / "agents.json"
    write_record(path, gone_daemon(), [stubborn, polite], stopped=False)

    with trio.fail_after(10):
        record, previous = await take_over(path, tmp_path, grace=0.3)
    assert previous == "died"
    assert session_of(stubborn.pid) == [] and session_of(polite.pid) == []
    assert record.agents == {}
    saved = json.loads(path.read_text())
    assert saved["stopped"] is False and saved["agents"] == []
    assert saved["daemon"]["pid"] == os.getpid()


async def test_what_an_agent_started_elsewhere_is_found_by_its_marker(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    # A tool the agent ran in a session of its own (as Claude Code runs shell commands),
    # reparented once the agent died: only the marker in its environment leads to it.
    path = tmp_path / "agents.json"
    write_record(path, gone_daemon(), [], stopped=False, token="t0k3n")
    tool = start_agent(spawned, "exec sleep 300", marker="t0k3n")
    other = start_agent(spawned, "exec sleep 300", marker="other")
    with trio.fail_after(10):
        record, _ = await take_over(path, tmp_path, grace=0.3)
    assert process_id(tool.pid) is None
    assert process_id(other.pid) == other
    assert record.token != "t0k3n"


async def test_a_pid_that_is_now_another_process_is_left_alone(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    other = start_agent(spawned, "sleep 300")
    path = tmp_path / "agents.json"
    reused = ProcessId(pid=other.pid, start=other.start - 1)  # the recorded agent was older
    write_record(path, gone_daemon(), [reused], stopped=False)
    with trio.fail_after(10):
        await take_over(path, tmp_path, grace=0.3)
    assert process_id(other.pid) == other


async def test_a_running_daemon_is_not_disturbed(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    running_daemon = start_agent(spawned, "sleep 300")
    its_agent = start_agent(spawned, "sleep 300")
    path = tmp_path / "agents.json"
    write_record(path, running_daemon, [its_agent], stopped=False)
    before = path.read_text()
    with pytest.raises(DaemonError, match=f"another rcd daemon \\(pid {running_daemon.pid}\\)"):
        await take_over(path, tmp_path)
    assert process_id(its_agent.pid) == its_agent
    assert path.read_text() == before


async def test_a_clean_stop_is_told_from_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "state" / "agents.json"
    record, previous = await take_over(path, tmp_path)
    assert previous == "none"
    # Killed: the record was never marked.
    _, previous = await take_over(path, tmp_path)
    assert previous == "died"
    record, _ = await take_over(path, tmp_path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(record.hold)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert json.loads(path.read_text())["stopped"] is True
    _, previous = await take_over(path, tmp_path)
    assert previous == "stopped"


async def test_agents_are_in_the_record_while_they_run(tmp_path: Path) -> None:
    record = AgentsRecord(path=tmp_path / "agents.json", daemon=ProcessId(pid=1, start=1))
    adapter = RecordedAdapter(inner=ClaudeCode(binary=TINY_AGENT), record=record)
    assert adapter.name == "claude"
    events: list[AgentEvent] = []

    async def sink(event: AgentEvent) -> None:
        events.append(event)

    def recorded() -> list[int]:
        return [a["pid"] for a in json.loads(record.path.read_text())["agents"]]

    launch = AgentLaunch(cwd=str(tmp_path), env=dict(os.environ))
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            handle: AgentHandle = await nursery.start(adapter.run, launch, sink)
            assert handle.pid is not None
            assert recorded() == [handle.pid]
            environ = Path(f"/proc/{handle.pid}/environ").read_bytes().split(b"\0")
            assert f"{AGENT_MARKER}={record.token}".encode() in environ
            await handle.stop(1.0)
        assert recorded() == []
    assert events  # the exit was reported
