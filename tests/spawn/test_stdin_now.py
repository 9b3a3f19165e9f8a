"""A message to an idle agent is written to its stdin as it is delivered, not a scheduler
pass later (the agent is what waits for it); everything else keeps the inputs' order and
the waiting write. Real processes: the tiny stream-json agent, ``sleep``, ``cat``."""

from __future__ import annotations

import os
import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from spawn import SessionRuntime
from spawn.lines import json_line
from spawn.process import AgentProcess, open_agent_process

from .test_session import Log, make_runtime, message


async def _agent(argv: list[str], tmp_path: Path) -> AgentProcess:
    return await open_agent_process(
        argv, cwd=str(tmp_path), env=dict(os.environ), not_found_hint=""
    )


@asynccontextmanager
async def _idle_session(tmp_path: Path) -> AsyncIterator[tuple[Log, SessionRuntime]]:
    """A session of the tiny agent, started: the agent waits, and so does every task (the
    inputs' one included)."""
    log = Log()
    runtime = make_runtime(log, tmp_path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runtime.run)
        await log.wait_for(
            lambda evs: any(e.kind == "status" and e.data["state"] == "idle" for e in evs)
        )
        await trio.testing.wait_all_tasks_blocked()
        yield log, runtime


async def test_a_line_the_pipe_takes_goes_whole_or_not_at_all(tmp_path: Path) -> None:
    agent = await _agent(["sleep", "300"], tmp_path)  # never reads its stdin
    try:
        line = b"x" * 99  # 100 bytes with its newline
        written = 0
        while agent.write_line_now(line):
            written += 1
        # The pipe filled up: every line before went whole, the one refused not at all.
        assert written > 0
        assert agent.write_line_now(b"y" * (select.PIPE_BUF + 1)) is False
        await agent.terminate(1.0)
        assert agent.write_line_now(line) is False  # gone: the waiting write reports it
        with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
            await agent.write_line(line)
    finally:
        await agent.terminate(1.0)


async def test_a_line_over_pipe_buf_takes_the_waiting_write(tmp_path: Path) -> None:
    agent = await _agent(["cat"], tmp_path)
    assert agent.process.stdout is not None
    try:
        long = b"z" * (4 * select.PIPE_BUF)
        assert agent.write_line_now(long) is False  # over PIPE_BUF: never half a line
        got = bytearray()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.write_line, long)
            with trio.fail_after(10):
                while len(got) < len(long) + 1:
                    got += await agent.process.stdout.receive_some()
        assert bytes(got) == long + b"\n"
    finally:
        await agent.terminate(1.0)


async def test_a_message_to_an_idle_agent_is_applied_as_it_is_delivered(
    tmp_path: Path,
) -> None:
    async with _idle_session(tmp_path) as (log, runtime):
        runtime.deliver(message("now", "m1"))
        # No scheduler pass in between: the turn began, its line is the agent's.
        assert [e.data["input_id"] for e in log.of("user_message")] == ["m1"]
        assert runtime.state == "busy"
        runtime.deliver(message("now", "m1"))  # the same input again: applied once
        runtime.deliver(message("next", "m2"))  # a turn runs: it waits for its result
        assert len(log.of("user_message")) == 1
        await log.wait_kind("turn_result", 2)
        runtime.request_stop("test")
    assert log.replies() == ["echo: now", "echo: next"]
    assert [e.data["input_id"] for e in log.of("user_message")] == ["m1", "m2"]


async def test_a_message_after_a_stop_never_overtakes_it(tmp_path: Path) -> None:
    async with _idle_session(tmp_path) as (log, runtime):
        runtime.request_stop("test")
        runtime.deliver(message("too late", "m1"))
        assert log.of("user_message") == []
        await log.wait_kind("session_ended")
    assert log.of("user_message") == []
    [error] = log.of("error")  # the relay took it: the log says it never went
    assert error.data["code"] == "message_not_sent"
    assert "too late" in error.data["message"]
    assert log.events[-1].data["reason"] == "stopped"


async def test_a_message_on_a_session_forced_down_is_not_sent(tmp_path: Path) -> None:
    async with _idle_session(tmp_path) as (log, runtime):
        runtime.cancel()
        runtime.deliver(message("too late", "m1"))
        await log.wait_kind("session_ended")
    assert log.of("user_message") == []


async def test_messages_waiting_behind_a_turn_when_a_stop_comes_are_not_sent(
    tmp_path: Path,
) -> None:
    async with _idle_session(tmp_path) as (log, runtime):
        runtime.deliver(message("sleep 30", "m1"))  # the tiny agent's slow turn
        runtime.deliver(message("second", "m2"))
        runtime.deliver(message("third", "m3"))
        runtime.request_stop("test")
        await log.wait_kind("session_ended")
    assert [e.data["input_id"] for e in log.of("user_message")] == ["m1"]
    not_sent = [e.data["message"] for e in log.of("error") if e.data["code"] == "message_not_sent"]
    assert len(not_sent) == 2
    assert "second" in not_sent[0] and "third" in not_sent[1]
    assert log.events[-1].data["reason"] == "stopped"


async def test_a_long_message_to_an_idle_agent_is_answered(tmp_path: Path) -> None:
    text = "long " * select.PIPE_BUF
    async with _idle_session(tmp_path) as (log, runtime):
        runtime.deliver(message(text, "m1"))
        assert log.of("user_message") == []  # too long to go at once: the inputs' task
        await log.wait_kind("turn_result")
        runtime.request_stop("test")
    assert log.replies() == [f"echo: {text}"]


def test_a_lone_surrogate_goes_to_the_agent_escaped() -> None:
    assert json_line({"t": "é"}) == '{"t":"é"}'.encode()
    assert json_line({"t": "a\ud800é"}) == b'{"t":"a\\ud800\\u00e9"}'
