"""An agent or the daemon dies: noticed at once, nothing left hanging, and the conversation
can be resumed (`claude --resume`) with its memory. Real CLI, fake Messages API."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from testkit.fakes import FakeMessagesAPI, claude_env, find_claude
from testkit.harness import (
    LEAVE_BEHIND,
    REPO,
    Daemon,
    Relay,
    home_env,
    pids_alive,
    processes_in,
    rcd,
    start_daemon,
    start_relay,
)
from testkit.waiting import eventually


@attrs.define
class World:
    relay: Relay
    api: FakeMessagesAPI
    base_url: str
    project: Path
    home: Path


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    find_claude()
    project = tmp_path / "project"
    project.mkdir()
    async with trio.open_nursery() as nursery:
        api = FakeMessagesAPI()
        base_url: str = await nursery.start(api.run)
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            yield World(
                relay=relay, api=api, base_url=base_url, project=project, home=tmp_path / "home"
            )
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def start(world: World, *args: str) -> Daemon:
    return await start_daemon(
        world.relay,
        world.home,
        world.project,
        *args,
        agent_bin=find_claude(),
        extra_env=claude_env(world.home, world.base_url),
    )


def conversation_of(body: dict[str, object]) -> str:
    return repr(body["messages"])


async def test_a_killed_agent_is_noticed_at_once_and_the_session_resumes(world: World) -> None:
    relay = world.relay
    daemon = await start(world)
    sid = (
        await relay.create_session(daemon.environment_id, prompt="remember the word PAPAYA")
    ).json()["id"]
    await relay.wait_kind(sid, "turn_result")
    [session] = (await daemon.status())["sessions"]
    os.kill(session["pid"], signal.SIGKILL)
    with trio.fail_after(2):
        events = await relay.wait_kind(sid, "session_ended", timeout=2)
    errors = [e["data"] for e in events if e["kind"] == "error"]
    assert errors and errors[-1]["code"] == "agent_exited"
    assert "-9" in errors[-1]["message"] or "9" in errors[-1]["message"]
    assert events[-1]["data"]["reason"] == "agent_exited"
    assert (await relay.session(sid))["state"] == "ended"
    assert (await daemon.status())["environment"]["connected"] is True  # the daemon runs on

    r = await relay.client.post(f"/api/sessions/{sid}/resume")
    assert r.status_code == 202, r.text
    events = await relay.wait_kind(sid, "session_started", 2)
    starts = [e["data"] for e in events if e["kind"] == "session_started"]
    assert starts[1]["agent_session_id"] == starts[0]["agent_session_id"]
    assert starts[1]["cwd"] == starts[0]["cwd"]
    assert (await relay.post_message(sid, "what was the word?", "after-resume")).status_code == 202
    events = await relay.wait_kind(sid, "turn_result", 2)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # one dense log
    last_request = world.api.messages_bodies()[-1]
    assert "PAPAYA" in conversation_of(last_request)  # the agent remembers
    assert await daemon.stop() == 0


# -- kill -9 of the daemon mid-turn ----------------------------------------------------------

#: Starts (or starts again) the daemon of ``world.project``; returns once it is online, with
#: a client of its relay.
Starter = Callable[[], Awaitable[tuple[Relay, Daemon]]]


async def kill_mid_turn_then_start_again(world: World, start_daemon_of: Starter) -> None:
    relay, daemon = await start_daemon_of()
    env_id = daemon.environment_id
    sid = (await relay.create_session(env_id, prompt="the colour is TEAL")).json()["id"]
    await relay.wait_kind(sid, "turn_result")
    # A turn that is running a tool: the agent, its shell, the shell's command, and a
    # background job that command left.
    script = world.project / "leave_behind.py"
    script.write_text(LEAVE_BEHIND)
    assert (await relay.post_message(sid, f"run python3 {script}", "m-run")).status_code == 202
    events = await relay.wait_kind(sid, "permission_request")
    request = next(e for e in events if e["kind"] == "permission_request")["data"]
    assert (await relay.decide(sid, request["request_id"], "allow")).status_code == 202
    job = world.project / "job.pid"
    await eventually(
        lambda: job.exists() and job.read_text(),
        timeout=30,
        what="the job to write its pid to job.pid",
    )
    old_agents = processes_in(world.project)
    assert int(job.read_text()) in old_agents and len(old_agents) >= 3
    assert (await relay.session(sid))["state"] == "busy"

    daemon.process.send_signal(signal.SIGKILL)
    await daemon.process.wait()
    try:
        relay, again = await start_daemon_of()
        # Within 5 s of the new daemon being online, nothing of the old one runs.
        await eventually(
            lambda: not pids_alive(old_agents),
            timeout=5,
            what=f"the old daemon's processes {old_agents} to be gone",
        )
    finally:
        for pid in pids_alive(old_agents):  # (only when the test failed)
            os.kill(pid, signal.SIGKILL)
    assert processes_in(world.project) == []
    events = await relay.wait_kind(sid, "session_ended", timeout=5)
    assert events[-1]["data"]["reason"] == "daemon_died"
    assert (await relay.session(sid))["state"] == "ended"
    # One environment for the directory, the same as before, online.
    mine = [e for e in await relay.environments() if e["directory"] == str(world.project.resolve())]
    assert [(e["id"], e["online"]) for e in mine] == [(env_id, True)]
    assert again.environment_id == env_id

    r = await relay.client.post(f"/api/sessions/{sid}/resume")
    assert r.status_code == 202, r.text
    events = await relay.wait_kind(sid, "session_started", 2)
    starts = [e["data"] for e in events if e["kind"] == "session_started"]
    assert starts[1]["agent_session_id"] == starts[0]["agent_session_id"]
    assert (await relay.post_message(sid, "which colour?", "q")).status_code == 202
    events = await relay.wait_events(
        sid,
        lambda evs: (
            any(e["kind"] == "user_message" and e["data"]["input_id"] == "q" for e in evs)
            and evs[-1]["kind"] == "status"
            and evs[-1]["data"]["state"] == "idle"
        ),
    )
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert "TEAL" in conversation_of(world.api.messages_bodies()[-1])  # the agent remembers
    assert await again.stop() == 0


async def test_a_daemon_killed_mid_turn_is_cleaned_up_by_its_restart(world: World) -> None:
    async def start_again() -> tuple[Relay, Daemon]:
        return world.relay, await start(world)

    await kill_mid_turn_then_start_again(world, start_again)


async def test_an_embedded_relay_daemon_killed_mid_turn_is_cleaned_up_by_its_restart(
    world: World,
) -> None:
    """The same with ``rcd start`` and no ``--relay``: the relay dies and comes back with
    the daemon (on another port here), and the environment stays one."""
    env = home_env(world.home, claude_env(world.home, world.base_url))
    token: list[str] = []
    clients: list[Relay] = []
    runs = 0

    async def start_embedded() -> tuple[Relay, Daemon]:
        nonlocal runs
        runs += 1
        log_path = world.home / f"daemon-{runs}.log"
        with log_path.open("wb") as out:
            argv = ["start", str(world.project), "--relay-port", "0", "--agent-bin", find_claude()]
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "daemon", *argv],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(REPO),
            )
        daemon = Daemon(process=process, env=env, directory=world.project, log_path=log_path)

        def registered() -> bool:
            assert process.returncode is None, daemon.log()
            return "registered with" in daemon.log()

        await eventually(registered, timeout=30, what="'registered with' in the daemon's log")
        found = re.search(r"relay running at (http://127\.0\.0\.1:\d+)", daemon.log())
        assert found, daemon.log()
        if not token:
            created = await rcd(env, "relay", "token", "create", "--name", "tests")
            token.append(created.stdout.decode().strip().splitlines()[-1])
        relay = Relay(
            running=None,
            data_dir=world.home / ".data" / "rcd" / "relay",
            client=httpx.AsyncClient(
                base_url=found.group(1), headers={"Authorization": f"Bearer {token[0]}"}
            ),
            token=token[0],
            daemons=[daemon],
        )
        clients.append(relay)

        async def online() -> list[dict[str, Any]]:
            return [e for e in await relay.environments() if e["online"]]

        environments = await eventually(online, timeout=10, what="the environment online")
        daemon.environment_id = environments[0]["id"]
        return relay, daemon

    try:
        await kill_mid_turn_then_start_again(world, start_embedded)
    finally:
        for relay in clients:
            await relay.aclose()
