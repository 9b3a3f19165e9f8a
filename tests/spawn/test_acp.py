"""The Agent Client Protocol adapter against a scripted ACP agent (a real subprocess on
stdio, ``testkit/fakes/acp_agent.py``), through the daemon's supervisor as ``rcd start
--agent acp -- CMD`` runs it: a reply streamed then whole, a permission with several
options answered allow or deny exactly once, the session put in the mode that asks, a
cancel during a permission request and during a slow turn, a plan, a huge update, and
what breaks the protocol (garbage, an unknown method, a crash mid-turn) ending the session
with an error instead of leaving it stuck; ``session/load`` resumes without replaying."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

import wire
from spawn import AgentOptions
from spawn.adapter import PermissionCancelled
from spawn.sandbox import SandboxPolicy

from .acp_world import World, linux_only, open_world


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with open_world(tmp_path) as world:
        yield world


async def test_a_reply_streams_then_arrives_whole(world: World) -> None:
    world.apply(wire.StartSession(session_id="s", prompt="hello there"))
    await world.turns("s", 1)
    (started,) = world.log.of("s", "session_started")
    assert started["agent"] == "acp" and started["agent_session_id"].startswith("fake-")
    assert [t["text"] for t in world.log.of("s", "assistant_text")] == ["echo: hello there"]
    assert world.log.of("s", "turn_result")[0]["ok"] is True
    assert "".join(p.text for p in world.log.partials) == "echo: hello there"
    world.say("s", "again")
    await world.turns("s", 2)
    assert world.log.of("s", "assistant_text")[-1]["text"] == "echo: again"
    # The agent says what the session has cost so far: each turn's result, its share.
    assert [t["cost_usd"] for t in world.log.of("s", "turn_result")] == [0.01, 0.01]


async def test_a_permission_is_asked_in_the_mode_that_asks_and_answered_once(
    world: World,
) -> None:
    # The agent starts in "auto" (it would write unasked): rcd puts it in "default".
    target = world.project / "a.txt"
    world.apply(wire.StartSession(session_id="s", prompt=f"write {target} hello"))
    asked = await world.asked("s")
    assert asked["tool"] == "Write" and asked["input"] == {
        "file_path": str(target),
        "content": "hello",
    }
    assert asked["description"] == f"Write {target} (the agent offers: Allow, Always allow, Reject)"
    (use,) = world.log.of("s", "tool_use")
    assert use["name"] == "Write" and use["input"]["file_path"] == str(target)
    decide = wire.DecidePermission(
        session_id="s", request_id=asked["request_id"], decision="allow", origin="phone"
    )
    world.apply(decide)
    world.apply(attrs.evolve(decide, decision="deny"))  # answered once: this one is moot
    await world.turns("s", 1)
    assert target.read_text() == "hello"
    (result,) = world.log.of("s", "tool_result")
    assert result == {"tool_use_id": use["id"], "content": f"wrote {target}", "is_error": False}
    assert [r["decision"] for r in world.log.of("s", "permission_resolved")] == ["allow"]

    refused = world.project / "b.txt"
    world.say("s", f"write {refused} no")
    asked = await world.asked("s", 2)
    world.apply(
        wire.DecidePermission(
            session_id="s", request_id=asked["request_id"], decision="deny", origin="phone"
        )
    )
    await world.turns("s", 2)
    assert not refused.exists()
    assert world.log.of("s", "assistant_text")[-1]["text"] == "denied"
    assert world.log.of("s", "tool_result")[-1]["is_error"] is True


async def test_a_cancelled_permission_is_logged_before_the_agent_acts_on_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However quickly the agent ends its turn once told "cancelled", the log shows the
    request withdrawn first: the write of the answer returns here only after the agent's
    turn has ended in the log (a daemon slow to resume on a loaded machine)."""
    from spawn.process import AgentProcess

    write_line = AgentProcess.write_line

    async def slow_to_resume(self: AgentProcess, line: bytes) -> None:
        await write_line(self, line)
        if b'"cancelled"' in line:
            await world.turns("s", 1)

    monkeypatch.setattr(AgentProcess, "write_line", slow_to_resume)
    world.apply(wire.StartSession(session_id="s", prompt=f"write {world.project / 'no'} x"))
    asked = await world.asked("s")
    world.apply(wire.Interrupt(session_id="s"))
    await world.turns("s", 1)
    kinds = world.log.kinds("s")
    (resolved,) = world.log.of("s", "permission_resolved")
    assert (resolved["request_id"], resolved["origin"]) == (asked["request_id"], "agent_cancelled")
    assert kinds.index("permission_resolved") < kinds.index("turn_result"), kinds


