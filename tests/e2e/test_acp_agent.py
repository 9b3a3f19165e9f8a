"""``rcd start --agent acp -- CMD`` for real (relay and daemon real processes, the scripted
ACP agent of testkit): sessions answer through the client API, a Write asks and runs
after "allow" from the phone, a grant answers for it too, the sessions say which agent
runs them, and SIGTERM leaves no agent process behind. A missing agent is named at start."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import trio

from testkit.harness import REPO, count_processes, home_env, rcd, start_daemon, start_relay
from testkit.waiting import eventually

AGENT = str(REPO / "testkit" / "fakes" / "acp_agent.py")


async def test_acp_sessions_through_the_relay_and_nothing_left_after_sigterm(
    tmp_path: Path,
) -> None:
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            daemon = await start_daemon(
                relay, home, project, "--capacity", "4", "--agent", "acp", "--",
                sys.executable, AGENT, agent_bin=None,
            )  # fmt: skip
            sessions = []
            for n in range(4):
                created = await relay.create_session(daemon.environment_id, prompt=f"hello {n}")
                assert created.status_code == 201, created.text
                sessions.append(created.json()["id"])
            for n, session_id in enumerate(sessions):
                events = await relay.wait_kind(session_id, "turn_result")
                started = next(e for e in events if e["kind"] == "session_started")["data"]
                assert started["agent"] == "acp"
                texts = [e["data"]["text"] for e in events if e["kind"] == "assistant_text"]
                assert texts == [f"echo: hello {n}"]
            # The daemon's own command line names the agent too (`-- python acp_agent.py`).
            assert count_processes(AGENT) == 1 + 4

            first = sessions[0]
            target = project / "asked.txt"
            sent = await relay.post_message(first, f"write {target} yes", "w1")
            assert sent.status_code == 202
            events = await relay.wait_kind(first, "permission_request")
            request = next(e for e in events if e["kind"] == "permission_request")["data"]
            assert (await relay.decide(first, request["request_id"], "allow")).status_code == 202
            await relay.wait_kind(first, "turn_result", 2)
            assert target.read_text() == "yes"

            grant = {"tools": ["Write"], "minutes": 5, "session_id": first}
            made = await relay.client.post(
                f"/api/environments/{daemon.environment_id}/grants", json=grant
            )
            assert made.status_code == 201, made.text
            granted = project / "granted.txt"
            assert (await relay.post_message(first, f"write {granted} ok", "w2")).is_success
            events = await relay.wait_kind(first, "turn_result", 3)
            assert granted.read_text() == "ok"
            assert [e["data"].get("grant") for e in events if e["kind"] == "permission_resolved"]
            assert sum(e["kind"] == "permission_request" for e in events) == 1

            daemon.process.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                assert await daemon.process.wait() == 0
            await eventually(lambda: count_processes(AGENT) == 0, timeout=10, what="agents gone")
            for session_id in sessions:
                assert (await relay.session(session_id))["state"] == "ended"
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def test_an_acp_agent_that_is_not_there_is_named_at_start(tmp_path: Path) -> None:
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            env = home_env(home)
            refused = await rcd(
                env, "start", str(project), "--relay", relay.url, "--agent", "codex", check=False
            )
            assert refused.returncode == 1
            assert "the agent's program 'codex-acp' (--agent codex) was not found" in (
                refused.stderr.decode()
            )
            bare = await rcd(env, "start", str(project), "--agent", "acp", check=False)
            assert bare.returncode != 0
            assert "--agent acp needs the agent's command after `--`" in bare.stderr.decode()
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
