"""Issue-2 acceptance with the real ``claude`` CLI (pinned npm package) against the scripted
fake Messages API: relay, daemon and agents are all real processes and sockets."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from testkit.fakes import FakeMessagesAPI, claude_env, find_claude
from testkit.harness import Daemon, Relay, processes_in, start_daemon, start_relay
from testkit.sse import sse


@attrs.define
class Stack:
    relay: Relay
    api: FakeMessagesAPI
    daemon: Daemon
    project: Path


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    claude = find_claude()  # fails (never skips) with an install hint when missing
    project = tmp_path / "project"
    project.mkdir()
    async with trio.open_nursery() as nursery:
        api = FakeMessagesAPI()
        base_url: str = await nursery.start(api.run)
        relay = await start_relay(nursery, tmp_path / "relay")
        home = tmp_path / "home"
        daemon = await start_daemon(
            relay,
            home,
            project,
            "--capacity",
            "4",
            "--stop-timeout",
            "10",
            agent_bin=claude,
            extra_env=claude_env(home, base_url),
        )
        try:
            yield Stack(relay=relay, api=api, daemon=daemon, project=project)
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


def texts(events: list[dict[str, object]]) -> list[object]:
    return [e["data"]["text"] for e in events if e["kind"] == "assistant_text"]  # type: ignore[index]


async def session_pid(stack: Stack, session_id: str) -> int:
    for s in (await stack.daemon.status())["sessions"]:
        if s["id"] == session_id:
            return int(s["pid"])
    raise AssertionError(f"{session_id} is not running")


async def test_write_permission_allow_then_a_second_message_in_the_same_process(
    stack: Stack,
) -> None:
    relay, target = stack.relay, stack.project / "allowed.txt"
    r = await relay.create_session(
        stack.daemon.environment_id, prompt=f"write {target} hello world"
    )
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    events = await relay.wait_kind(sid, "permission_request")
    request = next(e for e in events if e["kind"] == "permission_request")["data"]
    assert request["tool"] == "Write"
    assert request["input"]["file_path"] == str(target)
    assert not target.exists()
    pid = await session_pid(stack, sid)
    assert (await relay.decide(sid, request["request_id"], "allow")).status_code == 202
    await relay.wait_kind(sid, "turn_result")
    assert target.read_text() == "hello world"
    assert (await relay.post_message(sid, "and now?", "m2")).status_code == 202
    events = await relay.wait_kind(sid, "turn_result", 2)
    assert texts(events)[-1] == "echo: and now?"
    assert await session_pid(stack, sid) == pid  # same agent process answered
    started = [e for e in events if e["kind"] == "session_started"]
    assert len(started) == 1 and started[0]["data"]["agent"] == "claude"
    assert started[0]["data"]["agent_session_id"]


async def test_deny_keeps_the_conversation_in_the_same_process(stack: Stack) -> None:
    relay, target = stack.relay, stack.project / "denied.txt"
    sid = (
        await relay.create_session(stack.daemon.environment_id, prompt=f"write {target} nope")
    ).json()["id"]
    events = await relay.wait_kind(sid, "permission_request")
    request = next(e for e in events if e["kind"] == "permission_request")["data"]
    pid = await session_pid(stack, sid)
    before = sorted(processes_in(stack.project))
    assert (await relay.decide(sid, request["request_id"], "deny")).status_code == 202
    events = await relay.wait_kind(sid, "turn_result")
    assert not target.exists()
    results = [e["data"] for e in events if e["kind"] == "tool_result"]
    assert results and results[0]["is_error"] is True
    assert (await relay.post_message(sid, "still with me?", "m2")).status_code == 202
    events = await relay.wait_kind(sid, "turn_result", 2)
    assert texts(events)[-1] == "echo: still with me?"
    assert await session_pid(stack, sid) == pid
    assert sorted(processes_in(stack.project)) == before  # no restart, nothing leaked


async def test_two_sessions_at_once(stack: Stack) -> None:
    relay = stack.relay
    env_id = stack.daemon.environment_id
    ids = [(await relay.create_session(env_id, prompt="sleep 4")).json()["id"] for i in range(2)]
    # While both are mid-turn, both agents are alive at the same time.
    for sid in ids:
        await relay.wait_events(
            sid,
            lambda evs: any(e["kind"] == "status" and e["data"]["state"] == "busy" for e in evs),
        )
    status = await stack.daemon.status()
    assert {s["id"] for s in status["sessions"]} == set(ids)
    assert len({s["pid"] for s in status["sessions"]}) == 2
    assert all(s["state"] == "busy" for s in status["sessions"])
    for sid in ids:
        events = await relay.wait_kind(sid, "turn_result")
        assert texts(events) == ["slept 4"]


async def test_message_posted_at_once_is_answered_and_duplicates_are_one(stack: Stack) -> None:
    relay = stack.relay
    r = await relay.create_session(stack.daemon.environment_id)
    sid = r.json()["id"]
    # The moment create returns: the agent is not running yet.
    first = await relay.post_message(sid, "first words", "dup-id")
    second = await relay.post_message(sid, "first words", "dup-id")
    assert (r.status_code, first.status_code, second.status_code) == (201, 202, 202)
    events = await relay.wait_kind(sid, "turn_result")
    assert [e["data"]["input_id"] for e in events if e["kind"] == "user_message"] == ["dup-id"]
    assert texts(events) == ["echo: first words"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    # The agent saw the message once: one model request for the one turn.
    assert len(stack.api.messages_bodies()) == 1


async def test_sse_stream_resumes_exactly_after_last_event_id(stack: Stack) -> None:
    relay = stack.relay
    sid = (await relay.create_session(stack.daemon.environment_id, prompt="one")).json()["id"]
    events = await relay.wait_kind(sid, "turn_result")
    cut = events[2]["seq"]
    assert (await relay.post_message(sid, "two", "m2")).status_code == 202
    seen: list[int] = []
    url = f"/api/sessions/{sid}/events"
    with trio.fail_after(30):
        async with sse(relay.client, url, {"Last-Event-ID": str(cut)}) as (response, reader):
            assert response.headers["content-type"].startswith("text/event-stream")
            results = 0
            while results < 2:
                message = await reader.next()
                assert message.id is not None
                seen.append(int(message.id))
                results += message.event == "turn_result"
    # Everything after the cut, once, in order, up to the second turn's result (live).
    assert seen == list(range(cut + 1, seen[-1] + 1))
    assert texts(await relay.events(sid))[-1] == "echo: two"


async def test_bad_client_calls_change_nothing(stack: Stack) -> None:
    relay = stack.relay
    sid = (await relay.create_session(stack.daemon.environment_id, prompt="hi")).json()["id"]
    before = await relay.wait_kind(sid, "turn_result")
    anonymous = httpx.AsyncClient(base_url=relay.url)
    async with anonymous:
        r = await anonymous.post(f"/api/sessions/{sid}/messages", json={"id": "x", "text": "hi"})
        assert r.status_code == 401 and r.json()["error"]["code"]
    for body in ({"id": "x"}, {"id": "x", "text": "hi", "extra": 1}, {"id": 5, "text": "hi"}, []):
        r = await relay.client.post(f"/api/sessions/{sid}/messages", json=body)
        assert 400 <= r.status_code < 500, (body, r.status_code)
        assert set(r.json()["error"]) == {"code", "message"}
    r = await relay.client.post(f"/api/sessions/{sid}/messages", content=b"{not json")
    assert r.status_code == 400
    # A good message last: the relay and the daemon keep the order of inputs, so anything
    # wrongly accepted would reach the agent before it.
    assert (await relay.post_message(sid, "after", "m-after")).status_code == 202
    events = await relay.wait_kind(sid, "turn_result", 2)
    assert events[: len(before)] == before
    later = events[len(before) :]
    assert [e["data"]["input_id"] for e in later if e["kind"] == "user_message"] == ["m-after"]
    assert not [e for e in later if e["kind"] == "error"]


async def test_sigterm_with_live_sessions(stack: Stack) -> None:
    relay, daemon = stack.relay, stack.daemon
    ids = [
        (await relay.create_session(daemon.environment_id, prompt=p)).json()["id"]
        for p in ("sleep 30", "hello", f"write {stack.project / 'x.txt'} y")
    ]
    await relay.wait_kind(ids[0], "user_message")
    await relay.wait_kind(ids[1], "turn_result")
    await relay.wait_kind(ids[2], "permission_request")
    assert processes_in(stack.project)
    with trio.fail_after(10):
        assert await daemon.stop(signal.SIGTERM) == 0
    assert processes_in(stack.project) == []
    for sid in ids:
        assert (await relay.session(sid))["state"] == "ended"
        assert (await relay.events(sid))[-1]["kind"] == "session_ended"
    [env] = await relay.environments()
    assert env["online"] is False
    assert os.path.exists(stack.project) and not (stack.project / "x.txt").exists()


async def test_interrupt_mid_turn_and_during_a_permission_prompt(stack: Stack) -> None:
    relay = stack.relay
    sid = (await relay.create_session(stack.daemon.environment_id, prompt="sleep 20")).json()["id"]
    await relay.wait_events(
        sid,
        lambda evs: (
            any(e["kind"] == "assistant_text" for e in evs)
            or any(e["kind"] == "status" and e["data"]["state"] == "busy" for e in evs)
        ),
    )
    assert (await relay.client.post(f"/api/sessions/{sid}/interrupt")).status_code == 202
    events = await relay.wait_kind(sid, "turn_result", timeout=10)
    assert [e["data"]["ok"] for e in events if e["kind"] == "turn_result"] == [False]
    assert not [e for e in events if e["kind"] == "error"]  # an interrupt is not an error
    # A pending permission prompt is withdrawn when its turn is interrupted.
    target = stack.project / "never.txt"
    assert (await relay.post_message(sid, f"write {target} x", "m2")).status_code == 202
    events = await relay.wait_kind(sid, "permission_request")
    request_id = next(e for e in events if e["kind"] == "permission_request")["data"]["request_id"]
    assert (await relay.client.post(f"/api/sessions/{sid}/interrupt")).status_code == 202
    events = await relay.wait_kind(sid, "turn_result", 2, timeout=10)
    resolved = [e["data"] for e in events if e["kind"] == "permission_resolved"]
    assert resolved == [{"request_id": request_id, "decision": "deny", "origin": "agent_cancelled"}]
    assert (await relay.session(sid))["state"] == "idle"
    assert not target.exists()
    assert (await relay.post_message(sid, "after", "m3")).status_code == 202
    events = await relay.wait_kind(sid, "turn_result", 3)
    assert texts(events)[-1] == "echo: after"
