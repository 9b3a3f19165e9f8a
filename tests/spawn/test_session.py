"""SessionRuntime with a real subprocess: the tiny stream-json agent from testkit/fakes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

import wire
from spawn import ClaudeCode, Kept, SessionRuntime, Workspace, WorkspaceError
from spawn.adapter import AgentEvent, AgentHandle, AgentLaunch, EventSink

TINY_AGENT = str(Path(__file__).parents[2] / "testkit" / "fakes" / "tiny_agent.py")


@attrs.define
class Log:
    """Collects a session's events and lets a test wait for one."""

    events: list[wire.Event] = attrs.Factory(list)
    _changed: trio.Event = attrs.Factory(trio.Event)

    def publish(self, event: wire.Event) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = trio.Event()

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of(self, kind: str) -> list[wire.Event]:
        return [e for e in self.events if e.kind == kind]

    def replies(self) -> list[str]:
        """The agent's ``assistant_text``s, in order."""
        return [e.data["text"] for e in self.of("assistant_text")]

    async def wait_for(self, predicate: Callable[[list[wire.Event]], bool]) -> None:
        with trio.fail_after(10):
            while not predicate(self.events):
                await self._changed.wait()

    async def wait_kind(self, kind: str, count: int = 1) -> wire.Event:
        await self.wait_for(lambda evs: sum(e.kind == kind for e in evs) >= count)
        return self.of(kind)[count - 1]


@attrs.define
class SlowToResume:
    """An agent's handle whose :meth:`answer_permission` returns only once the agent's reply
    to the decision (its tool's result) has reached the session: the quick agent and the
    daemon slow to resume after writing, that a loaded machine gives now and then."""

    inner: AgentHandle
    replied: trio.Event

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def answer_permission(
        self, request_id: str, decision: wire.Decision, message: str | None
    ) -> None:
        await self.inner.answer_permission(request_id, decision, message)
        with trio.fail_after(10):
            await self.replied.wait()


