"""``rcd attach --resume-locally``: a session of the real CLI (against the fake Messages API)
ends, and the local ``claude --resume ID`` has its conversation (the fake sees the earlier
turns) in the session's directory, a kept worktree included; on a machine (a home) whose
claude does not have the conversation it refuses and ends nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from relay import admin
from testkit.fakes import FakeMessagesAPI, claude_env, find_claude, open_conversation
from testkit.harness import Daemon, Relay, home_env, start_daemon, start_relay


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@attrs.define
class Stack:
    api: FakeMessagesAPI
    base_url: str
    relay: Relay
    daemon: Daemon
    token: str


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    claude = find_claude()
    repo, home = tmp_path / "repo", tmp_path / "home"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.name=T", "-c", "user.email=t@example.org", "commit", "-q",
        "--allow-empty", "-m", "first")  # fmt: skip
    async with trio.open_nursery() as nursery:
        api = FakeMessagesAPI()
        base_url: str = await nursery.start(api.run)
        relay = await start_relay(nursery, tmp_path / "relay")
        daemon = await start_daemon(
            relay, home, repo, "--spawn", "worktree",
            agent_bin=claude, extra_env=claude_env(home, base_url),
        )  # fmt: skip
        token = await trio.to_thread.run_sync(admin.create_device_token, relay.data_dir, "cli")
        try:
            yield Stack(api, base_url, relay, daemon, token)
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def resume_locally(
    stack: Stack, session_id: str, *claude_args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    with trio.fail_after(90):
        done = await trio.run_process(
            [sys.executable, "-m", "cli", "attach", "--resume-locally", session_id,
             "--agent-bin", find_claude(), "--token", stack.token, "--relay", stack.relay.url,
             "--", *claude_args],
            env=env or stack.daemon.env, cwd="/", capture_stdout=True, capture_stderr=True,
            check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def start(stack: Stack, spawn: str, prompt: str) -> tuple[str, dict[str, str]]:
    created = await stack.relay.create_session(
        stack.daemon.environment_id, spawn=spawn, prompt=prompt
    )
    assert created.status_code == 201, created.text
    session_id: str = created.json()["id"]
    events = await stack.relay.wait_kind(session_id, "turn_result")
    started = next(e for e in events if e["kind"] == "session_started")["data"]
    return session_id, started


async def test_the_local_claude_continues_the_conversation_and_the_session_ends(
    stack: Stack,
) -> None:
    session_id, started = await start(stack, "same-dir", "echo remote words")
    before = len(stack.api.messages_bodies())
    status, out, err = await resume_locally(stack, session_id, "-p", "recall")
    assert status == 0, err
    assert out.strip() == "recalled: echo remote words"
    conversation = started["agent_session_id"]
    assert f"--resume {conversation} -p recall" in err
    assert f"in {stack.daemon.directory}" in err

    events = await stack.relay.events(session_id)
    assert events[-1]["kind"] == "session_ended"
    (body,) = stack.api.messages_bodies()[before:]
    assert "echo: echo remote words" in json.dumps(body["messages"])


async def test_a_kept_worktree_is_where_it_continues(stack: Stack) -> None:
    session_id, started = await start(stack, "worktree", "echo in a worktree")
    worktree = started["cwd"]
    assert worktree != str(stack.daemon.directory)
    # The agent leaves work in it: the worktree is kept when the session ends.
    posted = await stack.relay.post_message(session_id, f"write {worktree}/notes.txt hi", "m-1")
    assert posted.status_code == 202
    events = await stack.relay.wait_kind(session_id, "permission_request")
    request = next(e for e in events if e["kind"] == "permission_request")["data"]
    assert (await stack.relay.decide(session_id, request["request_id"], "allow")).is_success
    await stack.relay.wait_kind(session_id, "turn_result", 2)

    status, out, err = await resume_locally(stack, session_id, "-p", "run pwd")
    assert status == 0, err
    assert out.strip() == f"done: {worktree}"
    ended = (await stack.relay.events(session_id))[-1]
    assert ended["kind"] == "session_ended" and ended["data"]["worktree_kept"] is True


async def test_refused_where_claude_does_not_have_the_conversation(
    stack: Stack, tmp_path: Path
) -> None:
    session_id, _ = await start(stack, "same-dir", "echo stay")
    elsewhere = home_env(tmp_path / "other-home", claude_env(tmp_path / "other-home", "x"))
    status, _, err = await resume_locally(stack, session_id, env=elsewhere)
    assert status == 1
    assert "does not have the conversation" in err and "nothing was ended" in err, err
    assert (await stack.relay.session(session_id))["state"] == "idle"
    assert not any(e["kind"] == "session_ended" for e in await stack.relay.events(session_id))


async def test_resuming_on_the_phone_while_the_local_claude_has_it_is_refused(
    stack: Stack,
) -> None:
    session_id, started = await start(stack, "same-dir", "echo mine now")
    # Back to the terminal, where the conversation stays open (stdin kept open).
    conversation = started["agent_session_id"]
    assert (await stack.relay.client.post(f"/api/sessions/{session_id}/stop")).is_success
    await stack.relay.wait_kind(session_id, "session_ended")
    home = Path(stack.daemon.env["HOME"])
    async with open_conversation(home, stack.base_url, stack.daemon.directory, conversation) as cli:
        # The phone taps Resume: two claudes would write one transcript, so no.
        resumed = await stack.relay.client.post(f"/api/sessions/{session_id}/resume")
        assert resumed.status_code == 202, resumed.text
        events = await stack.relay.wait_kind(session_id, "session_ended", 2)
        error = [e for e in events if e["kind"] == "error"][-1]["data"]
        assert error["code"] == "resume_refused"
        assert f"open in a running claude (pid {cli.pid})" in error["message"]