async def test_an_interrupt_cancels_a_waiting_permission_and_a_slow_turn(world: World) -> None:
    target = world.project / "never.txt"
    world.apply(wire.StartSession(session_id="s", prompt=f"write {target} x"))
    asked = await world.asked("s")
    world.apply(wire.Interrupt(session_id="s"))
    await world.turns("s", 1)
    assert not target.exists()
    (resolved,) = world.log.of("s", "permission_resolved")
    assert resolved["request_id"] == asked["request_id"] and resolved["origin"] == "agent_cancelled"
    assert world.log.of("s", "turn_result")[0]["ok"] is False

    before = len(world.log.partials)
    world.say("s", "slow 100")
    await world.log.until(lambda: len(world.log.partials) >= before + 2)
    world.apply(wire.Interrupt(session_id="s"))
    await world.turns("s", 2)
    assert world.log.of("s", "turn_result")[-1]["ok"] is False
    world.say("s", "after")  # the session goes on
    await world.turns("s", 3)
    assert world.log.of("s", "assistant_text")[-1]["text"] == "echo: after"


async def test_a_plan_and_a_huge_update_are_shown(world: World) -> None:
    world.apply(wire.StartSession(session_id="s", prompt="plan"))
    await world.turns("s", 1)
    assert [t["text"] for t in world.log.of("s", "assistant_text")] == [
        "Plan:\n- [x] read the code\n- [ ] fix it",
        "planned",
    ]
    world.say("s", "huge 3000000")
    await world.turns("s", 2)
    assert len(world.log.of("s", "assistant_text")[-1]["text"]) == 3_000_000


@pytest.mark.parametrize(
    ("prompt", "says"),
    [
        ("garbage", "a line that is not JSON"),
        ("unknown", "a request rcd does not know: foo/bar"),
    ],
)
async def test_what_breaks_the_protocol_ends_the_session_with_an_error(
    world: World, prompt: str, says: str
) -> None:
    world.apply(wire.StartSession(session_id="s", prompt=prompt))
    await world.ended("s")
    errors = world.log.of("s", "error")
    assert errors[0]["code"] == "agent_protocol" and says in errors[0]["message"]
    assert world.log.kinds("s")[-1] == "session_ended"


async def test_a_crash_mid_turn_ends_the_session(world: World) -> None:
    world.apply(wire.StartSession(session_id="s", prompt="crash"))
    await world.ended("s")
    (error,) = world.log.of("s", "error")
    assert error["code"] == "agent_exited" and "code 3" in error["message"]


async def test_a_session_is_resumed_with_session_load_without_replaying_it(
    world: World,
) -> None:
    world.apply(wire.StartSession(session_id="s", prompt="first words"))
    await world.turns("s", 1)
    (started,) = world.log.of("s", "session_started")
    world.apply(wire.StopSession(session_id="s"))
    await world.ended("s")
    seen = len(world.log.events["s"])
    world.apply(
        wire.ResumeSession(
            session_id="s",
            agent_session_id=started["agent_session_id"],
            cwd=str(world.project),
            spawn="same-dir",
            last_seq=world.log.events["s"][-1].seq,
        )
    )
    await world.log.until(lambda: world.log.kinds("s")[seen:].count("status") >= 2)
    world.say("s", "second")
    await world.turns("s", 2)
    again = world.log.events["s"][seen:]
    texts = [e.data["text"] for e in again if e.kind == "assistant_text"]
    assert texts == ["echo: second"]  # nothing of the first turn again
    resumed = [e.data for e in again if e.kind == "session_started"]
    assert resumed[0]["agent_session_id"] == started["agent_session_id"]


async def test_a_request_crossing_the_cancel_is_answered_cancelled_unseen(
    tmp_path: Path,
) -> None:
    async with open_world(tmp_path, {"ACP_FAKE_ASK_AGAIN": "1"}) as world:
        target = world.project / "crossed.txt"
        world.apply(wire.StartSession(session_id="s", prompt=f"write {target} x"))
        await world.asked("s")
        world.apply(wire.Interrupt(session_id="s"))
        await world.turns("s", 1)
        world.say("s", "after")  # its turn comes after the agent's answer to the second
        await world.turns("s", 2)
        assert len(world.log.of("s", "permission_request")) == 1  # the second never shown
        assert not target.exists()


async def test_an_allow_the_agent_does_not_offer_is_said_and_answered_cancelled(
    tmp_path: Path,
) -> None:
    """An agent that offers only "Reject": the phone's "allow" is logged as its decision,
    then an error says the agent had no such option and was told "cancelled"."""
    async with open_world(tmp_path, {"ACP_FAKE_REJECT_ONLY": "1"}) as world:
        target = world.project / "offered.txt"
        world.apply(wire.StartSession(session_id="s", prompt=f"write {target} x"))
        asked = await world.asked("s")
        assert asked["description"].endswith("(the agent offers: Reject)")
        world.apply(
            wire.DecidePermission(
                session_id="s", request_id=asked["request_id"], decision="allow", origin="phone"
            )
        )
        await world.turns("s", 1)
        assert not target.exists()
        # Told "cancelled" (the turn ends so), not its Reject option (it would say "denied").
        assert world.log.of("s", "turn_result")[-1]["ok"] is False
        assert "denied" not in [t["text"] for t in world.log.of("s", "assistant_text")]
        (error,) = world.log.of("s", "error")
        assert error == {
            "code": "decision_not_offered",
            "message": "acp offers no option to allow this (it offers: Reject): it was "
            "answered cancelled",
        }
        kinds = world.log.kinds("s")
        assert kinds.index("permission_resolved") < kinds.index("error")