@attrs.define
class QuickAgent:
    """The tiny agent, through :class:`SlowToResume`."""

    inner: ClaudeCode = attrs.Factory(lambda: ClaudeCode(binary=TINY_AGENT))
    name: str = "claude"
    replied: trio.Event = attrs.Factory(trio.Event)

    async def run(
        self,
        launch: AgentLaunch,
        sink: EventSink,
        *,
        task_status: trio.TaskStatus[AgentHandle] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async def spy(event: AgentEvent) -> None:
            await sink(event)
            if isinstance(event, wire.ToolResult):
                self.replied.set()

        async with trio.open_nursery() as nursery:
            handle = await nursery.start(self.inner.run, launch, spy)
            task_status.started(SlowToResume(handle, self.replied))


def make_runtime(
    log: Log, tmp_path: Path, binary: str = TINY_AGENT, prepare_error: str | None = None
) -> SessionRuntime:
    async def prepare() -> Workspace:
        if prepare_error:
            raise WorkspaceError(prepare_error)
        return Workspace(cwd=str(tmp_path), spawn="same-dir")

    async def release(workspace: Workspace) -> Kept:
        return Kept(kept=False)

    return SessionRuntime(
        session_id="s1",
        adapter=ClaudeCode(binary=binary),
        publish=log.publish,
        prepare=prepare,
        release=release,
        env=dict(os.environ),
        stop_grace=2.0,
    )


def message(text: str, input_id: str) -> wire.SendMessage:
    return wire.SendMessage(session_id="s1", input_id=input_id, text=text, origin="test")


def decide(request: wire.Event, decision: wire.Decision) -> wire.DecidePermission:
    """The phone's answer to the ``permission_request`` event ``request``."""
    return wire.DecidePermission(
        session_id="s1", request_id=request.data["request_id"], decision=decision, origin="phone"
    )


def after(log: Log, request: wire.Event) -> list[str]:
    """What the log says after ``request``: each event's kind, a status its state (the
    session's end left out)."""
    return [
        e.kind if e.kind != "status" else e.data["state"]
        for e in log.events
        if e.seq > request.seq and e.kind != "session_ended"
    ]


def assert_dense(log: Log) -> None:
    assert [e.seq for e in log.events] == list(range(1, len(log.events) + 1))


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_messages_sent_before_the_agent_is_ready_are_answered_in_order(
    tmp_path: Path,
) -> None:
    log = Log()
    runtime = make_runtime(log, tmp_path)
    async with trio.open_nursery() as nursery:
        # Delivered before run(): the session is still "queued".
        runtime.deliver(message("prompt", "p"))
        runtime.deliver(message("first", "m1"))
        runtime.deliver(message("second", "m2"))
        runtime.deliver(message("first again", "m1"))  # same input id: applied once
        nursery.start_soon(runtime.run)
        await log.wait_kind("turn_result", 3)
        runtime.request_stop("test")
    assert log.replies() == ["echo: prompt", "echo: first", "echo: second"]
    assert [e.data["input_id"] for e in log.of("user_message")] == ["p", "m1", "m2"]
    assert log.kinds()[:3] == ["status", "session_started", "status"]
    assert log.events[-1].kind == "session_ended"
    assert log.events[-1].data["reason"] == "stopped"
    assert runtime.state == "ended"
    assert_dense(log)


async def test_each_user_message_is_followed_by_its_answer(tmp_path: Path) -> None:
    log = Log()
    runtime = make_runtime(log, tmp_path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runtime.run)
        for i in range(3):
            runtime.deliver(message(f"n{i}", f"m{i}"))
        await log.wait_kind("turn_result", 3)
        runtime.request_stop("test")
    conversation = [
        e.kind for e in log.events if e.kind in ("user_message", "assistant_text", "turn_result")
    ]
    assert conversation == ["user_message", "assistant_text", "turn_result"] * 3
    states = [e.data["state"] for e in log.of("status")]
    assert states[:4] == ["starting", "idle", "busy", "idle"]


@pytest.mark.parametrize("decision", ["allow", "deny"])
async def test_permission_round_trip(tmp_path: Path, decision: wire.Decision) -> None:
    log = Log()
    runtime = make_runtime(log, tmp_path)
    target = tmp_path / "out.txt"
    async with trio.open_nursery() as nursery:
        runtime.deliver(message(f"write {target} hello", "m1"))
        nursery.start_soon(runtime.run)
        request = await log.wait_kind("permission_request")
        assert runtime.state == "awaiting_permission"
        assert request.data["tool"] == "Write"
        assert request.data["input"] == {"file_path": str(target), "content": "hello"}
        assert str(target) in request.data["description"]
        pid = runtime.snapshot().pid
        runtime.deliver(decide(request, decision))
        await log.wait_kind("turn_result")
        runtime.deliver(message("still there?", "m2"))
        await log.wait_kind("turn_result", 2)
        # The same agent process answered after the decision: no restart.
        assert runtime.snapshot().pid == pid
        runtime.request_stop("test")
    resolved = log.of("permission_resolved")
    assert [e.data for e in resolved] == [
        {"request_id": request.data["request_id"], "decision": decision, "origin": "phone"}
    ]
    result = log.of("tool_result")[0].data
    assert result["is_error"] is (decision == "deny")
    assert target.exists() is (decision == "allow")
    assert pid is not None and not process_alive(pid)
    assert_dense(log)


@pytest.mark.parametrize("decision", ["allow", "deny"])
async def test_the_decision_is_logged_before_the_agent_answers_it(
    tmp_path: Path, decision: wire.Decision
) -> None:
    """However quickly the agent acts on a decision, the log shows the decision first (the
    phone and ``rcd attach`` print the log in order: "denied by bob", then what followed)."""
    log = Log()
    runtime = make_runtime(log, tmp_path)
    runtime.adapter = QuickAgent()
    target = tmp_path / "out.txt"
    async with trio.open_nursery() as nursery:
        runtime.deliver(message(f"write {target} hello", "m1"))
        nursery.start_soon(runtime.run)
        request = await log.wait_kind("permission_request")
        runtime.deliver(decide(request, decision))
        await log.wait_kind("turn_result")
        runtime.request_stop("test")
    turn = after(log, request)
    assert turn[:5] == [
        "awaiting_permission",
        "permission_resolved",
        "busy",
        "tool_result",
        "assistant_text",
    ]
    assert_dense(log)


async def test_a_turn_that_ends_with_a_prompt_open_closes_it_first(tmp_path: Path) -> None:
    """The agent ends its turn without waiting for an answer: the prompt is closed (denied,
    the turn ended) before the turn's end shows, and a late answer is not sent."""
    log = Log()
    runtime = make_runtime(log, tmp_path)
    async with trio.open_nursery() as nursery:
        runtime.deliver(message("abandon", "m1"))
        nursery.start_soon(runtime.run)
        request = await log.wait_kind("permission_request")
        await log.wait_kind("turn_result")
        runtime.deliver(decide(request, "allow"))
        runtime.deliver(message("after", "m2"))
        await log.wait_kind("turn_result", 2)
        runtime.request_stop("test")
    turn = after(log, request)
    assert turn[:4] == ["awaiting_permission", "permission_resolved", "turn_result", "idle"]
    [resolved] = log.of("permission_resolved")
    assert (resolved.data["decision"], resolved.data["origin"]) == ("deny", "turn_ended")
    assert log.replies() == ["echo: after"]
    assert_dense(log)


async def test_interrupt_ends_the_turn_and_the_session_goes_on(tmp_path: Path) -> None:
    log = Log()
    runtime = make_runtime(log, tmp_path)
    async with trio.open_nursery() as nursery:
        runtime.deliver(message("sleep 30", "m1"))
        nursery.start_soon(runtime.run)
        await log.wait_for(
            lambda evs: any(e.kind == "status" and e.data["state"] == "busy" for e in evs)
        )
        with trio.fail_after(5):
            runtime.deliver(wire.Interrupt(session_id="s1"))
            result = await log.wait_kind("turn_result")
        assert result.data["ok"] is False
        runtime.deliver(message("after", "m2"))
        await log.wait_kind("turn_result", 2)
        runtime.request_stop("test")
    assert runtime.state == "ended"


async def test_a_streaming_turn_goes_up_step_by_step_and_can_be_interrupted(
    tmp_path: Path,
) -> None:
    """The stand-in's ``stream`` (the benchmarks' busy agent) says something at its rate."""
    log = Log()
    runtime = make_runtime(log, tmp_path)
    async with trio.open_nursery() as nursery:
        runtime.deliver(message("stream 0.5 20", "m1"))
        nursery.start_soon(runtime.run)
        result = await log.wait_kind("turn_result")
        steps = [e for e in log.of("assistant_text") if "working, step" in e.data["text"]]
        assert 3 <= len(steps) <= 10, len(steps)
        assert steps[0].seq < steps[-1].seq < result.seq
        runtime.deliver(message("stream 30 20", "m2"))
        await log.wait_for(lambda evs: len([e for e in evs if e.kind == "assistant_text"]) > 12)
        with trio.fail_after(5):
            runtime.deliver(wire.Interrupt(session_id="s1"))
            interrupted = await log.wait_kind("turn_result", 2)
        assert interrupted.data["ok"] is False
        runtime.request_stop("test")
    assert_dense(log)


async def test_agent_crash_is_an_error_and_an_ended_session(tmp_path: Path) -> None:
    log = Log()
    runtime = make_runtime(log, tmp_path)
    with trio.fail_after(10):
        runtime.deliver(message("crash", "m1"))
        await runtime.run()
    error = log.of("error")[-1].data
    assert error["code"] == "agent_exited"
    assert "code 3" in error["message"]
    assert log.events[-1].kind == "session_ended"
    assert log.events[-1].data["reason"] == "agent_exited"
    assert_dense(log)


async def test_missing_agent_binary_ends_the_session_with_a_clear_error(tmp_path: Path) -> None:
    log = Log()
    runtime = make_runtime(log, tmp_path, binary=str(tmp_path / "no-such-claude"))
    with trio.fail_after(10):
        runtime.deliver(message("hello", "m1"))
        await runtime.run()
    error = log.of("error")[0].data
    assert error["code"] == "agent_not_found"
    assert "no-such-claude" in error["message"] and "npm install" in error["message"]
    assert log.events[-1].data["reason"] == "agent_not_found"
    assert "session_started" not in log.kinds()


async def test_workspace_failure_ends_the_session(tmp_path: Path) -> None:
    log = Log()
    runtime = make_runtime(log, tmp_path, prepare_error="disk full")
    with trio.fail_after(10):
        await runtime.run()
    assert log.of("error")[0].data == {"code": "workspace_failed", "message": "disk full"}
    assert log.events[-1].data["reason"] == "workspace_failed"


async def test_cancel_kills_and_reaps_the_agent(tmp_path: Path) -> None:
    log = Log()
    runtime = make_runtime(log, tmp_path)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            runtime.deliver(message("sleep 60", "m1"))
            nursery.start_soon(runtime.run)
            await log.wait_kind("user_message")
            pid = runtime.snapshot().pid
            runtime.cancel()
    assert pid is not None and not process_alive(pid)
    assert log.events[-1].kind == "session_ended"


def test_tiny_agent_is_executable() -> None:
    assert os.access(TINY_AGENT, os.X_OK), f"chmod +x {TINY_AGENT}"


async def test_a_block_that_outlives_an_event_goes_again_whole(tmp_path: Path) -> None:
    """Pieces of the block being written go on with their offsets; once an event is in the
    log meanwhile (the state changed, say), the block goes whole, after that event."""
    from spawn.adapter import Streaming

    log, pieces = Log(), list[wire.AssistantPartial]()
    runtime = make_runtime(log, tmp_path)
    runtime.publish_partial = pieces.append
    sink = runtime._on_agent  # the adapter's EventSink
    await sink(Streaming(block=0, kind="text", text="", start=True))
    await sink(Streaming(block=0, kind="text", text="Hello"))
    await sink(Streaming(block=0, kind="text", text=", wor"))
    runtime._emit(wire.Status(state="busy"))  # an event of the log, mid-block
    await sink(Streaming(block=0, kind="text", text="ld"))
    assert [(p.after_seq, p.offset, p.text) for p in pieces] == [
        (0, 0, "Hello"),
        (0, 5, ", wor"),
        (1, 0, "Hello, world"),
    ]
    joined = None
    for p in pieces:
        joined = wire.apply_partial(joined, p, runtime.seq)
    assert joined is not None and joined.text == "Hello, world"
