"""A session's agent chosen by the client (``"agent"`` in the create body), limited to the
agents its environment's daemon allows (its settings' ``agents``), with the daemon's side
played by hand: the start and a resume carry it, the session says which agent runs it, and
what the daemon does not allow is refused before anything is queued."""

from __future__ import annotations

import attrs
import httpx
import pytest

import wire
from relay import SqliteStorage

from .conftest import Daemon, create_session, event, started, uplink

VIEW = wire.SettingsView(
    env_names=[], spawn="same-dir", permission_mode="default", allowed_tools=[], sandbox=False,
    sandbox_allow_hosts=[], capacity=4, pinned=[], changes=[], agents=["claude", "codex"],
)  # fmt: skip


async def _directives(storage: SqliteStorage, daemon: Daemon) -> list[wire.Directive]:
    read = await storage.read_downlink(daemon.environment_id, "link_test", 0, 100)
    return [d.directive for d in read.directives]


@pytest.fixture
async def allowing(storage: SqliteStorage, daemon: Daemon) -> Daemon:
    await storage.save_settings(daemon.environment_id, VIEW)
    await storage.save_features(daemon.environment_id, ["settings", "agents"])
    return daemon


async def test_an_allowed_agent_is_started_shown_and_resumed_with(
    client: httpx.AsyncClient, user: dict[str, str], storage: SqliteStorage, allowing: Daemon
) -> None:
    session = await create_session(client, user, allowing.environment_id, agent="codex")
    assert session["agent"] == "codex"
    (start,) = await _directives(storage, allowing)
    assert isinstance(start, wire.StartSession) and start.agent == "codex"
    assert "agent" not in wire.encode(
        attrs.evolve(start, agent=None)
    )  # left out when None: a daemon of before agents reads the rest as ever
    sid = session["id"]
    ended = event(2, "session_ended", reason="done", worktree_kept=False, branch=None)
    assert (await uplink(client, allowing, sid, started(agent="codex"), ended)).status_code == 200
    got = await client.get(f"/api/sessions/{sid}", headers=user)
    assert got.json()["agent"] == "codex"
    resumed = await client.post(f"/api/sessions/{sid}/resume", headers=user)
    assert resumed.status_code == 202, resumed.text
    resume = (await _directives(storage, allowing))[-1]
    assert isinstance(resume, wire.ResumeSession) and resume.agent == "codex"

    # The default, asked for by name or not: none sent; and a session of the default says
    # nothing of it (a client of before agents reads it as ever).
    for body in ({}, {"agent": "claude"}):
        plain = await create_session(client, user, allowing.environment_id, **body)
        assert "agent" not in plain
        start = (await _directives(storage, allowing))[-1]
        assert isinstance(start, wire.StartSession) and start.agent is None
        assert (await uplink(client, allowing, plain["id"], started())).status_code == 200
        got = await client.get(f"/api/sessions/{plain['id']}", headers=user)
        assert "agent" not in got.json()

    # The daemon no longer runs codex: the codex session's resume is refused here.
    stop = event(3, "session_ended", reason="done", worktree_kept=False, branch=None)
    assert (await uplink(client, allowing, sid, started(agent="codex"), stop)).status_code == 200
    await storage.save_settings(allowing.environment_id, attrs.evolve(VIEW, agents=["claude"]))
    refused = await client.post(f"/api/sessions/{sid}/resume", headers=user)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "agent_not_allowed"
    await storage.save_features(allowing.environment_id, ["settings"])
    older = await client.post(f"/api/sessions/{sid}/resume", headers=user)
    assert older.status_code == 409 and older.json()["error"]["code"] == "agents_unsupported"


async def test_agents_the_daemon_does_not_run_are_refused(
    client: httpx.AsyncClient, user: dict[str, str], storage: SqliteStorage, allowing: Daemon
) -> None:
    path = f"/api/environments/{allowing.environment_id}/sessions"
    other = await client.post(path, json={"agent": "gemini"}, headers=user)
    assert other.status_code == 409 and other.json()["error"]["code"] == "agent_not_allowed"
    assert "it allows: claude, codex" in other.json()["error"]["message"]
    bad = await client.post(path, json={"agent": "Not A Name"}, headers=user)
    assert bad.status_code == 400 and "agent" in bad.text
    await storage.save_features(allowing.environment_id, ["settings"])
    old = await client.post(path, json={"agent": "codex"}, headers=user)
    assert old.status_code == 409 and old.json()["error"]["code"] == "agents_unsupported"
    assert await _directives(storage, allowing) == []


async def test_before_its_daemon_reports_agents_only_the_default_runs(
    client: httpx.AsyncClient, user: dict[str, str], storage: SqliteStorage, daemon: Daemon
) -> None:
    await storage.save_features(daemon.environment_id, ["settings", "agents"])
    path = f"/api/environments/{daemon.environment_id}/sessions"
    named = await client.post(path, json={"agent": "claude"}, headers=user)
    assert named.status_code == 201, named.text
    other = await client.post(path, json={"agent": "codex"}, headers=user)
    assert other.status_code == 409
    assert "it allows: claude" in other.json()["error"]["message"]
