"""The real ``@agentclientprotocol/claude-agent-acp`` (pinned in package-lock.json) against
the fake Messages API, run by a real ``rcd start --agent claude-acp`` through the relay:
a session echoes, asks permission for a Write (it starts in a mode that writes unasked:
the daemon puts it in the one that asks), writes after "allow" and not after "deny", is
interrupted in a slow turn, and ends cleanly with its agent gone."""

from __future__ import annotations

from pathlib import Path

import trio

from testkit.fakes import FakeMessagesAPI, claude_env, find_claude_acp
from testkit.harness import start_daemon, start_relay

from .agent_rounds import answer, interrupt_slow_turn, stop_leaving_nothing


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
            request = await answer(relay, session_id, 1, "allow")
            assert request["tool"] == "Write"
            assert request["input"] == {"file_path": str(allowed), "content": "yes"}
            await relay.wait_kind(session_id, "turn_result", 2, timeout=60)
            assert allowed.read_text() == "yes"

            denied = project / "denied.txt"
            assert (await relay.post_message(session_id, f"write {denied} no", "w2")).is_success
            await answer(relay, session_id, 2, "deny")
            events = await relay.wait_kind(session_id, "turn_result", 3, timeout=60)
            assert not denied.exists()

            await interrupt_slow_turn(relay, session_id, 4)
            # The adapter and the agent it runs, both.
            await stop_leaving_nothing(daemon, relay, session_id, adapter, "claude-agent-sdk")
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
