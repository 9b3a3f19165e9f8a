"""Replies that stream, with the real ``claude`` CLI against the fake Messages API: what a
phone sees while the agent writes, and that the session log is the same without it."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

import wire
from relay import admin
from spawn import ClaudeCode, Kept, SessionRuntime, Workspace
from testkit.fakes import FakeMessagesAPI, claude_env, find_claude
from testkit.harness import Daemon, Relay, home_env, start_daemon, start_relay
from testkit.sse import SSEReader, sse
from testkit.waiting import eventually
from tests.attach.pty_client import attach_argv, open_attach

GUARD = 60


@attrs.define
class Written:
    """What a reader of one session's stream saw: its events, and after each piece of the
    reply being written, the text it shows (``wire.apply_partial``)."""

    events: list[dict[str, Any]] = attrs.Factory(list)
    shown: list[wire.Shown] = attrs.Factory(list)
    first_partial: wire.AssistantPartial | None = None

    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else 0

    async def follow(self, reader: SSEReader, until: str) -> None:
        current: wire.Shown | None = None
        while not any(e["kind"] == until for e in self.events):
            message = await reader.next()
            assert message.data is not None
            if message.event == wire.PARTIAL_EVENT:
                assert message.id is None
                partial = wire.decode_json(wire.AssistantPartial, message.data)
                self.first_partial = self.first_partial or partial
                current = wire.apply_partial(current, partial, self.last_seq())
                if current is not None:
                    self.shown.append(current)
            else:
                self.events.append(json.loads(message.data))


@attrs.define
class Stack:
    relay: Relay
    streaming: Daemon
    finished_only: Daemon


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """One relay, two daemons of the real CLI: one streaming (the default), one
    ``--no-stream``."""
    claude = find_claude()
    async with trio.open_nursery() as nursery:
        api = FakeMessagesAPI()
        base_url: str = await nursery.start(api.run)
        relay = await start_relay(nursery, tmp_path / "relay")
        daemons = []
        for name, extra in (("streaming", ()), ("finished", ("--no-stream",))):
            project = tmp_path / name
            project.mkdir()
            home = tmp_path / f"home-{name}"
            daemons.append(
                await start_daemon(
                    relay, home, project, *extra, agent_bin=claude,
                    extra_env=claude_env(home, base_url),
                )
            )  # fmt: skip
        try:
            yield Stack(relay=relay, streaming=daemons[0], finished_only=daemons[1])
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


def finished(events: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """A turn's stored events, without what differs from run to run."""
    volatile = {"at", "duration_ms", "cost_usd", "cwd", "agent_session_id", "input_id"}
    return [(e["kind"], {k: v for k, v in e["data"].items() if k not in volatile}) for e in events]


