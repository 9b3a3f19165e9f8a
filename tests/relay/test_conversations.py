"""A session that continues a conversation made outside rcd (``rcd import``): the relay
sends it only to a daemon that said it can (``Rcd-Features: conversations`` on its
registration), and what it sends otherwise is what relays and daemons of before read."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import httpx

import wire
from relay.sqlite.connection import database_path

from .conftest import Daemon, create_session, queued_directives, register_body

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


def test_a_client_body_without_a_conversation_is_what_relays_of_before_read() -> None:
    assert wire.encode(wire.CreateSession(prompt="x")) == {
        "prompt": "x",
        "title": None,
        "spawn": None,
    }
    assert "conversation" not in wire.encode(wire.StartSession(session_id="s"))
