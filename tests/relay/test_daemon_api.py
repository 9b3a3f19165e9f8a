"""The daemon API (``/daemon/v1``) through the app (in process; streams on the real
server): registration, tokens, the downlink, acks and the uplink, with their refusals.

(Over 400 lines on purpose: one module per API, as ``test_client_api.py``, route by route.)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import wire
from relay import Hub, SqliteStorage, admin
from relay.daemon_api import MAX_FRAMES
from relay.fanout import session_key

from .conftest import (
    Daemon,
    count_rows,
    create_session,
    event,
    queued_directives,
    register,
    register_body,
    started,
    uplink,
)
from .test_client_api import assert_error

# -- pairing and registration -----------------------------------------------------------------


async def test_pair_then_register_gives_the_same_id_every_time(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    code = admin.create_pair_code(data_dir)
    response = await client.post("/daemon/v1/pair", json={"code": code.lower(), "machine": "m1"})
    assert response.status_code == 200
    pair: wire.PairResponse = wire.decode(wire.PairResponse, response.json())
    credential = pair.credential
    headers = {"authorization": f"Bearer {credential}"}

    first = await client.post("/daemon/v1/register", json=register_body(), headers=headers)
    assert first.status_code == 200
    env_id = first.json()["environment_id"]
    assert first.json() == {"environment_id": env_id, "open_sessions": []}

    again = await client.post(
        "/daemon/v1/register",
        json=register_body(capacity=8, spawn="worktree", agent="claude-2"),
        headers=headers,
    )
    assert again.json()["environment_id"] == env_id
    other_dir = await client.post(
        "/daemon/v1/register", json=register_body(directory="/elsewhere"), headers=headers
    )
    assert other_dir.json()["environment_id"] != env_id

    user = {"authorization": f"Bearer {admin.create_device_token(data_dir, 'phone')}"}
    envs = (await client.get("/api/environments", headers=user)).json()["environments"]
    updated = next(e for e in envs if e["id"] == env_id)
    assert (updated["capacity"], updated["spawn"]) == (8, "worktree")


async def test_a_pair_code_works_once(client: httpx.AsyncClient, data_dir: Path) -> None:
    code = admin.create_pair_code(data_dir)
    ok = await client.post("/daemon/v1/pair", json={"code": code, "machine": "m1"})
    assert ok.status_code == 200
    again = await client.post("/daemon/v1/pair", json={"code": code, "machine": "m2"})
    assert_error(again, 401, "invalid_pair_code")
    wrong = await client.post("/daemon/v1/pair", json={"code": "AAAA-AAAA", "machine": "m"})
    assert_error(wrong, 401, "invalid_pair_code")
    assert count_rows(data_dir, "environment_credentials") == 1


async def test_an_expired_pair_code_is_refused(data_dir: Path) -> None:
    now = [1000.0]
    async with SqliteStorage(data_dir / "relay.sqlite3", clock=lambda: now[0]) as storage:
        await storage.add_pair_code("h", ttl=600)
        now[0] += 601
        assert await storage.redeem_pair_code("h", "m1", "cred-hash") is None
        await storage.add_pair_code("h2", ttl=600)
        now[0] += 599
        assert await storage.redeem_pair_code("h2", "m1", "cred-hash") is not None


async def test_register_lists_open_sessions_with_their_last_seq(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon
) -> None:
    a = await create_session(client, user, daemon.environment_id)
    b = await create_session(client, user, daemon.environment_id)
    c = await create_session(client, user, daemon.environment_id)
    await uplink(client, daemon, a["id"], started(1), event(2, "assistant_text", text="x"))
    ended = event(1, "session_ended", reason="done", worktree_kept=False, branch=None)
    await uplink(client, daemon, c["id"], ended)

    response = await client.post(
        "/daemon/v1/register", json=register_body(), headers=daemon.credential_headers
    )
    registration: wire.RegisterResponse = wire.decode(wire.RegisterResponse, response.json())
    assert registration.environment_id == daemon.environment_id
    # With where each ran (from its session_started), for the daemon ending them.
    assert registration.open_sessions == [
        wire.OpenSession(session_id=a["id"], last_seq=2, cwd="/home/dev/project"),
        wire.OpenSession(session_id=b["id"], last_seq=0),
    ]


async def test_register_refuses_another_protocol_and_bad_bodies(
    client: httpx.AsyncClient, daemon: Daemon, data_dir: Path
) -> None:
    response = await client.post(
        "/daemon/v1/register", json=register_body(protocol=99), headers=daemon.credential_headers
    )
    assert_error(response, 400, "unsupported_protocol")
    for bad in (register_body(capacity=0), register_body(spawn="x"), register_body(extra=1)):
        response = await client.post(
            "/daemon/v1/register", json=bad, headers=daemon.credential_headers
        )
        assert_error(response, 400, "invalid_body")
    assert count_rows(data_dir, "environments") == 1


# -- authentication -----------------------------------------------------------------------------


# Every route with every kind of credential: test_scopes.py.


async def test_another_machine_cannot_mint_tokens_for_this_environment(
    client: httpx.AsyncClient,
    storage: SqliteStorage,
    user: dict[str, str],
    daemon: Daemon,
    data_dir: Path,
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    intruder = await register(client, storage, machine="m2")
    for environment_id, session_id in [
        (daemon.environment_id, None),
        (daemon.environment_id, s["id"]),
        # Its own environment, but this environment's session.
        (intruder.environment_id, s["id"]),
    ]:
        response = await client.post(
            f"/daemon/v1/environments/{environment_id}/tokens",
            json={"session_id": session_id},
            headers=intruder.credential_headers,
        )
        assert_error(response, 404, "not_found")
    env = await storage.get_environment(daemon.environment_id)
    assert env is not None and env.online and env.active_sessions == 1
    assert len(queued_directives(data_dir, daemon.environment_id)) == 1


async def test_minting_checks_the_credential_before_the_body(
    client: httpx.AsyncClient, daemon: Daemon
) -> None:
    url = f"/daemon/v1/environments/{daemon.environment_id}/tokens"
    stranger = {"authorization": "Bearer rcd_env_not-a-credential"}
    for body in (b"{", b'{"session_id": 7}', b'{"session_id": "ses_x", "more": 1}'):
        # Unknown credential: 401 whatever the body (nothing about the schema leaks).
        response = await client.post(url, content=body, headers=stranger)
        assert_error(response, 401, "credential_revoked")
        response = await client.post(url, content=body, headers=daemon.credential_headers)
        assert_error(response, 400, "invalid_body")
    response = await client.post(
        url, json={"session_id": "ses_missing"}, headers=daemon.credential_headers
    )
    assert_error(response, 404, "not_found")


async def test_a_revoked_credential_and_its_tokens_stop_at_once(
    client: httpx.AsyncClient, storage: SqliteStorage, user: dict[str, str], daemon: Daemon
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    assert (await uplink(client, daemon, s["id"], started())).status_code == 200
    other = await register(client, storage, machine="m2")
    assert await storage.revoke_environment(daemon.environment_id) == [daemon.environment_id]
    for response in [
        await uplink(client, daemon, s["id"], event(2, "assistant_text", text="late")),
        await client.post(
            f"/daemon/v1/environments/{daemon.environment_id}/ack",
            json={"through": 1},
            headers=daemon.headers,
        ),
        await client.post(
            "/daemon/v1/register", json=register_body(), headers=daemon.credential_headers
        ),
    ]:
        body = assert_error(response, 401, "credential_revoked")
        assert "rcd pair" in body["error"]["message"]
    # The session ended; the other machine is untouched.
    info = (await client.get(f"/api/sessions/{s['id']}", headers=user)).json()
    assert info["state"] == "ended"
    env = await storage.get_environment(daemon.environment_id)
    assert env is not None and not env.online and env.revoked
    response = await client.post(
        f"/api/environments/{daemon.environment_id}/sessions", json={}, headers=user
    )
    assert_error(response, 409, "environment_offline")
    assert (
        await client.post(
            "/daemon/v1/register",
            json=register_body(machine="m2"),
            headers=other.credential_headers,
        )
    ).status_code == 200


async def test_capacity_over_the_relay_limit_is_refused(
    client: httpx.AsyncClient, daemon: Daemon
) -> None:
    response = await client.post(
        "/daemon/v1/register",
        json=register_body(capacity=100_000),
        headers=daemon.credential_headers,
    )
    body = assert_error(response, 400, "capacity_too_large")
    assert "256" in body["error"]["message"]


# -- uplink --------------------------------------------------------------------------------------


async def test_uplink_is_idempotent_and_contiguous(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    sid = s["id"]
    text = [event(i, "assistant_text", text=f"t{i}") for i in range(1, 7)]

    assert (await uplink(client, daemon, sid, text[0], text[1])).json() == {"acked": 2}
    # A retry overlapping what is held: duplicates ignored (even with other content).
    changed = event(2, "assistant_text", text="CHANGED")
    assert (await uplink(client, daemon, sid, changed, text[2])).json() == {"acked": 3}
    # A gap: seq 5 is not stored, the answer says where to resume.
    assert (await uplink(client, daemon, sid, text[4])).json() == {"acked": 3}
    # Out of order inside one batch is fine.
    assert (await uplink(client, daemon, sid, text[5], text[4], text[3])).json() == {"acked": 6}
    assert (await uplink(client, daemon, sid)).json() == {"acked": 6}

    events = (await client.get(f"/api/sessions/{sid}/events", headers=user)).json()["events"]
    assert events == text


async def test_uplink_indexes_state_title_and_location(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    sid = s["id"]

    async def info() -> dict[str, Any]:
        body: dict[str, Any] = (await client.get(f"/api/sessions/{sid}", headers=user)).json()
        return body

    assert (await info())["title"] is None
    await uplink(
        client, daemon, sid, started(1, spawn="worktree", branch="rcd/fix", cwd="/p/.rcd/wt/fix")
    )
    now = await info()
    assert (now["state"], now["cwd"], now["branch"], now["spawn"]) == (
        "idle",
        "/p/.rcd/wt/fix",
        "rcd/fix",
        "worktree",
    )
    message = event(2, "user_message", text="\nFix the login bug\nthanks", input_id="i", origin="x")
    await uplink(client, daemon, sid, message, event(3, "status", state="busy"))
    now = await info()
    assert (now["title"], now["state"]) == ("Fix the login bug", "busy")
    assert now["updated_at"] >= s["updated_at"]

    second = event(4, "user_message", text="something else", input_id="j", origin="x")
    await uplink(client, daemon, sid, second, event(5, "status", state="awaiting_permission"))
    assert ((await info())["title"], (await info())["state"]) == (
        "Fix the login bug",
        "awaiting_permission",
    )
    ended = event(6, "session_ended", reason="stopped", worktree_kept=True, branch="rcd/fix")
    await uplink(client, daemon, sid, ended)
    assert (await info())["state"] == "ended"


async def test_uplink_refusals_store_nothing(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon, data_dir: Path
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    sid = s["id"]
    too_many = [event(i, "assistant_text", text="x") for i in range(1, 1002)]
    assert_error(await uplink(client, daemon, sid, *too_many), 413, "too_many_events")

    bad_state = event(2, "status", state="flying")
    response = await uplink(client, daemon, sid, started(1), bad_state)
    body = assert_error(response, 400, "invalid_body")
    assert "events[1]" in body["error"]["message"]

    for bad in (
        {**event(1, "assistant_text", text="x"), "extra": 1},
        event(1, "no_such_kind"),
        {**event(1, "assistant_text", text="x"), "seq": 0},
    ):
        assert_error(await uplink(client, daemon, sid, bad), 400, "invalid_body")
    assert count_rows(data_dir, "events") == 0
    info = (await client.get(f"/api/sessions/{sid}", headers=user)).json()
    assert info["state"] == "queued"

    # No token is minted for a session that does not exist.
    response = await client.post(
        f"/daemon/v1/environments/{daemon.environment_id}/tokens",
        json={"session_id": "ses_nope"},
        headers=daemon.credential_headers,
    )
    assert_error(response, 404, "not_found")


async def test_a_full_batch_of_1000_is_accepted(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    batch = [event(i, "assistant_text", text="x" * 100) for i in range(1, 1001)]
    assert (await uplink(client, daemon, s["id"], *batch)).json() == {"acked": 1000}


# -- ack and goodbye ------------------------------------------------------------------------------


async def test_ack_prunes_applied_directives(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon, data_dir: Path
) -> None:
    for _ in range(3):
        await create_session(client, user, daemon.environment_id)
    url = f"/daemon/v1/environments/{daemon.environment_id}/ack"
    response = await client.post(url, json={"through": 2}, headers=daemon.headers)
    assert response.status_code == 204
    remaining = queued_directives(data_dir, daemon.environment_id)
    assert len(remaining) == 1
    # An ack beyond what exists is clamped; a negative one is refused.
    assert (await client.post(url, json={"through": 99}, headers=daemon.headers)).status_code == 204
    assert queued_directives(data_dir, daemon.environment_id) == []
    await create_session(client, user, daemon.environment_id)
    assert len(queued_directives(data_dir, daemon.environment_id)) == 1
    response = await client.post(url, json={"through": -1}, headers=daemon.headers)
    assert_error(response, 400, "invalid_body")


async def test_an_uplink_request_carries_an_ack_in_its_transaction(
    client: httpx.AsyncClient,
    user: dict[str, str],
    daemon: Daemon,
    data_dir: Path,
    storage: SqliteStorage,
) -> None:
    sessions = [(await create_session(client, user, daemon.environment_id))["id"] for _ in range(3)]
    url = f"/daemon/v1/environments/{daemon.environment_id}/uplink"
    a = sessions[0]
    headers = await daemon.session_headers(client, a)
    token = headers["authorization"].removeprefix("Bearer ")
    part = {"session_id": a, "token": token, "events": [started(1)]}
    response = await client.post(url, json={"sessions": [part], "ack": 2}, headers=daemon.headers)
    assert response.status_code == 200, response.text
    assert response.json()["sessions"][0]["acked"] == 1
    assert len(queued_directives(data_dir, daemon.environment_id)) == 1
    # An ack alone (no events) is one storage call too.
    response = await client.post(url, json={"sessions": [], "ack": 3}, headers=daemon.headers)
    assert response.json() == {"sessions": []}
    assert queued_directives(data_dir, daemon.environment_id) == []
    # A negative ack refuses the whole request, events included.
    part = {"session_id": a, "token": token, "events": [event(2, "assistant_text", text="x")]}
    response = await client.post(url, json={"sessions": [part], "ack": -1}, headers=daemon.headers)
    assert_error(response, 400, "invalid_body")
    assert [e.seq for e in await storage.read_events(a, 0, 10)] == [1]


async def test_a_credential_revoked_while_an_uplink_request_waits_for_its_body_stores_nothing(
    client: httpx.AsyncClient,
    user: dict[str, str],
    daemon: Daemon,
    data_dir: Path,
    storage: SqliteStorage,
) -> None:
    """The daemon opens an uplink request before its batch exists: the relay checks the
    link token when the head arrives, and the credential again when the batch does."""
    a = (await create_session(client, user, daemon.environment_id))["id"]
    token = (await daemon.session_headers(client, a))["authorization"].removeprefix("Bearer ")
    before = queued_directives(data_dir, daemon.environment_id)
    head_checked, revoked = trio.Event(), trio.Event()

    async def body() -> AsyncIterator[bytes]:
        head_checked.set()  # the relay reads the body only once the head passed
        await revoked.wait()
        part = {"session_id": a, "token": token, "events": [started(1)]}
        yield json.dumps({"sessions": [part], "ack": len(before)}).encode()

    async def revoke() -> None:
        await head_checked.wait()
        await storage.revoke_environment(daemon.environment_id)
        revoked.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(revoke)
        response = await client.post(
            f"/daemon/v1/environments/{daemon.environment_id}/uplink",
            content=body(),
            headers=daemon.headers | {"content-type": "application/json"},
        )
    assert_error(response, 401, "credential_revoked")
    assert await storage.read_events(a, 0, 10) == []
    assert count_rows(data_dir, "directives") >= 1  # the ack was not applied either


async def test_goodbye_takes_the_environment_offline_and_ends_its_sessions(
    client: httpx.AsyncClient, storage: SqliteStorage, user: dict[str, str], daemon: Daemon
) -> None:
    a = await create_session(client, user, daemon.environment_id)
    b = await create_session(client, user, daemon.environment_id)
    url = f"/daemon/v1/environments/{daemon.environment_id}/goodbye"
    assert (await client.post(url, headers=daemon.headers)).status_code == 204
    env = await storage.get_environment(daemon.environment_id)
    assert env is not None and not env.online and env.active_sessions == 0
    for s in (a, b):
        info = (await client.get(f"/api/sessions/{s['id']}", headers=user)).json()
        assert info["state"] == "ended"
    response = await client.post(
        f"/api/environments/{daemon.environment_id}/sessions", json={}, headers=user
    )
    assert_error(response, 409, "environment_offline")


# -- several sessions in one uplink request ------------------------------------------------------


async def test_one_uplink_request_carries_several_sessions_each_judged_alone(
    client: httpx.AsyncClient,
    storage: SqliteStorage,
    user: dict[str, str],
    daemon: Daemon,
) -> None:
    a = (await create_session(client, user, daemon.environment_id))["id"]
    b = (await create_session(client, user, daemon.environment_id))["id"]
    other = await register(client, storage, machine="m2")
    await storage.open_downlink(other.environment_id, "link_other")
    o = (await create_session(client, user, other.environment_id))["id"]

    async def token(d: Daemon, sid: str) -> str:
        return (await d.session_headers(client, sid))["authorization"].removeprefix("Bearer ")

    parts = [
        {"session_id": a, "token": await token(daemon, a), "events": [started(1)]},
        # b's events with a's token: refused, alone.
        {"session_id": b, "token": await token(daemon, a), "events": [started(1)]},
        {"session_id": b, "token": "rcd_at_forged.mac", "events": [started(1)]},
        # Another environment's session and token, in this environment's request.
        {"session_id": o, "token": await token(other, o), "events": [started(1)]},
        # A gap: nothing past it is stored, and the answer says how far the log goes.
        {
            "session_id": a,
            "token": await token(daemon, a),
            "events": [event(2, "assistant_text", text="x"), event(9, "assistant_text", text="y")],
        },
    ]
    response = await client.post(
        f"/daemon/v1/environments/{daemon.environment_id}/uplink",
        json={"sessions": parts},
        headers=daemon.headers,
    )
    assert response.status_code == 200, response.text
    answers = response.json()["sessions"]
    assert [(x["session_id"], x["acked"], x["status"], x["code"]) for x in answers] == [
        (a, 1, None, None),
        (b, None, 403, "wrong_scope"),
        (b, None, 401, "invalid_token"),
        (o, None, 403, "wrong_scope"),
        (a, 2, None, None),
    ]
    assert [e.seq for e in await storage.read_events(a, 0, 100)] == [1, 2]
    assert await storage.read_events(b, 0, 100) == []
    assert await storage.read_events(o, 0, 100) == []


async def test_an_uplink_request_holds_at_most_1000_events_in_all(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon
) -> None:
    a = (await create_session(client, user, daemon.environment_id))["id"]
    token = (await daemon.session_headers(client, a))["authorization"].removeprefix("Bearer ")
    batch = [event(i, "assistant_text", text="x") for i in range(1, 502)]
    response = await client.post(
        f"/daemon/v1/environments/{daemon.environment_id}/uplink",
        json={"sessions": [{"session_id": a, "token": token, "events": batch}] * 2},
        headers=daemon.headers,
    )
    assert_error(response, 413, "too_many_events")


async def frames_of_a_new_session(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon
) -> tuple[str, str, dict[str, str], Callable[..., bytes]]:
    """A new session of ``daemon``; the URL and headers of an uplink request sent as
    frames, and ``frame(*events)``: one line of it with the session's events."""
    a = (await create_session(client, user, daemon.environment_id))["id"]
    token = (await daemon.session_headers(client, a))["authorization"].removeprefix("Bearer ")
    url = f"/daemon/v1/environments/{daemon.environment_id}/uplink"
    headers = daemon.headers | {"content-type": wire.UPLINK_FRAMES_TYPE}

    def frame(*events: dict[str, Any]) -> bytes:
        part = {"session_id": a, "token": token, "events": list(events)}
        return json.dumps({"sessions": [part]}).encode() + b"\n"

    return a, url, headers, frame


