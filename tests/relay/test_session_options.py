"""What a session may ask for beyond protocol 1's first form: to continue a conversation
made outside rcd (``rcd import``) and to run sandboxed. The relay sends either only to a
daemon that said it can (``Rcd-Features`` on its registration), keeps the sandbox for every
resume (a database of before gains the column), and what it sends otherwise is what relays
and daemons of before read."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import attrs
import httpx

import wire
from relay import SqliteStorage, admin
from relay.sqlite.connection import database_path

from .conftest import (
    Daemon,
    create_session,
    event,
    queued_directives,
    register_body,
    started,
    uplink,
)

CONVERSATION = "0b4c8a37-3d0e-4d61-9a55-5d7e0f1a2b3c"


def _raw_directives(data_dir: Path, environment_id: str) -> list[dict[str, object]]:
    with closing(sqlite3.connect(database_path(data_dir))) as db:
        rows = db.execute(
            "SELECT body FROM directives WHERE environment_id = ? ORDER BY dseq",
            (environment_id,),
        ).fetchall()
    return [json.loads(r[0]) for r in rows]


async def test_only_a_daemon_that_said_so_is_sent_a_conversation(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon, data_dir: Path
) -> None:
    # This daemon registered without the header (a daemon of before it).
    path = f"/api/environments/{daemon.environment_id}/sessions"
    refused = await client.post(path, json={"conversation": CONVERSATION}, headers=user)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "conversation_unsupported"
    assert queued_directives(data_dir, daemon.environment_id) == []
    # A plain session still goes, and its start has no key such a daemon would refuse.
    await create_session(client, user, daemon.environment_id, prompt="hi")
    (plain,) = _raw_directives(data_dir, daemon.environment_id)
    assert "conversation" not in plain

    again = await client.post(
        "/daemon/v1/register",
        json=register_body(),
        headers={**daemon.credential_headers, wire.FEATURES_HEADER: "conversations, other"},
    )
    assert again.status_code == 200 and again.json()["environment_id"] == daemon.environment_id
    await create_session(client, user, daemon.environment_id, conversation=CONVERSATION)
    start = queued_directives(data_dir, daemon.environment_id)[-1]
    assert isinstance(start, wire.StartSession) and start.conversation == CONVERSATION


async def test_a_sandboxed_session_resumes_sandboxed(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon, data_dir: Path
) -> None:
    path = f"/api/environments/{daemon.environment_id}/sessions"
    refused = await client.post(path, json={"sandbox": True}, headers=user)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "sandbox_unsupported"
    again = await client.post(
        "/daemon/v1/register",
        json=register_body(),
        headers={**daemon.credential_headers, wire.FEATURES_HEADER: "sandbox"},
    )
    assert again.status_code == 200
    session = await create_session(client, user, daemon.environment_id, sandbox=True)
    (start,) = queued_directives(data_dir, daemon.environment_id)
    assert isinstance(start, wire.StartSession) and start.sandbox
    ended = event(2, "session_ended", reason="stopped", worktree_kept=False, branch=None)
    await uplink(client, daemon, session["id"], started(1), ended)
    resumed = await client.post(f"/api/sessions/{session['id']}/resume", headers=user)
    assert resumed.status_code == 202, resumed.text
    resume = queued_directives(data_dir, daemon.environment_id)[-1]
    assert isinstance(resume, wire.ResumeSession) and resume.sandbox
    # A daemon of before the sandbox takes the environment over: the sandboxed session is
    # not resumed unsandboxed, nor left queued for a daemon that cannot read it.
    again = event(3, "session_ended", reason="stopped", worktree_kept=False, branch=None)
    await uplink(client, daemon, session["id"], again)
    older = await client.post(
        "/daemon/v1/register", json=register_body(), headers=daemon.credential_headers
    )
    assert older.status_code == 200
    refused = await client.post(f"/api/sessions/{session['id']}/resume", headers=user)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "sandbox_unsupported"


async def test_a_version_2_database_gains_the_sandbox_column(data_dir: Path) -> None:
    data_dir.mkdir()
    with closing(sqlite3.connect(database_path(data_dir))) as old:
        old.executescript(
            """
            CREATE TABLE sessions (id TEXT PRIMARY KEY, environment_id TEXT NOT NULL,
                title TEXT, state TEXT NOT NULL, spawn TEXT, cwd TEXT, branch TEXT,
                agent_session_id TEXT, last_seq INTEGER NOT NULL DEFAULT 0,
                created_at REAL NOT NULL, updated_at REAL NOT NULL);
            INSERT INTO sessions (id, environment_id, state, created_at, updated_at)
                VALUES ('ses_old', 'env_1', 'ended', 1, 1);
            PRAGMA user_version = 2;
            """
        )
    async with SqliteStorage.in_data_dir(data_dir) as storage:
        (old_session,) = await storage.list_sessions()
    assert (old_session.id, old_session.sandbox) == ("ses_old", False)
    assert admin.list_environments(data_dir) == []


def test_bodies_without_the_new_fields_are_what_peers_of_before_read() -> None:
    assert wire.encode(wire.CreateSession(prompt="x")) == {
        "prompt": "x",
        "title": None,
        "spawn": None,
    }
    start = wire.encode(wire.StartSession(session_id="s"))
    assert "conversation" not in start and "sandbox" not in start
    resume = wire.ResumeSession(session_id="s", agent_session_id="a", cwd="/", spawn="same-dir")
    assert "sandbox" not in wire.encode(resume)
    assert wire.encode(attrs.evolve(resume, sandbox=True))["sandbox"] is True


async def test_a_version_4_database_keeps_each_sessions_agent(data_dir: Path) -> None:
    """Sessions from before per-session agents ran their environment's one agent: the
    migration says so, so a daemon with another default later resumes them with it."""
    async with SqliteStorage.in_data_dir(data_dir) as storage:
        pass  # a current database, made
    with closing(sqlite3.connect(database_path(data_dir))) as old:
        old.executescript(
            """
            ALTER TABLE sessions DROP COLUMN agent;
            INSERT INTO environments (id, credential_id, name, machine, directory, spawn,
                capacity, agent, created_at, updated_at)
                VALUES ('env_1', 'cred', 'laptop', 'm1', '/p', 'same-dir', 4, 'claude', 1, 1);
            INSERT INTO sessions (id, environment_id, state, created_at, updated_at)
                VALUES ('ses_old', 'env_1', 'ended', 1, 1);
            PRAGMA user_version = 4;
            """
        )
    async with SqliteStorage.in_data_dir(data_dir) as storage:
        (old_session,) = await storage.list_sessions()
    assert (old_session.agent, old_session.environment_agent) == ("claude", "claude")
