"""An environment whose daemon is gone: past the grace its sessions show ``disconnected``
and inputs to them are refused (409), never queued for nobody; within it (a link being
renewed, a daemon reconnecting) inputs are queued as always."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

import wire
from relay import SqliteStorage
from relay.sqlite import database_path

from .conftest import Daemon, create_session, event, queued_directives, started, uplink
from .test_client_api import assert_error


def went_offline_ago(data_dir: Path, environment_id: str, seconds: float) -> None:
    """As if the environment's link had closed ``seconds`` ago."""
    with closing(sqlite3.connect(database_path(data_dir))) as db, db:
        db.execute(
            "UPDATE environments SET link_id = NULL, updated_at = ? WHERE id = ?",
            (time.time() - seconds, environment_id),
        )


async def state_of(client: httpx.AsyncClient, user: dict[str, str], session_id: str) -> str:
    one = (await client.get(f"/api/sessions/{session_id}", headers=user)).json()
    listed = (await client.get("/api/sessions", headers=user)).json()["sessions"]
    [same] = [s for s in listed if s["id"] == session_id]
    assert same["state"] == one["state"]
    state: str = one["state"]
    return state


async def post(
    client: httpx.AsyncClient, user: dict[str, str], session_id: str, path: str, body: Any = None
) -> httpx.Response:
    return await client.post(f"/api/sessions/{session_id}/{path}", json=body, headers=user)


async def test_inputs_wait_for_an_environment_offline_for_a_moment(
    client: httpx.AsyncClient,
    storage: SqliteStorage,
    user: dict[str, str],
    daemon: Daemon,
    data_dir: Path,
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    await uplink(client, daemon, s["id"], started(1))
    assert await storage.close_downlink(daemon.environment_id, "link_test")
    env = await storage.get_environment(daemon.environment_id)
    assert env is not None and env.offline_since is not None

    assert (
        await post(client, user, s["id"], "messages", {"id": "m1", "text": "hi"})
    ).status_code == 202
    assert (await post(client, user, s["id"], "interrupt")).status_code == 202
    assert await state_of(client, user, s["id"]) == "idle"
    assert queued_directives(data_dir, daemon.environment_id)[-2:] == [
        wire.SendMessage(session_id=s["id"], input_id="m1", text="hi", origin="phone"),
        wire.Interrupt(session_id=s["id"], origin="phone"),
    ]


async def test_past_the_grace_sessions_are_disconnected_and_inputs_refused(
    client: httpx.AsyncClient,
    storage: SqliteStorage,
    user: dict[str, str],
    daemon: Daemon,
    data_dir: Path,
) -> None:
    busy = await create_session(client, user, daemon.environment_id)
    request = event(
        3, "permission_request", request_id="req-1", tool="Bash", input={}, description="ls"
    )
    await uplink(client, daemon, busy["id"], started(1), event(2, "status", state="busy"), request)
    accepted = await post(client, user, busy["id"], "messages", {"id": "m1", "text": "hi"})
    assert accepted.status_code == 202
    done = await create_session(client, user, daemon.environment_id)
    ended = event(2, "session_ended", reason="stopped", worktree_kept=False, branch=None)
    await uplink(client, daemon, done["id"], started(1), ended)

    went_offline_ago(data_dir, daemon.environment_id, 31)  # the default grace is 30 s
    assert await state_of(client, user, busy["id"]) == "disconnected"
    assert await state_of(client, user, done["id"]) == "ended"
    [env] = (await client.get("/api/environments", headers=user)).json()["environments"]
    assert env["online"] is False

    before = queued_directives(data_dir, daemon.environment_id)
    for path, body in [
        ("messages", {"id": "m2", "text": "are you there?"}),
        ("permissions/req-1", {"decision": "allow"}),
        ("interrupt", None),
    ]:
        refused = assert_error(
            await post(client, user, busy["id"], path, body), 409, "environment_offline"
        )
        assert "offline for 31 s" in refused["error"]["message"]
        assert "nothing was queued" in refused["error"]["message"]
    assert queued_directives(data_dir, daemon.environment_id) == before
    # A retry of a message accepted before is still that message (202, nothing more queued).
    retry = await post(client, user, busy["id"], "messages", {"id": "m1", "text": "hi"})
    assert retry.status_code == 202
    assert queued_directives(data_dir, daemon.environment_id) == before

    # Stop is taken: a daemon that comes back applies it, and a restarted one ends the
    # session anyway.
    assert (await post(client, user, busy["id"], "stop")).status_code == 202

    await storage.open_downlink(daemon.environment_id, "link_back")
    assert await state_of(client, user, busy["id"]) == "busy"
    # The refused message's id was not used up: now it goes through.
    again = await post(client, user, busy["id"], "messages", {"id": "m2", "text": "are you there?"})
    assert again.status_code == 202
    assert queued_directives(data_dir, daemon.environment_id)[-1] == wire.SendMessage(
        session_id=busy["id"], input_id="m2", text="are you there?", origin="phone"
    )


async def test_a_restarted_relay_gives_daemons_the_grace_to_reconnect(
    client: httpx.AsyncClient,
    storage: SqliteStorage,
    user: dict[str, str],
    daemon: Daemon,
    data_dir: Path,
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    await uplink(client, daemon, s["id"], started(1))
    # The relay went down with the link open; the new one cannot know when the daemon
    # went away, so it counts from its own start.
    with closing(sqlite3.connect(database_path(data_dir))) as db, db:
        db.execute("UPDATE environments SET updated_at = 0 WHERE id = ?", (daemon.environment_id,))
    await storage.mark_all_offline()
    assert await state_of(client, user, s["id"]) == "idle"
    assert (
        await post(client, user, s["id"], "messages", {"id": "m1", "text": "hi"})
    ).status_code == 202