async def test_an_uplink_request_sent_as_frames_stores_each_as_it_arrives(
    client: httpx.AsyncClient,
    user: dict[str, str],
    daemon: Daemon,
    storage: SqliteStorage,
    hub: Hub,
) -> None:
    a, url, headers, frame = await frames_of_a_new_session(client, user, daemon)

    async def body() -> AsyncIterator[bytes]:
        yield frame(started(1))
        # Stored (and the session's readers woken) before the request's body ends.
        with trio.fail_after(5):
            while True:
                changed = hub.watch(session_key(a))  # before reading: a write is not missed
                if await storage.read_events(a, 0, 10):
                    break
                await changed.wait()
        yield frame(event(2, "assistant_text", text="x"))[:20]  # a frame in pieces
        yield frame(event(2, "assistant_text", text="x"))[20:] + b"\n"  # and a blank line
        yield json.dumps({"sessions": [], "ack": 1}).encode()  # the last line, unended

    response = await client.post(url, content=body(), headers=headers)
    assert response.status_code == 200, response.text
    frames = response.json()["frames"]
    assert [[s["acked"] for s in f["sessions"]] for f in frames] == [[1], [2], []]
    assert [e.seq for e in await storage.read_events(a, 0, 10)] == [1, 2]

    # (Each refusal comes at the body's last line, unended: ASGITransport, unlike a socket,
    # wants a body read to its end.)
    bad = await client.post(
        url, content=frame(event(3, "assistant_text", text="y")) + b"{", headers=headers
    )
    assert_error(bad, 400, "invalid_body")
    # The frame before the bad one was stored (the daemon resends what it was not told).
    assert [e.seq for e in await storage.read_events(a, 0, 10)] == [1, 2, 3]
    empty = json.dumps({"sessions": []}).encode() + b"\n"
    too_many = await client.post(url, content=empty * MAX_FRAMES + empty.strip(), headers=headers)
    assert_error(too_many, 413, "too_many_frames")


