"""The daemon as users run it: a real ``rcd start`` process, a real relay on loopback, and
the tiny stream-json agent (so these tests measure rcd, not a model)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

from testkit.harness import Relay, processes_in, rcd, start_daemon, start_relay
from testkit.waiting import eventually


@pytest.fixture
async def relay(tmp_path: Path) -> Relay:
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        yield relay  # type: ignore[misc]
        await relay.aclose()
        nursery.cancel_scope.cancel()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    return path


async def test_status_shows_the_connected_environment_and_its_sessions(
    relay: Relay, tmp_path: Path, project: Path
) -> None:
    daemon = await start_daemon(
        relay, tmp_path / "home", project, "--name", "box", "--capacity", "3"
    )
    r = await relay.create_session(daemon.environment_id, prompt="sleep 30", title="long one")
    assert r.status_code == 201, r.text
    session_id = r.json()["id"]
    await relay.wait_events(session_id, lambda evs: any(e["kind"] == "user_message" for e in evs))
    status = await daemon.status()
    assert status["environment"] == {
        "id": daemon.environment_id,
        "name": "box",
        "relay": relay.url,
        "connected": True,
        "spawn": "same-dir",
        "capacity": 3,
        "directory": str(project.resolve()),
    }
    [session] = status["sessions"]
    assert session["id"] == session_id
    assert session["title"] == "long one"
    assert session["state"] == "busy"
    assert session["cwd"] == str(project.resolve())
    uplink = status["uplink"]
    assert uplink["buffered_events"] == 0 and uplink["failures"] == 0
    # The session's first events went up; batches may share requests, never the reverse.
    assert 1 <= uplink["requests"] <= uplink["batches"]
    assert 0 <= uplink["batches_on_open_requests"] <= uplink["batches"]
    process = status["process"]
    assert process["tasks"] > 5 and process["open_files"] > 3 and process["children"] == 1
    assert process["rss_kib"] > 10_000
    assert status["link"] == {"connects": 1, "last_error": None}
    assert isinstance(session["pid"], int)
    human = await rcd(daemon.env, "status", str(project))
    assert b"box" in human.stdout and session_id.encode() in human.stdout
    assert await daemon.stop() == 0


async def test_status_without_a_daemon_says_so(tmp_path: Path, project: Path) -> None:
    from testkit.harness import home_env

    result = await rcd(home_env(tmp_path / "home"), "status", str(project), check=False)
    assert result.returncode == 1
    assert b"no rcd daemon is running here" in result.stderr


async def test_a_message_posted_right_after_create_is_answered_once(
    relay: Relay, tmp_path: Path, project: Path
) -> None:
    daemon = await start_daemon(relay, tmp_path / "home", project)
    r = await relay.create_session(daemon.environment_id, prompt="hello")
    session = r.json()
    assert r.status_code == 201 and session["state"] == "queued"
    assert session["url"].endswith(f"/s/{session['id']}")
    # At once, while the session is still starting, and twice with the same id.
    first = await relay.post_message(session["id"], "second message", "client-1")
    again = await relay.post_message(session["id"], "second message", "client-1")
    assert (first.status_code, again.status_code) == (202, 202)
    events = await relay.wait_kind(session["id"], "turn_result", 2)
    answers = [e["data"]["text"] for e in events if e["kind"] == "assistant_text"]
    assert answers == ["echo: hello", "echo: second message"]
    echoed = [e["data"]["input_id"] for e in events if e["kind"] == "user_message"]
    assert echoed.count("client-1") == 1
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert (await relay.session(session["id"]))["title"] == "hello"
    assert await daemon.stop() == 0


@pytest.mark.parametrize("decision", ["allow", "deny"])
async def test_permission_decision_from_a_client_reaches_the_agent(
    relay: Relay, tmp_path: Path, project: Path, decision: str
) -> None:
    daemon = await start_daemon(relay, tmp_path / "home", project)
    target = project / "note.txt"
    session_id = (
        await relay.create_session(daemon.environment_id, prompt=f"write {target} hi")
    ).json()["id"]
    events = await relay.wait_kind(session_id, "permission_request")
    request = next(e for e in events if e["kind"] == "permission_request")["data"]
    assert (await relay.session(session_id))["state"] == "awaiting_permission"
    r = await relay.decide(session_id, request["request_id"], decision)
    assert r.status_code == 202, r.text
    events = await relay.wait_kind(session_id, "turn_result")
    resolved = [e["data"] for e in events if e["kind"] == "permission_resolved"]
    assert resolved == [
        {"request_id": request["request_id"], "decision": decision, "origin": "tests"}
    ]
    assert target.exists() is (decision == "allow")
    again = await relay.decide(session_id, request["request_id"], "allow")
    assert again.status_code == 409
    assert await daemon.stop() == 0


async def test_capacity_is_enforced_with_a_message_naming_the_limit(
    relay: Relay, tmp_path: Path, project: Path
) -> None:
    daemon = await start_daemon(
        relay, tmp_path / "home", project, "--capacity", "2", "--name", "cap"
    )
    ok = [await relay.create_session(daemon.environment_id, prompt="sleep 30") for _ in range(2)]
    assert [r.status_code for r in ok] == [201, 201]
    refused = await relay.create_session(daemon.environment_id, prompt="one more")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "at_capacity"
    assert "2 of 2" in error["message"] and "cap" in error["message"]
    assert await daemon.stop() == 0


async def test_sigterm_ends_every_session_and_leaves_no_agent_behind(
    relay: Relay, tmp_path: Path, project: Path
) -> None:
    daemon = await start_daemon(relay, tmp_path / "home", project, "--stop-timeout", "10")
    ids = []
    for prompt in ("sleep 60", "hello", "sleep 60"):
        ids.append((await relay.create_session(daemon.environment_id, prompt=prompt)).json()["id"])
    for session_id in ids:
        await relay.wait_kind(session_id, "user_message")
    pids = [s["pid"] for s in (await daemon.status())["sessions"]]
    assert len(pids) == 3 and all(pids)
    with trio.fail_after(12):
        assert await daemon.stop(signal.SIGTERM) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert processes_in(project) == []
    for session_id in ids:
        session = await relay.session(session_id)
        assert session["state"] == "ended"
        last = (await relay.events(session_id))[-1]
        assert last["kind"] == "session_ended" and last["data"]["reason"] == "daemon_stopped"
    [env] = await relay.environments()
    assert env["online"] is False and env["active_sessions"] == 0


async def test_a_missing_agent_is_an_error_event_not_a_crash(
    relay: Relay, tmp_path: Path, project: Path
) -> None:
    daemon = await start_daemon(
        relay,
        tmp_path / "home",
        project,
        "--no-agent-check",
        agent_bin=str(tmp_path / "no-claude-here"),
    )
    session_id = (await relay.create_session(daemon.environment_id, prompt="hi")).json()["id"]
    events = await relay.wait_kind(session_id, "session_ended")
    errors = [e["data"] for e in events if e["kind"] == "error"]
    assert errors[0]["code"] == "agent_not_found"
    assert (await relay.session(session_id))["state"] == "ended"
    assert (await daemon.status())["environment"]["connected"] is True
    assert await daemon.stop() == 0


async def test_concurrent_creates_never_exceed_capacity(
    relay: Relay, tmp_path: Path, project: Path
) -> None:
    daemon = await start_daemon(relay, tmp_path / "home", project, "--capacity", "4")
    statuses: list[int] = []

    async def create() -> None:
        r = await relay.create_session(daemon.environment_id, prompt="sleep 30")
        statuses.append(r.status_code)

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(create)
    assert sorted(statuses) == [201] * 4 + [409] * 16

    async def four_running() -> bool:
        return len((await daemon.status())["sessions"]) >= 4

    await eventually(four_running, timeout=10, what="4 sessions in the daemon's status")
    assert len((await daemon.status())["sessions"]) == 4
    assert await daemon.stop() == 0
