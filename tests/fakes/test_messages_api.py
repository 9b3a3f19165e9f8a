"""The real Claude Code CLI against the scripted fake Messages API.

These tests pin down what spawn/ relies on (see NOTES.md next to this file): the stream-json
lines the CLI prints, the permission round trip on stdin/stdout, interrupts, resume, and what
the fake sees. Real processes and sockets, so the real clock under ``fail_after`` guards.

(Over 400 lines on purpose: each test pins one behaviour of the pinned CLI that spawn/
relies on, and they share one fake and one way of driving the CLI.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from testkit.fakes import (
    DEFAULT_RULES,
    STREAM_JSON_ARGS,
    FakeMessagesAPI,
    Reply,
    Turn,
    claude_env,
    find_claude,
    parse_turn,
)

JSON = dict[str, Any]
TURN_TIMEOUT_S = 30
EXIT_TIMEOUT_S = 10


@attrs.define(eq=False)
class CliSession:
    """One running ``claude -p --input-format stream-json ...`` process, driven line by line."""

    process: trio.Process
    stdin: trio.abc.SendStream
    lines: trio.MemoryReceiveChannel[JSON]
    seen: list[JSON] = attrs.field(factory=list)
    stderr: bytearray = attrs.field(factory=bytearray)

    async def send(self, message: JSON) -> None:
        await self.stdin.send_all(json.dumps(message).encode() + b"\n")

    async def say(self, text: str) -> None:
        await self.send({"type": "user", "message": {"role": "user", "content": text}})

    async def answer(self, request_id: str, response: JSON) -> None:
        await self.send(
            {
                "type": "control_response",
                "response": {"subtype": "success", "request_id": request_id, "response": response},
            }
        )

    async def until(self, match: Callable[[JSON], bool]) -> list[JSON]:
        """Lines up to and including the first that matches; fails on EOF."""
        got: list[JSON] = []
        async for line in self.lines:
            got.append(line)
            if match(line):
                return got
        raise AssertionError(f"stdout closed before the expected line; got {got}")

    async def until_type(self, kind: str) -> list[JSON]:
        return await self.until(lambda line: line.get("type") == kind)

    async def close_and_wait(self) -> int:
        """Close stdin (the CLI's cue to exit) and return its exit code."""
        await self.stdin.aclose()
        with trio.fail_after(EXIT_TIMEOUT_S):
            return await self.process.wait()


async def _read_lines(
    stream: trio.abc.ReceiveStream, send: trio.MemorySendChannel[JSON], seen: list[JSON]
) -> None:
    async with send:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                if raw.strip():
                    line = json.loads(raw)
                    seen.append(line)
                    await send.send(line)


async def _read_all(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    async for chunk in stream:
        into += chunk


@asynccontextmanager
async def claude(
    api: FakeMessagesAPI, home: Path, cwd: Path, *extra_args: str
) -> AsyncIterator[CliSession]:
    """Run the CLI in ``cwd`` with ``home`` as HOME; on exit close stdin, then kill if needed."""
    assert api.base_url is not None
    await trio.Path(cwd).mkdir(parents=True, exist_ok=True)
    process = await trio.lowlevel.open_process(
        [find_claude(), *STREAM_JSON_ARGS, *extra_args],
        cwd=cwd,
        env=claude_env(home, api.base_url),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdin and process.stdout and process.stderr
    send, receive = trio.open_memory_channel[JSON](100)
    session = CliSession(process=process, stdin=process.stdin, lines=receive)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_lines, process.stdout, send, session.seen)
            nursery.start_soon(_read_all, process.stderr, session.stderr)
            try:
                yield session
            finally:
                with trio.CancelScope(shield=True):
                    await _stop(process)
    finally:
        with trio.CancelScope(shield=True):
            for stream in (process.stdin, process.stdout, process.stderr):
                await stream.aclose()
            receive.close()


async def _stop(process: trio.Process) -> None:
    # Close stdin → grace → SIGKILL the whole group; always reap.
    assert process.stdin is not None
    await process.stdin.aclose()
    with trio.move_on_after(EXIT_TIMEOUT_S):
        await process.wait()
        return
    os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


@pytest.fixture
async def api(nursery: trio.Nursery) -> FakeMessagesAPI:
    fake = FakeMessagesAPI()
    await nursery.start(fake.run)
    return fake


def _text_of(line: JSON) -> str:
    return "".join(b.get("text", "") for b in line["message"]["content"] if b["type"] == "text")


def _is_init(line: JSON) -> bool:
    return line.get("type") == "system" and line.get("subtype") == "init"


async def test_echo_turn(api: FakeMessagesAPI, tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    with trio.fail_after(TURN_TIMEOUT_S):
        async with claude(api, tmp_path / "home", cwd) as cli:
            await cli.say("hello there")
            lines = await cli.until_type("result")
            assert await cli.close_and_wait() == 0

    init, assistant, result = lines
    assert _is_init(init)
    assert init["cwd"] == str(cwd)
    assert init["permissionMode"] == "default"
    assert "Write" in init["tools"] and "Bash" in init["tools"]
    session_id = init["session_id"]
    assert assistant["type"] == "assistant"
    assert assistant["session_id"] == session_id
    assert assistant["message"]["content"] == [{"type": "text", "text": "echo: hello there"}]
    assert result["subtype"] == "success"
    assert result["is_error"] is False
    assert result["result"] == "echo: hello there"
    assert result["session_id"] == session_id
    assert isinstance(result["duration_ms"], int)
    assert result["total_cost_usd"] > 0
    assert cli.stderr == b""
    assert api.messages_count == 1
    request = api.requests[0]
    assert (request.method, request.path, request.query) == ("POST", "/v1/messages", "beta=true")
    assert request.body["stream"] is True
    assert not request.side
    assert (tmp_path / "home" / ".claude" / "projects").is_dir()  # transcripts live in HOME


async def test_two_turns_in_one_process_and_history_is_resent(
    api: FakeMessagesAPI, tmp_path: Path
) -> None:
    with trio.fail_after(TURN_TIMEOUT_S):
        async with claude(api, tmp_path / "home", tmp_path / "work") as cli:
            await cli.say("first")
            first = await cli.until_type("result")
            await cli.say("second")
            second = await cli.until_type("result")
            assert await cli.close_and_wait() == 0

    assert first[-1]["result"] == "echo: first"
    assert second[-1]["result"] == "echo: second"
    assert _is_init(second[0])  # system/init is printed again at the start of every turn
    assert first[-1]["session_id"] == second[-1]["session_id"] == second[0]["session_id"]
    assert second[-1]["total_cost_usd"] > first[-1]["total_cost_usd"]  # cumulative
    first_body, second_body = api.messages_bodies()
    assert parse_turn(first_body).user_text == "first"
    roles = [m["role"] for m in second_body["messages"]]
    assert roles == ["user", "system", "assistant", "user"]
    assert second_body["messages"][2]["content"] == [{"type": "text", "text": "echo: first"}]
    assert parse_turn(second_body).user_text == "second"


async def test_write_allowed_writes_the_file(api: FakeMessagesAPI, tmp_path: Path) -> None:
    target = tmp_path / "work" / "hello.txt"
    with trio.fail_after(TURN_TIMEOUT_S):
        async with claude(api, tmp_path / "home", tmp_path / "work") as cli:
            await cli.say(f"write {target} hello world")
            before = await cli.until_type("control_request")
            assert not target.exists()  # nothing runs before the answer
            request = before[-1]
            await cli.answer(
                request["request_id"],
                {"behavior": "allow", "updatedInput": request["request"]["input"]},
            )
            after = await cli.until_type("result")
            assert await cli.close_and_wait() == 0

    tool_use = before[-2]["message"]["content"][0]
    assert tool_use["type"] == "tool_use" and tool_use["name"] == "Write"
    assert request["request"] == {
        "subtype": "can_use_tool",
        "tool_name": "Write",
        "display_name": "Write",
        "input": {"file_path": str(target), "content": "hello world"},
        "description": "hello.txt",
        "permission_suggestions": [
            {"type": "setMode", "mode": "acceptEdits", "destination": "session"}
        ],
        "tool_use_id": tool_use["id"],
    }
    assert target.read_text() == "hello world"
    tool_result_line = after[0]
    assert tool_result_line["type"] == "user"
    tool_result = tool_result_line["message"]["content"][0]
    assert tool_result["type"] == "tool_result" and tool_result["tool_use_id"] == tool_use["id"]
    assert tool_result["content"].startswith(f"File created successfully at: {target}")
    assert after[-1]["result"].startswith("done: File created successfully")
    assert after[-1]["permission_denials"] == []


async def test_write_denied_then_the_same_process_answers(
    api: FakeMessagesAPI, tmp_path: Path
) -> None:
    target = tmp_path / "work" / "nope.txt"
    with trio.fail_after(TURN_TIMEOUT_S):
        async with claude(api, tmp_path / "home", tmp_path / "work") as cli:
            await cli.say(f"write {target} secret")
            request = (await cli.until_type("control_request"))[-1]
            await cli.answer(request["request_id"], {"behavior": "deny", "message": "not today"})
            denied = await cli.until_type("result")
            await cli.say("still there?")
            after = await cli.until_type("result")
            assert await cli.close_and_wait() == 0

    assert not target.exists()
    tool_result = denied[0]["message"]["content"][0]
    assert tool_result == {
        "type": "tool_result",
        "content": "not today",
        "is_error": True,
        "tool_use_id": request["request"]["tool_use_id"],
    }
    # A plain deny does not end the turn: the model sees the message and answers.
    assert denied[-1]["subtype"] == "success"
    assert denied[-1]["result"] == "done: not today"
    assert [d["tool_name"] for d in denied[-1]["permission_denials"]] == ["Write"]
    assert after[-1]["result"] == "echo: still there?"
    assert after[-1]["session_id"] == denied[-1]["session_id"]


async def test_read_only_bash_runs_without_asking(api: FakeMessagesAPI, tmp_path: Path) -> None:
    with trio.fail_after(TURN_TIMEOUT_S):
        async with claude(api, tmp_path / "home", tmp_path / "work") as cli:
            await cli.say("run echo hi")
            lines = await cli.until_type("result")

    assert not [line for line in lines if line["type"] == "control_request"]
    assert lines[-1]["result"] == "done: hi"


async def test_interrupt_ends_a_streaming_turn(tmp_path: Path) -> None:
    asked = trio.Event()

    def spy(turn: Turn) -> Reply | None:  # rules are plain callables: a hook sees every turn
        if turn.user_text == "sleep 20":
            asked.set()
        return None

    api = FakeMessagesAPI(rules=[spy, *DEFAULT_RULES])
    with trio.fail_after(TURN_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(api.run)
            async with claude(api, tmp_path / "home", tmp_path / "work") as cli:
                await cli.say("sleep 20")
                await cli.until(_is_init)
                await asked.wait()  # the fake is streaming now, one delta per 100 ms
                await cli.send(
                    {
                        "type": "control_request",
                        "request_id": "int-1",
                        "request": {"subtype": "interrupt"},
                    }
                )
                lines = await cli.until_type("result")
                await cli.say("after")
                after = await cli.until_type("result")
            nursery.cancel_scope.cancel()

    kinds = [line["type"] for line in lines]
    assert kinds[0] == "control_response"
    assert lines[0]["response"] == {
        "subtype": "success",
        "request_id": "int-1",
        "response": {"still_queued": []},
    }
    # The partial assistant message (marked "aborted") is printed only if some text had
    # already arrived when the interrupt landed; the marker and the result always come.
    if kinds[1] == "assistant":
        assert lines[1]["aborted"] is True
        assert "slept 20".startswith(_text_of(lines[1]))
        del kinds[1], lines[1]
    assert kinds[1:] == ["user", "result"]
    assert _text_of(lines[1]) == "[Request interrupted by user]"
    result = lines[-1]
    assert (result["subtype"], result["is_error"]) == ("error_during_execution", True)
    assert result["terminal_reason"] == "aborted_streaming"
    assert result["duration_ms"] < 15_000
    assert after[-1]["result"] == "echo: after"


async def test_resume_sends_the_earlier_conversation(tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "work"
    first_api, second_api = FakeMessagesAPI(), FakeMessagesAPI()
    with trio.fail_after(TURN_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(first_api.run)
            await nursery.start(second_api.run)
            async with claude(first_api, home, cwd) as cli:
                await cli.say("remember apples")
                session_id = (await cli.until_type("result"))[-1]["session_id"]
                assert await cli.close_and_wait() == 0
            async with claude(second_api, home, cwd, "--resume", session_id) as cli:
                await cli.say("what did I say?")
                lines = await cli.until_type("result")
                assert await cli.close_and_wait() == 0
            nursery.cancel_scope.cancel()

    assert lines[0]["session_id"] == session_id == lines[-1]["session_id"]
    assert lines[-1]["result"] == "echo: what did I say?"
    (body,) = second_api.messages_bodies()
    texts = json.dumps(body["messages"])
    assert "remember apples" in texts and "echo: remember apples" in texts


async def test_concurrent_sessions_share_one_fake(api: FakeMessagesAPI, tmp_path: Path) -> None:
    results: dict[str, str] = {}

    async def one(name: str) -> None:
        async with claude(api, tmp_path / name / "home", tmp_path / name / "work") as cli:
            await cli.say(f"I am {name}")
            results[name] = (await cli.until_type("result"))[-1]["result"]

    with trio.fail_after(TURN_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            for name in ("a", "b", "c"):
                nursery.start_soon(one, name)

    assert results == {name: f"echo: I am {name}" for name in "abc"}


def test_find_claude_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RCD_CLAUDE_BIN", "/nonexistent/claude")
    with pytest.raises(RuntimeError, match="npm ci"):
        find_claude()


def test_parse_turn_skips_reminders_system_messages_and_interrupt_markers() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>\nx\n</system-reminder>\n"},
                    {"type": "text", "text": "hello"},
                ],
            },
            {"role": "system", "content": [{"type": "text", "text": "# Environment"}]},
        ]
    }
    assert parse_turn(body).user_text == "hello"
    merged = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t", "content": "rejected"},
                    {"type": "text", "text": "[Request interrupted by user for tool use]\n"},
                    {"type": "text", "text": "next"},
                ],
            },
        ]
    }
    turn = parse_turn(merged)
    assert (turn.user_text, turn.tool_results) == ("next", ())
