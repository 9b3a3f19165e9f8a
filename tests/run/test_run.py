"""``rcd run "PROMPT"`` with the real CLI against the fake Messages API: from the project's
directory it starts a session there and, with ``--attach``, prints the URL and the reply;
``--env`` starts one on another machine's environment through the relay; at capacity it
says so and exits 1."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from relay import admin
from testkit.fakes import FakeMessagesAPI, claude_env, find_claude
from testkit.harness import Daemon, Relay, home_env, start_daemon, start_relay


@attrs.define
class Stack:
    relay: Relay
    here: Daemon
    elsewhere: Daemon
    token: str
    env: dict[str, str]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    claude = find_claude()
    async with trio.open_nursery() as nursery:
        api = FakeMessagesAPI()
        base_url: str = await nursery.start(api.run)
        relay = await start_relay(nursery, tmp_path / "relay")
        daemons = []
        for name in ("here", "elsewhere"):
            project, home = tmp_path / name, tmp_path / f"home-{name}"
            project.mkdir()
            daemons.append(
                await start_daemon(
                    relay, home, project, "--capacity", "1", "--name", name,
                    agent_bin=claude, extra_env=claude_env(home, base_url),
                )
            )  # fmt: skip
        token = await trio.to_thread.run_sync(admin.create_device_token, relay.data_dir, "cli")
        try:
            yield Stack(relay, daemons[0], daemons[1], token, home_env(tmp_path / "cli-home"))
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def rcd_run(stack: Stack, cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "cli", "run", *args, "--relay", stack.relay.url,
             "--token", stack.token],
            env=stack.env, cwd=str(cwd), capture_stdout=True, capture_stderr=True, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip


async def test_run_attach_prints_the_url_and_the_reply(stack: Stack) -> None:
    # From a directory inside the project: its environment.
    inside = stack.here.directory / "src"
    inside.mkdir()
    done = await rcd_run(stack, inside, "echo hi", "--attach")
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode() + out
    first = out.splitlines()[0]
    assert first.startswith(f"{stack.relay.url}/s/ses_"), out
    assert "echo: echo hi" in out
    session_id = first.rsplit("/", 1)[1]
    session = await stack.relay.session(session_id)
    assert session["environment_id"] == stack.here.environment_id
    # The turn was over when it left: the log has its result.
    assert any(e["kind"] == "turn_result" for e in await stack.relay.events(session_id))


async def test_run_on_another_environment_and_refused_at_capacity(
    stack: Stack, tmp_path: Path
) -> None:
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    refused = await rcd_run(stack, nowhere, "hello")
    assert refused.returncode == 1
    message = refused.stderr.decode()
    assert f"no environment serves {nowhere}" in message and "--env NAME" in message
    assert "here (online)" in message and "elsewhere (online)" in message

    # Another machine's environment, by name, through the relay; without --attach it
    # prints the URL and leaves at once.
    done = await rcd_run(stack, nowhere, "sleep 30", "--env", "elsewhere")
    assert done.returncode == 0, done.stderr.decode()
    session_id = done.stdout.decode().strip().rsplit("/", 1)[1]
    assert (await stack.relay.session(session_id))["environment_id"] == (
        stack.elsewhere.environment_id
    )
    await stack.relay.wait_kind(session_id, "user_message")
    # Its capacity is 1 and that session runs: the next is refused with the relay's 409.
    full = await rcd_run(stack, nowhere, "hello", "--env", stack.elsewhere.environment_id)
    assert full.returncode == 1
    error = full.stderr.decode()
    assert "at_capacity" in error and "HTTP 409" in error, error
    assert "rcd run:" in error
    unknown = await rcd_run(stack, nowhere, "hello", "--env", "nope")
    assert unknown.returncode == 1 and "no environment 'nope'" in unknown.stderr.decode()
