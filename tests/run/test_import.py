"""``rcd import``: a conversation the real pinned CLI had in a terminal (``claude -p``, two
turns, against the fake Messages API) is listed, continued in a session of the directory's
daemon with its earlier turns in the log, and the agent keeps the context; refused clearly
when the conversation is open in a running claude (by ``rcd import``, and by the daemon
itself when asked through the API), or when no daemon serves the directory."""

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
from testkit.fakes import (
    FakeMessagesAPI,
    claude_env,
    find_claude,
    local_conversation,
    open_conversation,
)
from testkit.harness import Daemon, Relay, start_daemon, start_relay


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
    async with trio.open_nursery() as nursery:
        api = FakeMessagesAPI()
        base_url: str = await nursery.start(api.run)
        relay = await start_relay(nursery, tmp_path / "relay")
        project, home = tmp_path / "project", tmp_path / "home"
        project.mkdir()
        daemon = await start_daemon(
            relay, home, project, "--capacity", "2",
            agent_bin=claude, extra_env=claude_env(home, base_url),
        )  # fmt: skip
        token = await trio.to_thread.run_sync(admin.create_device_token, relay.data_dir, "cli")
        try:
            yield Stack(api, base_url, relay, daemon, token)
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def rcd_import(stack: Stack, *args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-m", "cli", "import", *args, "--token", stack.token],
            env=stack.daemon.env, cwd=str(cwd or stack.daemon.directory),
            capture_stdout=True, capture_stderr=True, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def converse(stack: Stack, prompts: list[str], cwd: Path | None = None) -> str:
    home = Path(stack.daemon.env["HOME"])
    where = cwd or stack.daemon.directory
    return await trio.to_thread.run_sync(local_conversation, home, stack.base_url, where, prompts)


async def test_a_local_conversation_is_listed_imported_and_keeps_its_context(
    stack: Stack,
) -> None:
    conversation = await converse(stack, ["echo first words", "echo second words"])
    status, out, err = await rcd_import(stack)
    assert status == 0, err
    assert conversation in out and "echo first words" in out

    status, out, err = await rcd_import(stack, "--last", "--qr")
    assert status == 0, err
    url = out.splitlines()[0]
    assert url.startswith(f"{stack.relay.url}/s/ses_"), out
    assert "▄" in out or "█" in out  # the QR code
    session_id = url.rsplit("/", 1)[1]
    session = await stack.relay.session(session_id)
    assert session["environment_id"] == stack.daemon.environment_id
    assert session["title"] == "echo first words"

    events = await stack.relay.wait_kind(session_id, "status")
    shown = [
        (e["kind"], e["data"].get("text"), e["data"].get("origin"))
        for e in events
        if e["kind"] in ("user_message", "assistant_text")
    ]
    assert shown == [
        ("user_message", "echo first words", "terminal"),
        ("assistant_text", "echo: echo first words", None),
        ("user_message", "echo second words", "terminal"),
        ("assistant_text", "echo: echo second words", None),
    ]
    started = next(e for e in events if e["kind"] == "session_started")
    assert started["data"]["agent_session_id"] == conversation
    assert events[-1]["kind"] == "status" and events[-1]["data"]["state"] == "idle"

    # The next message goes to the same conversation: the agent knows the earlier turns.
    before = len(stack.api.messages_bodies())
    assert (await stack.relay.post_message(session_id, "recall", "m-1")).status_code == 202
    await stack.relay.wait_events(
        session_id,
        lambda evs: any(
            e["data"].get("text") == "recalled: echo first words | echo second words" for e in evs
        ),
    )
    (body,) = stack.api.messages_bodies()[before:]
    sent = json.dumps(body["messages"])
    assert "echo: echo first words" in sent and "echo: echo second words" in sent


async def test_refused_when_open_in_a_running_claude_or_when_no_daemon_serves(
    stack: Stack, tmp_path: Path
) -> None:
    conversation = await converse(stack, ["echo hold me"])
    home = Path(stack.daemon.env["HOME"])
    async with open_conversation(home, stack.base_url, stack.daemon.directory, conversation) as cli:
        status, _, err = await rcd_import(stack, conversation[:8])
        assert status == 1
        assert f"is open in a running claude (pid {cli.pid})" in err, err
        assert "/exit" in err

        # The daemon checks too: a client that asks the API directly gets the reason in
        # the session's log, and the session ends.
        created = await stack.relay.create_session(
            stack.daemon.environment_id, conversation=conversation
        )
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
        events = await stack.relay.wait_kind(session_id, "session_ended")
        error = next(e for e in events if e["kind"] == "error")
        assert error["data"]["code"] == "import_refused"
        assert f"pid {cli.pid}" in error["data"]["message"]
        assert not any(e["kind"] == "session_started" for e in events)

    # A bad id is refused by the relay, naming the field.
    bad = await stack.relay.create_session(stack.daemon.environment_id, conversation="../x")
    assert bad.status_code == 400 and "conversation" in bad.text

    unknown = await rcd_import(stack, "ffffffff")
    assert unknown[0] == 1 and "no conversation 'ffffffff'" in unknown[2]

    # A directory no daemon serves.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    await converse(stack, ["echo over there"], cwd=elsewhere)
    status, _, err = await rcd_import(stack, "--last", cwd=elsewhere)
    assert status == 1 and f"no daemon serves {elsewhere}" in err, err