async def test_json_nested_too_deep_ends_the_session_not_the_daemon(world: World) -> None:
    world.apply(wire.StartSession(session_id="s", prompt="deep"))
    await world.ended("s")
    error = world.log.of("s", "error")[0]
    assert error["code"] == "agent_protocol" and "not JSON" in error["message"]
    world.apply(wire.StartSession(session_id="t", prompt="still here"))  # the daemon goes on
    await world.turns("t", 1)


@pytest.mark.parametrize(
    ("script", "says"),
    [
        ("import sys; sys.exit(2)", "exited (code 2) before its session was open"),
        ("import sys\nfor line in sys.stdin: print(line, end='', flush=True)", "rcd does not know"),
        (
            "import json, sys\nline = sys.stdin.readline()\n"
            "print(json.dumps({'jsonrpc': '2.0', 'id': json.loads(line)['id'],"
            " 'result': {'protocolVersion': 9}}), flush=True)\nsys.stdin.read()",
            "speaks ACP version 9; rcd speaks 1",
        ),
    ],
    ids=["exits", "echoes", "another-version"],
)
async def test_an_agent_that_cannot_open_its_session_ends_it_at_once(
    tmp_path: Path, script: str, says: str
) -> None:
    async with open_world(tmp_path, argv=[sys.executable, "-c", script]) as world:
        world.apply(wire.StartSession(session_id="s", prompt="hello"))
        await world.ended("s")
        (error,) = world.log.of("s", "error")
        assert error["code"] == "agent_protocol" and says in error["message"], error
        assert "session_started" not in world.log.kinds("s")


async def test_an_agent_without_session_load_is_not_resumable(tmp_path: Path) -> None:
    script = (
        "import json, sys\nfor line in sys.stdin:\n    m = json.loads(line)\n"
        "    print(json.dumps({'jsonrpc': '2.0', 'id': m['id'], 'result':"
        " {'protocolVersion': 1, 'agentCapabilities': {}}}), flush=True)"
    )
    async with open_world(tmp_path, argv=[sys.executable, "-c", script]) as world:
        world.apply(
            wire.ResumeSession(
                session_id="s", agent_session_id="gone", cwd=str(world.project),
                spawn="same-dir", last_seq=0,
            )
        )  # fmt: skip
        await world.ended("s")
        (error,) = world.log.of("s", "error")
        assert error["code"] == "not_resumable" and "offers no session/load" in error["message"]


@linux_only
async def test_a_sandboxed_acp_agent_writes_only_in_its_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    policy = SandboxPolicy(enabled=True)
    async with open_world(tmp_path, options=AgentOptions(sandbox=policy)) as world:
        inside = world.project / "inside.txt"
        for n, target in enumerate((inside, outside), 1):
            if n == 1:
                world.apply(wire.StartSession(session_id="s", prompt=f"write {target} x"))
            else:
                world.say("s", f"write {target} x")
            asked = await world.asked("s", n)
            world.apply(
                wire.DecidePermission(
                    session_id="s", request_id=asked["request_id"], decision="allow", origin="t"
                )
            )
            await world.turns("s", n)
        assert inside.read_text() == "x"
        # Refused, or written into the sandbox's own private /tmp: never on this machine.
        assert not outside.exists()


async def test_two_withdrawals_at_once_withdraw_each_request_once() -> None:
    """An interrupt and the turn's end both withdraw the open requests; when they overlap
    (the agent ended its turn while the interrupt was still answering), each request is
    withdrawn and answered once, and neither raises."""
    from spawn.acp_rpc import AcpHandle, _Permission

    written: list[dict[str, Any]] = []

    @attrs.define
    class Pipe:
        pid: int = 1

        async def write_line(self, line: bytes) -> None:
            written.append(json.loads(line))
            await trio.lowlevel.checkpoint()  # a write lets other tasks run

    seen: list[object] = []

    async def sink(event: object) -> None:
        seen.append(event)
        await trio.lowlevel.checkpoint()

    handle = AcpHandle(proc=Pipe(), name="acp", sink=sink)  # type: ignore[arg-type]
    handle.session, handle._prompt = "sess", (7, 0.0)
    handle._permissions |= {"A": _Permission(rpc_id=1, options=[]), "B": _Permission(2, [])}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle.interrupt)
        await trio.lowlevel.checkpoint()
        nursery.start_soon(handle._turn_ended, {"id": 7, "result": {"stopReason": "cancelled"}})
    withdrawn = [e.request_id for e in seen if isinstance(e, PermissionCancelled)]
    assert sorted(withdrawn) == ["A", "B"]
    answered = [m["id"] for m in written if m.get("result", {}).get("outcome")]
    assert sorted(answered) == [1, 2]
