"""Settings set through the client API reach the real ``claude`` CLI (against the fake
Messages API) of new sessions: the permission mode (``acceptEdits``: a file write runs
without asking) and the tools allowed without asking (``--allowedTools``)."""

from __future__ import annotations

from pathlib import Path

import trio

from testkit.fakes import FakeMessagesAPI, claude_env, find_claude
from testkit.harness import start_daemon, start_relay


async def test_permission_mode_and_allowed_tools_reach_the_cli(tmp_path: Path) -> None:
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    async with trio.open_nursery() as nursery:
        base_url: str = await nursery.start(FakeMessagesAPI().run)
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            daemon = await start_daemon(
                relay, home, project, agent_bin=find_claude(), extra_env=claude_env(home, base_url)
            )
            changed = await relay.client.put(
                f"/api/environments/{daemon.environment_id}/settings",
                json={"permission_mode": "acceptEdits", "allowed_tools": ["Bash(touch:*)"]},
            )
            assert changed.status_code == 200, changed.text
            created = await relay.create_session(daemon.environment_id)
            session_id = created.json()["id"]
            for n, text in enumerate(
                [f"write {project}/edited.txt hello", f"run touch {project}/touched.txt"], 1
            ):
                assert (await relay.post_message(session_id, text, f"m{n}")).status_code == 202
                await relay.wait_kind(session_id, "turn_result", n)
            events = await relay.events(session_id)
            assert not any(e["kind"] == "permission_request" for e in events), events
            assert (project / "edited.txt").read_text() == "hello"
            assert (project / "touched.txt").exists()
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
