"""The client API (``/api``) through the app (in process; streams on the real server):
environments, sessions, messages, permissions, events and their refusals, route by route.

(Over 400 lines on purpose: one module per API, route by route.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import wire
from relay import SqliteStorage, admin

from .conftest import (
    PUBLIC_URL,
    Daemon,
    count_rows,
    create_session,
    event,
    make_device_token,
    queued_directives,
    register,
    register_body,
    started,
    uplink,
)

CLIENT_ROUTES = [
    ("GET", "/api/environments"),
    ("POST", "/api/environments/env_x/sessions"),
    ("GET", "/api/sessions"),
    ("GET", "/api/sessions/ses_x"),
    ("PATCH", "/api/sessions/ses_x"),
    ("GET", "/api/sessions/ses_x/events"),
    ("POST", "/api/sessions/ses_x/messages"),
    ("POST", "/api/sessions/ses_x/permissions/req_1"),
    ("POST", "/api/sessions/ses_x/interrupt"),
    ("POST", "/api/sessions/ses_x/stop"),
    ("POST", "/api/sessions/ses_x/resume"),
]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body


# -- authentication -----------------------------------------------------------------------


# Every route with every kind of credential: test_scopes.py.


async def test_malformed_authorization_header_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/sessions", headers={"authorization": "Basic abc"})
    assert_error(response, 401, "unauthenticated")


# -- environments and session creation ------------------------------------------------------


async def test_environments_list_shows_online_and_active(
    client: httpx.AsyncClient, storage: SqliteStorage, user: dict[str, str], daemon: Daemon
) -> None:
    offline = await register(client, storage, machine="m2", name="desktop", capacity=2)
    await create_session(client, user, daemon.environment_id, prompt="hi")
    response = await client.get("/api/environments", headers=user)
    assert response.status_code == 200
    by_id = {e["id"]: e for e in response.json()["environments"]}
    assert by_id[daemon.environment_id] == {
        "id": daemon.environment_id,
        "name": "laptop",
        "machine": "m1",
        "online": True,
        "directory": "/home/dev/project",
        "spawn": "same-dir",
        "capacity": 4,
        "active_sessions": 1,
    }
    assert by_id[offline.environment_id]["online"] is False
    assert by_id[offline.environment_id]["active_sessions"] == 0


async def test_two_machines_serving_the_same_directory_are_told_apart_by_machine(
    client: httpx.AsyncClient, storage: SqliteStorage, user: dict[str, str]
) -> None:
    # Two paired machines, each with a daemon on a checkout at the same path under the
    # same name: two environments, and ``machine`` (the host name the daemon reports) tells
    # a client which is which. A daemon that reports no host name shows its machine id.
    first = await register(client, storage, machine="4c1d9e", hostname="workstation")
    second = await register(client, storage, machine="77ab02", hostname="laptop-2")
    third = await register(client, storage, machine="0f3e51")
    assert len({first.environment_id, second.environment_id, third.environment_id}) == 3
    response = await client.get("/api/environments", headers=user)
    assert response.status_code == 200
    shown = {
        e["id"]: (e["name"], e["directory"], e["machine"]) for e in response.json()["environments"]
    }
    assert shown == {
        first.environment_id: ("laptop", "/home/dev/project", "workstation"),
        second.environment_id: ("laptop", "/home/dev/project", "laptop-2"),
        third.environment_id: ("laptop", "/home/dev/project", "0f3e51"),
    }
    # A re-registration keeps the environment; a renamed host shows its new name.
    again = await client.post(
        "/daemon/v1/register",
        json=register_body(machine="4c1d9e", hostname="workstation-renamed"),
        headers=first.credential_headers,
    )
    assert again.json()["environment_id"] == first.environment_id
    response = await client.get("/api/environments", headers=user)
    machines = {e["id"]: e["machine"] for e in response.json()["environments"]}
    assert machines[first.environment_id] == "workstation-renamed"


async def test_create_session_queues_a_start_directive(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon, data_dir: Path
) -> None:
    prompt = "  \nFix the flaky login test please\nit fails on CI"
    response = await client.post(
        f"/api/environments/{daemon.environment_id}/sessions",
        json={"prompt": prompt, "spawn": "worktree"},
        headers=user,
    )
    assert response.status_code == 201
    session = response.json()
    assert session["id"].startswith("ses_")
    assert session["url"] == f"{PUBLIC_URL}/s/{session['id']}"
    assert session["state"] == "queued"
    assert session["title"] == "Fix the flaky login test please"
    assert session["spawn"] == "worktree"
    assert session["environment_id"] == daemon.environment_id
    wire.decode(wire.SessionInfo, session)

    (start,) = queued_directives(data_dir, daemon.environment_id)
    assert isinstance(start, wire.StartSession)
    assert start.session_id == session["id"]
    assert start.prompt == prompt.strip()
    assert start.prompt_input_id is not None and start.prompt_input_id.startswith("in_")
    assert start.title == session["title"]
    assert start.spawn == "worktree"
    assert start.origin == "phone"


async def test_title_rules(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon, data_dir: Path
) -> None:
    explicit = await create_session(
        client, user, daemon.environment_id, prompt="do it", title="Mine"
    )
    assert explicit["title"] == "Mine"
    long = await create_session(client, user, daemon.environment_id, prompt="word " * 40)
    assert 70 <= len(long["title"]) <= 80 and long["title"].endswith("…")
    empty = await create_session(client, user, daemon.environment_id)
    assert empty["title"] is None
    assert empty["spawn"] == "same-dir"  # the environment's default
    start = queued_directives(data_dir, daemon.environment_id)[-1]
    assert isinstance(start, wire.StartSession)
    assert start.prompt is None and start.prompt_input_id is None and start.spawn is None


async def test_create_session_on_unknown_or_offline_environment(
    client: httpx.AsyncClient, storage: SqliteStorage, user: dict[str, str], data_dir: Path
) -> None:
    response = await client.post("/api/environments/env_nope/sessions", json={}, headers=user)
    assert_error(response, 404, "not_found")
    offline = await register(client, storage)
    response = await client.post(
        f"/api/environments/{offline.environment_id}/sessions", json={}, headers=user
    )
    body = assert_error(response, 409, "environment_offline")
    assert "laptop" in body["error"]["message"]
    assert count_rows(data_dir, "sessions") == 0
    assert queued_directives(data_dir, offline.environment_id) == []


async def test_concurrent_creates_never_exceed_capacity(
    client: httpx.AsyncClient, storage: SqliteStorage, user: dict[str, str], data_dir: Path
) -> None:
    d = await register(client, storage, capacity=3)
    await storage.open_downlink(d.environment_id, "link_test")
    responses: list[httpx.Response] = []

    async def create() -> None:
        responses.append(
            await client.post(
                f"/api/environments/{d.environment_id}/sessions",
                json={"prompt": "go"},
                headers=user,
            )
        )

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(create)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [409] * 17
    for r in responses:
        if r.status_code == 409:
            body = assert_error(r, 409, "at_capacity")
            assert body["error"]["message"] == (
                "environment 'laptop' is at capacity: 3 of 3 sessions running"
            )
    assert count_rows(data_dir, "sessions") == 3
    assert len(queued_directives(data_dir, d.environment_id)) == 3


async def test_ended_sessions_free_capacity(
    client: httpx.AsyncClient, storage: SqliteStorage, user: dict[str, str]
) -> None:
    d = await register(client, storage, capacity=1)
    await storage.open_downlink(d.environment_id, "link_test")
    first = await create_session(client, user, d.environment_id)
    response = await client.post(
        f"/api/environments/{d.environment_id}/sessions", json={}, headers=user
    )
    assert_error(response, 409, "at_capacity")
    ended = event(1, "session_ended", reason="stopped", worktree_kept=False, branch=None)
    assert (await uplink(client, d, first["id"], ended)).status_code == 200
    await create_session(client, user, d.environment_id)


# -- reading sessions -------------------------------------------------------------------------


async def test_list_get_rename(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon
) -> None:
    a = await create_session(client, user, daemon.environment_id, prompt="first")
    b = await create_session(client, user, daemon.environment_id, prompt="second")
    listed = (await client.get("/api/sessions", headers=user)).json()["sessions"]
    assert [s["id"] for s in listed] == [b["id"], a["id"]]

    response = await client.get(f"/api/sessions/{a['id']}", headers=user)
    assert response.status_code == 200 and response.json() == a

    renamed = await client.patch(
        f"/api/sessions/{a['id']}", json={"title": "  Better name "}, headers=user
    )
    assert renamed.status_code == 200
    assert renamed.json()["title"] == "Better name"
    assert renamed.json()["updated_at"] >= a["updated_at"]
    got = (await client.get(f"/api/sessions/{a['id']}", headers=user)).json()
    assert got["title"] == "Better name"

    assert_error(await client.get("/api/sessions/ses_nope", headers=user), 404, "not_found")
    response = await client.patch("/api/sessions/ses_nope", json={"title": "x"}, headers=user)
    assert_error(response, 404, "not_found")


async def test_events_page_with_after_and_limit(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    events = [started(1)] + [event(i, "assistant_text", text=f"t{i}") for i in range(2, 6)]
    assert (await uplink(client, daemon, s["id"], *events)).json() == {"acked": 5}

    url = f"/api/sessions/{s['id']}/events"
    all_events = (await client.get(url, headers=user)).json()["events"]
    assert all_events == events
    page = (await client.get(url, params={"after": 2, "limit": 2}, headers=user)).json()
    assert [e["seq"] for e in page["events"]] == [3, 4]
    for bad in ({"after": "-1"}, {"after": "x"}, {"limit": "0"}, {"limit": "1001"}):
        response = await client.get(url, params=bad, headers=user)
        assert_error(response, 400, "invalid_parameter")
    assert_error(await client.get("/api/sessions/nope/events", headers=user), 404, "not_found")


# -- inputs ---------------------------------------------------------------------------------


async def test_the_same_message_id_twice_is_one_message(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon, data_dir: Path
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    url = f"/api/sessions/{s['id']}/messages"
    for _ in range(2):
        response = await client.post(url, json={"id": "m-1", "text": "hello"}, headers=user)
        assert response.status_code == 202
        assert response.json() == {"id": "m-1"}
    await client.post(url, json={"id": "m-2", "text": "again"}, headers=user)

    messages = [
        d for d in queued_directives(data_dir, daemon.environment_id) if d.type == "message"
    ]
    assert messages == [
        wire.SendMessage(session_id=s["id"], input_id="m-1", text="hello", origin="phone"),
        wire.SendMessage(session_id=s["id"], input_id="m-2", text="again", origin="phone"),
    ]


async def test_the_same_message_id_on_two_sessions_is_two_messages(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon, data_dir: Path
) -> None:
    a = await create_session(client, user, daemon.environment_id)
    b = await create_session(client, user, daemon.environment_id)
    for s in (a, b):
        response = await client.post(
            f"/api/sessions/{s['id']}/messages", json={"id": "m-1", "text": "x"}, headers=user
        )
        assert response.status_code == 202
    directives = queued_directives(data_dir, daemon.environment_id)
    assert [d.type for d in directives].count("message") == 2


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"id": "m", "text": "t", "extra": 1}', "extra"),
        (b'{"id": "m", "text": 5}', "expected a string"),
        (b'{"id": "m"}', "text"),
        (b'{"id": "", "text": "t"}', "must not be empty"),
        (b'["id", "text"]', "expected a JSON object"),
    ],
)
async def test_bad_message_bodies_are_400_and_change_nothing(
    client: httpx.AsyncClient,
    user: dict[str, str],
    daemon: Daemon,
    data_dir: Path,
    raw: bytes,
    fragment: str,
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    before = queued_directives(data_dir, daemon.environment_id)
    response = await client.post(
        f"/api/sessions/{s['id']}/messages",
        content=raw,
        headers=user | {"content-type": "application/json"},
    )
    body = assert_error(response, 400, "invalid_body")
    assert fragment in body["error"]["message"]
    assert queued_directives(data_dir, daemon.environment_id) == before
    assert count_rows(data_dir, "message_inputs") == 0


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": 5},
        {"spawn": "elsewhere"},
        {"title": "x", "colour": "red"},
        {"prompt": None, "x": 1},
    ],
)
async def test_bad_create_bodies_store_nothing(
    client: httpx.AsyncClient,
    user: dict[str, str],
    daemon: Daemon,
    data_dir: Path,
    body: dict[str, Any],
) -> None:
    response = await client.post(
        f"/api/environments/{daemon.environment_id}/sessions", json=body, headers=user
    )
    assert_error(response, 400, "invalid_body")
    assert count_rows(data_dir, "sessions") == 0
    assert queued_directives(data_dir, daemon.environment_id) == []


async def test_oversize_message_is_413(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon, data_dir: Path
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    url = f"/api/sessions/{s['id']}/messages"
    huge = {"id": "big", "text": "x" * (wire.MAX_MESSAGE_BYTES + 100 * 1024)}
    assert_error(await client.post(url, json=huge, headers=user), 413, "body_too_large")
    # Within the body cap but over the message cap (multi-byte characters).
    wide = {"id": "wide", "text": "é" * (wire.MAX_MESSAGE_BYTES // 2 + 10)}
    assert_error(await client.post(url, json=wide, headers=user), 413, "message_too_large")
    exactly = {"id": "ok", "text": "x" * wire.MAX_MESSAGE_BYTES}
    assert (await client.post(url, json=exactly, headers=user)).status_code == 202
    messages = [
        d for d in queued_directives(data_dir, daemon.environment_id) if d.type == "message"
    ]
    assert [m.input_id for m in messages if isinstance(m, wire.SendMessage)] == ["ok"]


async def test_inputs_to_an_ended_session_are_refused(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon, data_dir: Path
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    ok = await client.post(
        f"/api/sessions/{s['id']}/messages", json={"id": "m-1", "text": "hi"}, headers=user
    )
    assert ok.status_code == 202
    ended = event(1, "session_ended", reason="done", worktree_kept=False, branch=None)
    await uplink(client, daemon, s["id"], ended)
    before = queued_directives(data_dir, daemon.environment_id)

    for path, body in [
        ("messages", {"id": "m-2", "text": "hi"}),
        ("interrupt", None),
        ("stop", None),
        ("permissions/r1", {"decision": "allow"}),
    ]:
        response = await client.post(f"/api/sessions/{s['id']}/{path}", json=body, headers=user)
        assert_error(response, 409, "session_ended")
    # A retry of a message accepted earlier still gets its 202, and nothing more is queued.
    retry = await client.post(
        f"/api/sessions/{s['id']}/messages", json={"id": "m-1", "text": "hi"}, headers=user
    )
    assert retry.status_code == 202
    assert queued_directives(data_dir, daemon.environment_id) == before


async def test_interrupt_and_stop(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon, data_dir: Path
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    for path in ("interrupt", "stop"):
        response = await client.post(f"/api/sessions/{s['id']}/{path}", headers=user)
        assert response.status_code == 202
        assert response.json() == {"session_id": s["id"]}
    directives = queued_directives(data_dir, daemon.environment_id)[1:]
    assert directives == [
        wire.Interrupt(session_id=s["id"], origin="phone"),
        wire.StopSession(session_id=s["id"], origin="phone"),
    ]
    assert_error(await client.post("/api/sessions/nope/stop", headers=user), 404, "not_found")


async def test_permission_decisions(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon, data_dir: Path
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    url = f"/api/sessions/{s['id']}/permissions/req-1"
    response = await client.post(url, json={"decision": "allow"}, headers=user)
    assert_error(response, 404, "unknown_permission_request")

    request = event(
        2, "permission_request", request_id="req-1", tool="Bash", input={}, description="ls"
    )
    await uplink(client, daemon, s["id"], started(1), request)
    response = await client.post(url, json={"decision": "deny", "message": "no"}, headers=user)
    assert response.status_code == 202
    assert response.json() == {"request_id": "req-1"}
    assert queued_directives(data_dir, daemon.environment_id)[-1] == wire.DecidePermission(
        session_id=s["id"], request_id="req-1", decision="deny", message="no", origin="phone"
    )
    bad = await client.post(url, json={"decision": "maybe"}, headers=user)
    assert_error(bad, 400, "invalid_body")

    resolved = event(3, "permission_resolved", request_id="req-1", decision="deny", origin="phone")
    await uplink(client, daemon, s["id"], resolved)
    response = await client.post(url, json={"decision": "allow"}, headers=user)
    assert_error(response, 409, "permission_already_resolved")


async def test_resume(
    client: httpx.AsyncClient, storage: SqliteStorage, user: dict[str, str], data_dir: Path
) -> None:
    d = await register(client, storage, capacity=1)
    await storage.open_downlink(d.environment_id, "link_test")
    s = await create_session(client, user, d.environment_id, prompt="go")
    url = f"/api/sessions/{s['id']}/resume"
    body = assert_error(await client.post(url, headers=user), 409, "not_resumable")
    assert "queued" in body["error"]["message"]

    ended = event(3, "session_ended", reason="stopped", worktree_kept=True, branch="rcd/x")
    await uplink(
        client,
        d,
        s["id"],
        started(1, spawn="worktree", branch="rcd/x", cwd="/w/x"),
        event(2, "status", state="busy"),
        ended,
    )
    # Another session now holds the only slot.
    other = await create_session(client, user, d.environment_id)
    assert_error(await client.post(url, headers=user), 409, "at_capacity")
    await client.post(f"/api/sessions/{other['id']}/stop", headers=user)
    other_end = event(1, "session_ended", reason="stopped", worktree_kept=False, branch=None)
    await uplink(client, d, other["id"], other_end)

    await storage.close_downlink(d.environment_id, "link_test")
    assert_error(await client.post(url, headers=user), 409, "environment_offline")
    await storage.open_downlink(d.environment_id, "link_test")

    response = await client.post(url, headers=user)
    assert response.status_code == 202
    assert response.json()["state"] == "queued"
    assert queued_directives(data_dir, d.environment_id)[-1] == wire.ResumeSession(
        session_id=s["id"],
        agent_session_id="agent-123",
        cwd="/w/x",
        spawn="worktree",
        branch="rcd/x",
        last_seq=3,
    )
    body = assert_error(await client.post(url, headers=user), 409, "not_resumable")


async def test_an_agent_without_session_id_is_not_resumable(
    client: httpx.AsyncClient, user: dict[str, str], daemon: Daemon
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    ended = event(2, "session_ended", reason="crashed", worktree_kept=False, branch=None)
    await uplink(client, daemon, s["id"], started(1, agent_session_id=None), ended)
    response = await client.post(f"/api/sessions/{s['id']}/resume", headers=user)
    body = assert_error(response, 409, "not_resumable")
    assert "no session id" in body["error"]["message"]


# -- errors from the router ---------------------------------------------------------------------


async def test_unknown_routes_and_methods_are_json(
    client: httpx.AsyncClient, user: dict[str, str]
) -> None:
    assert_error(await client.get("/api/nope", headers=user), 404, "not_found")
    assert_error(await client.get("/nope"), 404, "not_found")
    response = await client.delete("/api/sessions", headers=user)
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


async def test_a_bad_bearer_is_not_rescued_by_a_cookie(
    client: httpx.AsyncClient, storage: SqliteStorage, data_dir: Path
) -> None:
    link = await trio.to_thread.run_sync(
        lambda: admin.create_login_link(data_dir, public_url=PUBLIC_URL)
    )
    await client.get(link.removeprefix(PUBLIC_URL))
    response = await client.get("/api/sessions", headers={"authorization": "Bearer wrong"})
    assert_error(response, 401, "unauthenticated")
    other = await make_device_token(storage, "tablet")
    assert (await client.get("/api/sessions", headers=other)).status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("messages", b'{"id": 5}'),
        ("messages", b"not json"),
        ("permissions/req_1", b'{"decision": "maybe"}'),
    ],
)
async def test_an_input_without_a_valid_credential_is_401_whatever_its_body(
    client: httpx.AsyncClient,
    user: dict[str, str],
    daemon: Daemon,
    data_dir: Path,
    storage: SqliteStorage,
    path: str,
    body: bytes,
) -> None:
    """Inputs authenticate in the storage call that queues them; a body refused before that
    call is still refused only after the credential was checked (401 before 400)."""
    s = await create_session(client, user, daemon.environment_id)
    url = f"/api/sessions/{s['id']}/{path}"
    json_type = {"content-type": "application/json"}
    before = queued_directives(data_dir, daemon.environment_id)
    revoked = await make_device_token(storage, "revoked")
    assert await storage.revoke_device_token("revoked")
    for headers in ({}, {"authorization": "Bearer rcd_dev_unknown"}, revoked):
        response = await client.post(url, content=body, headers=headers | json_type)
        assert_error(response, 401, "unauthenticated")
    # An expired sign-in without the CSRF header: 401 (the cookie is what failed), not 403.
    client.cookies.set("rcd_session", "expired-or-never-issued")
    assert_error(await client.post(url, content=body, headers=json_type), 401, "unauthenticated")
    assert_error(await client.post(f"/api/sessions/{s['id']}/stop"), 401, "unauthenticated")
    client.cookies.clear()
    # With a valid token the same body is what is wrong.
    assert_error(
        await client.post(url, content=body, headers=user | json_type), 400, "invalid_body"
    )
    assert queued_directives(data_dir, daemon.environment_id) == before


async def test_inputs_carry_the_authenticated_client_as_origin(
    client: httpx.AsyncClient,
    user: dict[str, str],
    daemon: Daemon,
    data_dir: Path,
    storage: SqliteStorage,
) -> None:
    s = await create_session(client, user, daemon.environment_id)
    tablet = await make_device_token(storage, "tablet")
    url = f"/api/sessions/{s['id']}"
    assert (
        await client.post(f"{url}/messages", json={"id": "a", "text": "hi"}, headers=user)
    ).status_code == 202
    assert (await client.post(f"{url}/interrupt", headers=tablet)).status_code == 202
    assert (await client.post(f"{url}/stop", headers=tablet)).status_code == 202
    inputs = [
        (d.type, getattr(d, "origin", None))
        for d in queued_directives(data_dir, daemon.environment_id)
        if d.type != "start_session"
    ]
    assert inputs == [("message", "phone"), ("interrupt", "tablet"), ("stop_session", "tablet")]
