"""The real ``@agentclientprotocol/claude-agent-acp`` (pinned in package-lock.json) against
the fake Messages API, run by a real ``rcd start --agent claude-acp`` through the relay:
a session echoes, asks permission for a Write (it starts in a mode that writes unasked:
the daemon puts it in the one that asks), writes after "allow" and not after "deny", is
interrupted in a slow turn, and ends cleanly with its agent gone."""

from __future__ import annotations

import signal
from pathlib import Path

import trio

from testkit.fakes import FakeMessagesAPI, claude_env, find_claude_acp
from testkit.harness import Relay, count_processes, start_daemon, start_relay
from testkit.waiting import eventually


async def _answer(relay: Relay, session_id: str, n: int, decision: str) -> dict[str, object]:
    events = await relay.wait_kind(session_id, "permission_request", n, timeout=60)
    request = [e for e in events if e["kind"] == "permission_request"][n - 1]["data"]
    assert (await relay.decide(session_id, request["request_id"], decision)).status_code == 202
    return request


async def test_claude_through_acp_echoes_asks_writes_and_is_interrupted(tmp_path: Path) -> None:
    adapter = find_claude_acp()  # fails (never skips) with an install hint when missing
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    async with trio.open_nursery() as nursery:
        base_url: str = await nursery.start(FakeMessagesAPI().run)
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            # As root, Claude Code wants to be told it is in a sandbox of sorts.
            env = {**claude_env(home, base_url), "IS_SANDBOX": "1"}
            daemon = await start_daemon(
                relay, home, project, "--agent", "claude-acp", agent_bin=adapter, extra_env=env
            )
            created = await relay.create_session(daemon.environment_id, prompt="hello")
            assert created.status_code == 201, created.text
            session_id = created.json()["id"]
            events = await relay.wait_kind(session_id, "turn_result", timeout=60)
            started = next(e for e in events if e["kind"] == "session_started")["data"]
            assert started["agent"] == "claude-acp" and started["agent_session_id"]
            assert [e["data"]["text"] for e in events if e["kind"] == "assistant_text"] == [
                "echo: hello"
            ]
            (result,) = [e["data"] for e in events if e["kind"] == "turn_result"]
            assert result["ok"] is True and result["cost_usd"] > 0  # from its usage_update

            allowed = project / "allowed.txt"
            assert (await relay.post_message(session_id, f"write {allowed} yes", "w1")).is_success
            request = await _answer(relay, session_id, 1, "allow")
            assert request["tool"] == "Write"
            assert request["input"] == {"file_path": str(allowed), "content": "yes"}
            await relay.wait_kind(session_id, "turn_result", 2, timeout=60)
            assert allowed.read_text() == "yes"

            denied = project / "denied.txt"
            assert (await relay.post_message(session_id, f"write {denied} no", "w2")).is_success
            await _answer(relay, session_id, 2, "deny")
            events = await relay.wait_kind(session_id, "turn_result", 3, timeout=60)
            assert not denied.exists()

            assert (await relay.post_message(session_id, "slow 30", "s1")).is_success
            await relay.wait_events(
                session_id,
                lambda evs: evs[-1]["kind"] == "status" and evs[-1]["data"]["state"] == "busy",
            )
            interrupted = await relay.client.post(f"/api/sessions/{session_id}/interrupt")
            assert interrupted.status_code == 202
            events = await relay.wait_kind(session_id, "turn_result", 4, timeout=20)
            assert [e for e in events if e["kind"] == "turn_result"][-1]["data"]["ok"] is False

            daemon.process.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                assert await daemon.process.wait() == 0
            assert (await relay.session(session_id))["state"] == "ended"
            # The adapter (node) and the Claude Code it runs (the SDK's own binary) both.
            await eventually(
                lambda: count_processes(adapter) + count_processes("claude-agent-sdk") == 0,
                timeout=10,
                what="the adapter and its claude gone",
            )
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