async def test_a_slow_reply_grows_on_the_phone_and_the_log_keeps_only_the_finished_one(
    stack: Stack,
) -> None:
    relay = stack.relay
    sid = (await relay.create_session(stack.streaming.environment_id)).json()["id"]
    await relay.wait_kind(sid, "status")
    url = f"/api/sessions/{sid}/events?partials=1"
    phone, late = Written(), Written()
    with trio.fail_after(GUARD):
        async with (
            sse(relay.client, url, {}) as (_, reader),
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(phone.follow, reader, "turn_result")
            assert (await relay.post_message(sid, "slow 3", "m1")).status_code == 202
            await eventually(
                lambda: len(phone.shown) >= 3, timeout=20, what="the reply to start growing"
            )

            # A second phone opens the session mid-reply: the text so far comes whole.
            async def join_late() -> None:
                async with sse(relay.client, url, {}) as (_, late_reader):
                    await late.follow(late_reader, "turn_result")

            nursery.start_soon(join_late)

    final = [e["data"]["text"] for e in phone.events if e["kind"] == "assistant_text"]
    assert len(final) == 1 and final[0].startswith("t0001 t0002")
    texts = [s.text for s in phone.shown]
    # Growing at least 5 times before the finished message, each a start of it.
    assert len(set(texts)) >= 5, texts
    assert all(final[0].startswith(t) for t in texts)
    assert all(len(a) <= len(b) for a, b in itertools.pairwise(texts))
    message_seq = next(e["seq"] for e in phone.events if e["kind"] == "assistant_text")
    assert {s.after_seq for s in phone.shown} == {message_seq - 1}
    # The late phone's first piece was the text so far, from its first character.
    assert late.first_partial is not None and late.first_partial.offset == 0
    assert len(late.first_partial.text) >= len(texts[2]) and final[0].startswith(
        late.first_partial.text
    )

    # The log: the same finished events as a daemon that does not stream.
    other = (await relay.create_session(stack.finished_only.environment_id)).json()["id"]
    await relay.wait_kind(other, "status")
    assert (await relay.post_message(other, "slow 3", "m1")).status_code == 202
    await relay.wait_kind(other, "turn_result")
    streamed = await relay.wait_kind(sid, "turn_result")
    plain = await relay.events(other)
    assert finished(streamed) == finished(plain)
    assert not any(e["kind"] == wire.PARTIAL_EVENT for e in streamed)


async def test_the_session_hands_on_text_and_tool_input_as_written(tmp_path: Path) -> None:
    """The runtime, with the real CLI: every piece goes to ``publish_partial``, placed
    after the log's last event; joined, they are the finished message and the tool's input."""
    events: list[wire.Event] = []
    pieces: list[wire.AssistantPartial] = []
    changed = trio.Event()

    def publish(event: wire.Event) -> None:
        nonlocal changed
        events.append(event)
        changed.set()
        changed = trio.Event()

    async def prepare() -> Workspace:
        return Workspace(cwd=str(tmp_path / "work"), spawn="same-dir")

    async def release(workspace: Workspace) -> Kept:
        return Kept(kept=False)

    async def wait_kind(kind: str) -> wire.Event:
        while not any(e.kind == kind for e in events):
            await changed.wait()
        return next(e for e in events if e.kind == kind)

    (tmp_path / "work").mkdir()
    target = tmp_path / "work" / "out.txt"
    async with trio.open_nursery() as nursery:
        api = FakeMessagesAPI()
        base_url: str = await nursery.start(api.run)
        runtime = SessionRuntime(
            session_id="s1",
            adapter=ClaudeCode(binary=find_claude()),
            publish=publish,
            publish_partial=pieces.append,
            prepare=prepare,
            release=release,
            env=claude_env(tmp_path / "home", base_url) | {"PWD": os.getcwd()},
        )
        nursery.start_soon(runtime.run)
        runtime.deliver(
            wire.SendMessage(
                session_id="s1", input_id="m1", text=f"write {target} hello", origin="t"
            )
        )
        with trio.fail_after(GUARD):
            request = await wait_kind("permission_request")
        runtime.deliver(
            wire.DecidePermission(
                session_id="s1",
                request_id=request.data["request_id"],
                decision="deny",
                origin="t",
            )
        )
        with trio.fail_after(GUARD):
            await wait_kind("turn_result")
        runtime.request_stop("test")
        with trio.fail_after(GUARD):
            await runtime.ended.wait()
        nursery.cancel_scope.cancel()
    tool_use = next(e for e in events if e.kind == "tool_use")
    joined: dict[tuple[int, int], wire.Shown] = {}
    for p in pieces:
        key = (p.after_seq, p.block)
        shown = wire.apply_partial(joined.get(key), p, 0)
        assert shown is not None
        joined[key] = shown
    tool_inputs = [s for s in joined.values() if s.kind == "tool_input"]
    assert [(s.name, json.loads(s.text)) for s in tool_inputs] == [
        ("Write", tool_use.data["input"])
    ]
    # Placed after the log's last event when it was written (the tool_use came next).
    assert tool_inputs[0].after_seq == tool_use.seq - 1
    assert not any(isinstance(e, wire.AssistantPartial) for e in events)


async def test_rcd_attach_shows_the_reply_growing_on_its_prompt_line(
    stack: Stack, tmp_path: Path
) -> None:
    relay = stack.relay
    response = await relay.create_session(stack.streaming.environment_id, prompt="hi")
    session_id = response.json()["id"]
    await relay.wait_kind(session_id, "turn_result")
    token = await trio.to_thread.run_sync(admin.create_device_token, relay.data_dir, "term")
    env = home_env(tmp_path / "attach-home")
    env.pop("RCD_TOKEN", None)
    argv = attach_argv(session_id, "--relay", relay.url, "--token", token)
    async with open_attach(argv, env) as term:
        await term.expect("idle > ")
        await term.type_line("slow 3")
        # The newest words of the reply being written, on the prompt line as it grows.
        await term.expect("writing: t0001 t0002 t0003")
        await term.expect(r"writing: …[^>]* t0010 >", regex=True)
        await term.expect(r"writing: …[^>]* t0020 >", regex=True)
        # Then the finished message, printed once, and the prompt without it.
        final = "t0001 t0002 t0003"
        await term.expect(final)
        await term.expect("idle > ")
        await term.type_line("/quit")
        assert await term.wait() == 0
    printed = [line for line in term.lines() if line.startswith(final)]
    assert len(printed) == 1 and printed[0].rstrip().endswith("t0030")
