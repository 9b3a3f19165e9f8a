"""The real ``@zed-industries/codex-acp`` (pinned in package-lock.json) against a fake
OpenAI Responses API (``testkit/fakes/responses_api.py``), run by a real ``rcd start
--agent codex`` through the relay: a session echoes, asks permission for a command that
writes a file (one tool call that needs approval), writes after "allow" and not after
"deny", is interrupted in a slow turn, and ends cleanly with its agent gone."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from testkit.fakes import REPO_ROOT, find_codex_acp
from testkit.fakes.responses_api import FakeResponsesAPI, codex_home
from testkit.harness import start_daemon, start_relay

from .agent_rounds import answer, interrupt_slow_turn, stop_leaving_nothing

NATIVE = str(REPO_ROOT / "node_modules" / "@zed-industries")


def _texts(events: list[dict[str, object]]) -> str:
    return " ".join(str(e["data"]["text"]) for e in events if e["kind"] == "assistant_text")  # type: ignore[index]


async def test_codex_through_acp_echoes_asks_writes_and_is_interrupted(tmp_path: Path) -> None:
    adapter = find_codex_acp()  # fails (never skips) with an install hint when missing
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    async with trio.open_nursery() as nursery:
        base_url: str = await nursery.start(FakeResponsesAPI().run)
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            codex_home(home, base_url)
            # Only what Codex needs: its key (read through the ACP login rcd does for it).
            env = {"PATH": os.environ["PATH"], "OPENAI_API_KEY": "sk-fake-openai-key"}
            daemon = await start_daemon(
                relay, home, project, "--agent", "codex", agent_bin=adapter, extra_env=env
            )
            created = await relay.create_session(daemon.environment_id, prompt="hello")
            assert created.status_code == 201, created.text
            session_id = created.json()["id"]
            events = await relay.wait_kind(session_id, "turn_result", timeout=60)
            started = next(e for e in events if e["kind"] == "session_started")["data"]
            assert started["agent"] == "codex" and started["agent_session_id"]
            assert "echo: hello" in _texts(events)

            allowed = project / "allowed.txt"
            assert (await relay.post_message(session_id, f"write {allowed} yes", "w1")).is_success
            request = await answer(relay, session_id, 1, "allow")
            assert str(allowed) in str(request["input"])
            events = await relay.wait_kind(session_id, "turn_result", 2, timeout=60)
            assert allowed.read_text() == "yes"
            assert "done:" in _texts(events)

            denied = project / "denied.txt"
            assert (await relay.post_message(session_id, f"write {denied} no", "w2")).is_success
            await answer(relay, session_id, 2, "deny")
            await relay.wait_kind(session_id, "turn_result", 3, timeout=60)
            assert not denied.exists()

            await interrupt_slow_turn(relay, session_id, 4)
            # The adapter and the agent it runs, both.
            await stop_leaving_nothing(daemon, relay, session_id, adapter, NATIVE)
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
