"""An agent or the daemon dies: noticed at once, nothing left hanging, and the conversation
can be resumed (`claude --resume`) with its memory. Real CLI, fake Messages API."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from tests.fakes import FakeMessagesAPI, claude_env, find_claude
from tests.harness import Relay, processes_in, start_daemon, start_relay


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


async def start(world: World, *args: str):  # type: ignore[no-untyped-def]
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


async def test_a_killed_daemon_goes_offline_and_its_restart_takes_the_same_environment(
    world: World,
) -> None:
    relay = world.relay
    daemon = await start(world)
    env_id = daemon.environment_id
    sid = (await relay.create_session(env_id, prompt="the colour is TEAL")).json()["id"]
    await relay.wait_kind(sid, "turn_result")
    daemon.process.send_signal(signal.SIGKILL)
    await daemon.process.wait()
    with trio.fail_after(30):
        while (await relay.environments())[0]["online"]:
            await trio.sleep(0.1)
    # The agent of the dead daemon goes too: its stdin closed with the daemon.
    with trio.fail_after(10):
        while processes_in(world.project):
            await trio.sleep(0.1)

    again = await start(world)
    assert again.environment_id == env_id  # re-registered, no "session already exists"
    events = await relay.wait_kind(sid, "session_ended")
    assert events[-1]["data"]["reason"] == "daemon_restarted"
    assert (await relay.session(sid))["state"] == "ended"
    assert (await relay.client.post(f"/api/sessions/{sid}/resume")).status_code == 202
    assert (await relay.post_message(sid, "which colour?", "q")).status_code == 202
    events = await relay.wait_kind(sid, "turn_result", 2)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert "TEAL" in conversation_of(world.api.messages_bodies()[-1])
    assert await again.stop() == 0
