"""Sessions of two agents under one ``rcd start``: the real ``claude`` CLI (stream-json,
the default) and the real ``claude-agent-acp`` (``--allow-agent claude-acp``), against the
fake Messages API: 4 of each at once within the capacity, each answering, the ninth refused
at capacity, an agent the daemon does not run refused, and SIGTERM ending all of them with
no agent process left."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import trio

from testkit.fakes import (
    STREAM_JSON_ARGS,
    FakeMessagesAPI,
    claude_env,
    find_claude,
    find_claude_acp,
)
from testkit.harness import count_processes, rcd, start_daemon, start_relay
from testkit.waiting import eventually


async def test_four_claude_and_four_acp_sessions_then_sigterm_leaves_nothing(
    tmp_path: Path,
) -> None:
    claude, adapter = find_claude(), find_claude_acp()
    cli_marker = f"{claude} {STREAM_JSON_ARGS[0]}"  # a running CLI's command line
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    async with trio.open_nursery() as nursery:
        base_url: str = await nursery.start(FakeMessagesAPI().run)
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            env = claude_env(home, base_url)
            # claude-agent-acp found on PATH, as --allow-agent finds its program; as root,
            # Claude Code wants to be told it is in a sandbox of sorts.
            env |= {"PATH": f"{os.path.dirname(adapter)}:{env['PATH']}", "IS_SANDBOX": "1"}
            daemon = await start_daemon(
                relay, home, project, "--capacity", "8", "--allow-agent", "claude-acp",
                agent_bin=claude, extra_env=env,
            )  # fmt: skip
            sessions: dict[str, str] = {}
            for n in range(8):
                agent = "claude-acp" if n % 2 else None
                body = {"prompt": f"hello {n}"} | ({"agent": agent} if agent else {})
                created = await relay.create_session(daemon.environment_id, **body)
                assert created.status_code == 201, created.text
                sessions[created.json()["id"]] = agent or "claude"
            full = await relay.create_session(daemon.environment_id, prompt="one more")
            assert full.status_code == 409 and full.json()["error"]["code"] == "at_capacity"
            refused = await relay.create_session(daemon.environment_id, agent="gemini")
            assert refused.status_code == 409
            assert refused.json()["error"]["code"] == "agent_not_allowed"
            for n, (session_id, agent) in enumerate(sessions.items()):
                events = await relay.wait_kind(session_id, "turn_result", timeout=90)
                texts = [e["data"]["text"] for e in events if e["kind"] == "assistant_text"]
                assert texts == [f"echo: hello {n}"], (agent, events)
                # Said only for the one that is not the environment's default.
                shown = (await relay.session(session_id)).get("agent")
                assert shown == (None if agent == "claude" else agent)
            # rcd status says which agent runs each session when they are not all one.
            status = (await rcd(daemon.env, "status", str(project))).stdout.decode()
            assert status.count("agent=claude-acp") == 4 and status.count("agent=claude\n") == 4
            assert count_processes(adapter) == 4
            assert count_processes(cli_marker) == 4  # the stream-json CLIs

            daemon.process.send_signal(signal.SIGTERM)
            with trio.fail_after(60):
                assert await daemon.process.wait() == 0
            for session_id in sessions:
                assert (await relay.session(session_id))["state"] == "ended"
            await eventually(
                lambda: (
                    count_processes(adapter)
                    + count_processes("claude-agent-sdk")
                    + count_processes(cli_marker)
                    == 0
                ),
                timeout=15,
                what="every agent gone",
            )
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