async def test_frames_that_arrive_together_are_stored_in_one_transaction(
    client: httpx.AsyncClient,
    user: dict[str, str],
    daemon: Daemon,
    storage: SqliteStorage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, url, headers, frame = await frames_of_a_new_session(client, user, daemon)
    calls: list[list[str]] = []
    real = storage.append_many

    async def counted(batches: Any, **kwargs: Any) -> Any:
        calls.append([session_id for session_id, _ in batches])
        return await real(batches, **kwargs)

    monkeypatch.setattr(storage, "append_many", counted)
    # One piece of body (one read): three frames of one session, then an ack alone.
    together = (
        frame(started(1))
        + frame(event(2, "assistant_text", text="x"))
        + frame(event(2, "assistant_text", text="x"), event(3, "assistant_text", text="y"))
        + json.dumps({"sessions": [], "ack": 1}).encode()
        + b"\n"
    )
    response = await client.post(url, content=together + b" ", headers=headers)
    assert response.status_code == 200, response.text
    frames = response.json()["frames"]
    # Each frame answered as if stored alone: the second frame's duplicate is ignored.
    assert [[s["acked"] for s in f["sessions"]] for f in frames] == [[1], [2], [3], []]
    assert calls == [[a, a, a]]
    assert [e.seq for e in await storage.read_events(a, 0, 10)] == [1, 2, 3]

    # A refused line among them: the frames before it are stored, the ones after it not.
    calls.clear()
    bad = await client.post(
        url,
        content=frame(event(4, "assistant_text", text="z"))
        + b"{\n"
        + frame(event(5, "assistant_text", text="w"))
        + b" ",
        headers=headers,
    )
    assert_error(bad, 400, "invalid_body")
    assert calls == [[a]]
    assert [e.seq for e in await storage.read_events(a, 0, 10)] == [1, 2, 3, 4]


async def test_frames_named_by_the_stream_header_are_answered_on_the_open_downlink(
    client: httpx.AsyncClient,
    user: dict[str, str],
    daemon: Daemon,
    storage: SqliteStorage,
    hub: Hub,
) -> None:
    a, url, headers, frame = await frames_of_a_new_session(client, user, daemon)

    body = frame(started(1)) + frame(event(2, "assistant_text", text="x"))
    # No downlink open: the answers come with the response only.
    response = await client.post(
        url, content=body, headers=headers | {wire.UPLINK_STREAM_HEADER: "s-1"}
    )
    assert response.status_code == 200, response.text
    tail = hub.downlink_tail(daemon.environment_id)
    assert tail.take_acks() == b""
    # A downlink open here (the tail of its link): each frame's answer is queued for it as
    # an SSE message without an id, the same answer as the response's.
    tail.link_id = "link_test"
    body = frame(event(3, "assistant_text", text="y")) + frame(event(3, "assistant_text", text="y"))
    response = await client.post(
        url, content=body, headers=headers | {wire.UPLINK_STREAM_HEADER: "s-2"}
    )
    assert response.status_code == 200, response.text
    messages = tail.take_acks().decode().split("\n\n")
    assert messages[-1] == ""
    acks = []
    for message in messages[:-1]:
        lines = message.split("\n")
        assert lines[0] == f"event: {wire.UPLINK_ACK_EVENT}"
        assert lines[1].startswith("data: ") and len(lines) == 2
        acks.append(wire.decode_json(wire.UplinkFrameAck, lines[1].removeprefix("data: ")))
    assert [(x.stream, x.frame) for x in acks] == [("s-2", 0), ("s-2", 1)]
    frames = wire.decode(wire.UplinkFrames, response.json()).frames
    assert [x.answer for x in acks] == frames
    assert [[s.acked for s in f.sessions] for f in frames] == [[3], [3]]
    # Without the header: nothing on the downlink.
    response = await client.post(
        url, content=frame(event(4, "assistant_text", text="z")), headers=headers
    )
    assert response.status_code == 200, response.text
    assert tail.take_acks() == b""
    # A header that is not a short name is refused before anything is stored.
    for bad in ("", "x" * 65, "a b", "a/b"):
        response = await client.post(
            url,
            content=frame(event(5, "assistant_text", text="w")),
            headers=headers | {wire.UPLINK_STREAM_HEADER: bad},
        )
        assert_error(response, 400, "invalid_header")
    assert [e.seq for e in await storage.read_events(a, 0, 10)] == [1, 2, 3, 4]
