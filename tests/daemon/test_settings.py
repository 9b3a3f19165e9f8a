"""Environment settings set through the client API, kept by a real daemon (the scripted
agent; relay and daemon real processes and sockets): a variable reaches the agents of new
sessions and not those already running, its value never comes back, a client that is not
signed in can neither read nor change them, they survive a restart, and an option of the
daemon's command line wins (shown pinned, refused). ``rcd status`` shows them."""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from daemon.settings import given_options
from testkit.harness import Daemon, Relay, rcd, start_daemon, start_relay


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    async with trio.open_nursery() as nursery:
        running = await start_relay(nursery, tmp_path / "relay")
        try:
            yield running
        finally:
            await running.aclose()
            nursery.cancel_scope.cancel()


async def printenv(relay: Relay, session_id: str, name: str, n: int) -> str:
    """Have the agent print variable ``name`` (its ``n``th command, approved)."""
    message = f"run printenv {name} || echo unset"
    assert (await relay.post_message(session_id, message, f"m{n}")).status_code == 202
    events = await relay.wait_kind(session_id, "permission_request", n)
    request = [e for e in events if e["kind"] == "permission_request"][n - 1]["data"]
    assert (await relay.decide(session_id, request["request_id"], "allow")).is_success
    events = await relay.wait_kind(session_id, "tool_result", n)
    result: str = [e for e in events if e["kind"] == "tool_result"][n - 1]["data"]["content"]
    return result.strip()


async def new_session(relay: Relay, daemon: Daemon) -> str:
    created = await relay.create_session(daemon.environment_id)
    assert created.status_code == 201, created.text
    session_id: str = created.json()["id"]
    await relay.wait_kind(session_id, "session_started")
    return session_id


async def settings(relay: Relay, daemon: Daemon, **update: Any) -> httpx.Response:
    path = f"/api/environments/{daemon.environment_id}/settings"
    if update:
        return await relay.client.put(path, json=update)
    return await relay.client.get(path)


async def test_a_variable_reaches_new_sessions_only_and_is_never_shown(
    relay: Relay, tmp_path: Path
) -> None:
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    daemon = await start_daemon(relay, home, project)
    before = await new_session(relay, daemon)
    assert (await settings(relay, daemon)).json()["env_names"] == []

    secret = "s3cret-value"
    changed = await settings(relay, daemon, env={"DEPLOY_KEY": secret}, permission_mode="plan")
    assert changed.status_code == 200, changed.text
    view = changed.json()
    assert view["env_names"] == ["DEPLOY_KEY"] and view["permission_mode"] == "plan"
    assert view["changes"][-1]["by"] == "tests"
    assert view["changes"][-1]["changed"] == ["env DEPLOY_KEY", "permission_mode"]
    assert secret not in changed.text and secret not in (await settings(relay, daemon)).text
    # The relay keeps the daemon's view, which names the variable and never says it. (The
    # value crossed it once, queued for the daemon as every message is, and went with the
    # daemon's acknowledgement.)
    (kept_view,) = await relay.storage.list_environments()
    view_row = await relay.storage.read_settings(kept_view.id)
    assert view_row is not None and view_row.env_names == ["DEPLOY_KEY"]

    after = await new_session(relay, daemon)
    assert await printenv(relay, after, "DEPLOY_KEY", 1) == secret
    assert await printenv(relay, before, "DEPLOY_KEY", 1) == "unset"

    # Capacity lowered below what runs: nothing running ends, nothing new starts.
    assert (await settings(relay, daemon, capacity=1)).json()["capacity"] == 1
    full = await relay.create_session(daemon.environment_id)
    assert full.status_code == 409 and full.json()["error"]["code"] == "at_capacity"
    for running in (before, after):
        assert (await relay.session(running))["state"] == "idle"
    assert (await settings(relay, daemon, capacity=4)).json()["capacity"] == 4

    # Kept by the daemon, for its user alone.
    kept = next((home / ".config" / "rcd" / "settings").glob("*.json"))
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert json.loads(kept.read_text())["env"] == {"DEPLOY_KEY": secret}

    # Nobody signed in: neither read nor change.
    async with httpx.AsyncClient(base_url=relay.url) as anonymous:
        path = f"/api/environments/{daemon.environment_id}/settings"
        assert (await anonymous.get(path)).status_code == 401
        assert (await anonymous.put(path, json={"env": {"X": "1"}})).status_code == 401

    # A restart keeps them; removing a variable takes it away from new sessions.
    assert await daemon.stop() == 0
    daemon = await start_daemon(relay, home, project)
    again = await new_session(relay, daemon)
    assert await printenv(relay, again, "DEPLOY_KEY", 1) == secret
    removed = await settings(relay, daemon, env={"DEPLOY_KEY": None})
    assert removed.json()["env_names"] == []
    last = await new_session(relay, daemon)
    assert await printenv(relay, last, "DEPLOY_KEY", 1) == "unset"

    status = await rcd(daemon.env, "status", str(project))
    assert "permission mode plan" in status.stdout.decode()
    assert "settings last changed by tests: env DEPLOY_KEY" in status.stdout.decode()


