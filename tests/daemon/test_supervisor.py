"""The supervisor in-process: capacity holds under a burst of starts; directives apply once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import attrs
import trio

import wire
from daemon import Supervisor
from spawn import ClaudeCode
from testkit.harness import TINY_AGENT


@attrs.define
class Recorder:
    events: dict[str, list[wire.Event]] = attrs.Factory(lambda: defaultdict(list))
    _published: trio.Event = attrs.Factory(trio.Event)

    def publish(self, session_id: str, event: wire.Event) -> None:
        self.events[session_id].append(event)
        self._published.set()
        self._published = trio.Event()

    def kinds(self, session_id: str) -> list[str]:
        return [e.kind for e in self.events[session_id]]

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds, looking again at every event published."""
        while not condition():
            await self._published.wait()


def make(tmp_path: Path, capacity: int) -> tuple[Supervisor, Recorder]:
    recorder = Recorder()
    supervisor = Supervisor(
        adapter=ClaudeCode(binary=TINY_AGENT),
        directory=tmp_path,
        spawn="same-dir",
        capacity=capacity,
        uplink=recorder,
    )
    return supervisor, recorder


async def test_a_burst_of_starts_never_exceeds_capacity(tmp_path: Path) -> None:
    supervisor, recorder = make(tmp_path, capacity=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        ids = [f"s{i}" for i in range(12)]
        for dseq, sid in enumerate(ids, start=1):
            supervisor.apply(dseq, wire.StartSession(session_id=sid, prompt="sleep 30"))
            assert supervisor.active() <= 4
        assert supervisor.active() == 4
        refused = [sid for sid in ids if recorder.kinds(sid) == ["error", "session_ended"]]
        assert refused == ids[4:]
        for sid in refused:
            error = recorder.events[sid][0].data
            assert error["code"] == "at_capacity" and "4 of 4" in error["message"]
            assert [e.seq for e in recorder.events[sid]] == [1, 2]
        # A slot frees up when a session ends; the next start is admitted.
        first = supervisor.sessions["s0"]
        supervisor.apply(13, wire.StopSession(session_id="s0"))
        with trio.fail_after(10):
            await first.ended.wait()
        assert supervisor.active() == 3
        supervisor.apply(14, wire.StartSession(session_id="late", prompt="hello"))
        assert "late" in supervisor.sessions
        with trio.fail_after(10):
            await supervisor.stop_all()
        nursery.cancel_scope.cancel()


async def test_directives_apply_once_and_starts_are_idempotent(tmp_path: Path) -> None:
    supervisor, recorder = make(tmp_path, capacity=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        start = wire.StartSession(session_id="a", prompt="hello", prompt_input_id="p1")
        supervisor.apply(1, start)
        supervisor.apply(1, start)  # the same delivery again (at-least-once)
        supervisor.apply(2, start)  # a new delivery of the same work: idempotent by id
        message = wire.SendMessage(session_id="a", input_id="m1", text="again", origin="t")
        supervisor.apply(3, message)
        supervisor.apply(3, message)
        supervisor.apply(4, message)  # same input id in a new directive: still once
        # A last message after all of those: the session hands messages to the agent in
        # order, so once it has answered this one, any duplicate would have come before.
        last = wire.SendMessage(session_id="a", input_id="m2", text="last", origin="t")
        supervisor.apply(5, last)
        with trio.fail_after(10):
            await recorder.wait_until(lambda: recorder.kinds("a").count("turn_result") == 3)
        messages = [e.data["input_id"] for e in recorder.events["a"] if e.kind == "user_message"]
        assert messages == ["p1", "m1", "m2"]
        assert recorder.kinds("a").count("turn_result") == 3
        assert recorder.kinds("a").count("session_started") == 1
        assert supervisor.applied_through == 5
        with trio.fail_after(10):
            await supervisor.stop_all()
        assert recorder.kinds("a")[-1] == "session_ended"
        nursery.cancel_scope.cancel()