async def test_the_command_line_wins_and_bad_settings_are_refused(
    relay: Relay, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    daemon = await start_daemon(relay, tmp_path / "home", project, "--capacity", "3")
    view = (await settings(relay, daemon)).json()
    assert view["pinned"] == ["capacity"] and view["capacity"] == 3
    refused = await settings(relay, daemon, capacity=5)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "pinned"
    assert "capacity" in refused.json()["error"]["message"]

    # Not pinned: applied, and the relay's own record follows (what it enforces).
    assert (await settings(relay, daemon, spawn="same-dir", allowed_tools=["Bash(ls)"])).is_success
    for bad, why in [
        ({"env": {"PATH": "/evil"}}, "PATH is not for settings"),
        # What would run code or read configuration outside the agent's sandbox.
        ({"env": {"claude_config_dir": "/tmp/x"}}, "claude_config_dir is not for settings"),
        ({"env": {"NODE_OPTIONS": "--require x"}}, "NODE_OPTIONS is not for settings"),
        ({"env": {"https_proxy": "http://x"}}, "https_proxy is not for settings"),
        ({"env": {"1X": "v"}}, "not a variable name"),
        # An option of the agent's CLI dressed as a tool rule.
        ({"allowed_tools": ["--dangerously-skip-permissions"]}, "is not a tool rule"),
        ({"sandbox_allow_hosts": ["http://x"]}, "is not a host"),
        ({"sandbox_allow_hosts": ["*.com"]}, "is not a host"),
        ({"permission_mode": "yolo"}, "permission_mode"),
    ]:
        answer = await settings(relay, daemon, **bad)
        assert answer.status_code == 400 and why in answer.text, (bad, answer.text)
    assert (await settings(relay, daemon)).json()["allowed_tools"] == ["Bash(ls)"]
    # What this machine cannot do, the daemon refuses, saying why; nothing changes.
    refused = await settings(relay, daemon, spawn="worktree")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "settings_refused"
    assert "no worktrees here" in refused.json()["error"]["message"]
    assert (await settings(relay, daemon)).json()["spawn"] == "same-dir"


async def test_a_sandbox_given_on_the_command_line_pins_its_hosts_too(
    relay: Relay, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    daemon = await start_daemon(relay, tmp_path / "home", project, "--sandbox")
    view = (await settings(relay, daemon)).json()
    assert view["pinned"] == ["sandbox", "sandbox_allow_hosts"] and view["sandbox"] is True
    for loosen in ({"sandbox": False}, {"sandbox_allow_hosts": ["example.com"]}):
        answer = await settings(relay, daemon, **loosen)
        assert answer.status_code == 409 and answer.json()["error"]["code"] == "pinned"
    # Over the relay's limit: refused before it reaches the daemon.
    big = await settings(relay, daemon, capacity=9999)
    assert big.status_code == 409 and big.json()["error"]["code"] == "capacity_too_large"


def test_the_options_given_are_found_however_written() -> None:
    argv = ["start", "/p", "--spawn=worktree", "--cap", "3", "--sandbox-allow-host", "h", "-v"]
    assert given_options(argv) == {"spawn", "capacity", "sandbox_allow_host"}
    assert given_options(["start", "--no-sandbox", "--", "--spawn"]) == {"no_sandbox"}
    assert given_options(["start", "--sand"]) == set()  # ambiguous: argparse refuses it too
