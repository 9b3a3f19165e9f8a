"""``/api/environments/{id}/grants`` at the relay, with the daemon's side played by hand:
what the relay carries to the daemon, what it answers while the daemon is silent, what it
refuses (naming what was wrong) before anything is queued."""

from __future__ import annotations

from typing import Any

import attrs
import httpx
import pytest
import trio

import wire
from relay import Hub, RelayConfig, SqliteStorage, create_app
from relay.fanout import settings_key
from testkit.asgi import ASGITransport

from .conftest import Daemon, create_session

VIEW = wire.SettingsView(
    env_names=[], spawn="same-dir", permission_mode="default", allowed_tools=[], sandbox=False,
    sandbox_allow_hosts=[], capacity=4, pinned=[], changes=[],
)  # fmt: skip


async def _queued(storage: SqliteStorage, daemon: Daemon) -> list[wire.UpdateSettings]:
    read = await storage.read_downlink(daemon.environment_id, "link_test", 0, 100)
    return [d.directive for d in read.directives if isinstance(d.directive, wire.UpdateSettings)]


async def _answer(storage: SqliteStorage, hub: Hub, daemon: Daemon, answer: Any) -> None:
    """Play the daemon: once the relay queued a directive, report ``answer(directive)``."""
    while not (queued := await _queued(storage, daemon)):
        await trio.sleep(0.01)  # clock: polling the relay's queue, as a downlink reads it
    await storage.save_settings(daemon.environment_id, answer(queued[-1]))
    hub.notify(settings_key(daemon.environment_id))


@pytest.fixture
async def keeping(storage: SqliteStorage, daemon: Daemon) -> Daemon:
    await storage.save_settings(daemon.environment_id, VIEW)
    await storage.save_features(daemon.environment_id, ["settings", "grants"])
    return daemon


async def test_a_grant_goes_to_the_daemon_and_comes_back_dated_by_it(
    client: httpx.AsyncClient,
    user: dict[str, str],
    storage: SqliteStorage,
    hub: Hub,
    keeping: Daemon,
) -> None:
    path = f"/api/environments/{keeping.environment_id}/grants"
    session = await create_session(client, user, keeping.environment_id, prompt="hi")

    def taken(directive: wire.UpdateSettings) -> wire.SettingsView:
        assert directive.grant is not None and directive.grant_id is not None
        assert directive.grant.session_id == session["id"]
        assert directive.origin == "phone"
        grant = wire.Grant(
            id=directive.grant_id, tools=directive.grant.tools, path="src", command=None,
            session_id=directive.grant.session_id, granted_at=100.0, expires_at=700.0, by="phone",
        )  # fmt: skip
        return attrs.evolve(VIEW, last_update=directive.id, grants=[grant])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_answer, storage, hub, keeping, taken)
        body = {"tools": ["Write"], "path": "src/", "minutes": 10, "session_id": session["id"]}
        made = await client.post(path, json=body, headers=user)
    assert made.status_code == 201, made.text
    assert made.json()["expires_at"] == 700.0 and made.json()["session_id"] == session["id"]
    listed = await client.get(path, headers=user)
    assert listed.json() == {"grants": [made.json()]}


async def test_a_refusal_and_a_silent_daemon_are_said(
    client: httpx.AsyncClient,
    user: dict[str, str],
    storage: SqliteStorage,
    hub: Hub,
    config: RelayConfig,
    keeping: Daemon,
) -> None:
    path = f"/api/environments/{keeping.environment_id}/grants"

    def refused(directive: wire.UpdateSettings) -> wire.SettingsView:
        return attrs.evolve(VIEW, last_update=directive.id, last_refusal="100 grants in force")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_answer, storage, hub, keeping, refused)
        answer = await client.post(path, json={"tools": ["Write"], "minutes": 1}, headers=user)
    assert answer.status_code == 409
    assert answer.json()["error"] == {"code": "grant_refused", "message": "100 grants in force"}

    # A daemon that does not answer in time: 202 with the id the grant will have.
    app = create_app(storage, hub, attrs.evolve(config, settings_wait=0))
    transport = ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url=client.base_url) as hurried:
        queued = await hurried.post(path, json={"tools": ["Write"], "minutes": 1}, headers=user)
    assert queued.status_code == 202
    assert queued.json()["id"] == (await _queued(storage, keeping))[-1].grant_id


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"tools": [], "minutes": 5}, "tools"),
        ({"tools": ["Write; rm"], "minutes": 5}, "not a tool name"),
        ({"tools": ["Write"], "minutes": 0}, "minutes"),
        ({"tools": ["Write"], "minutes": 100_000}, "minutes"),
        ({"tools": ["Write"], "minutes": 5, "path": "/etc"}, "relative"),
        ({"tools": ["Write"], "minutes": 5, "path": "src/../../x"}, "leads out"),
        ({"tools": ["Write"], "minutes": 5, "path": "~/.ssh"}, "relative"),
        ({"tools": ["Bash"], "minutes": 5, "command": "  "}, "command"),
        ({"tools": ["Bash"], "minutes": 5, "command": "ls\nrm -rf /"}, "command"),
        ({"tools": ["Write"], "minutes": 5, "for": "ever"}, "for"),
    ],
)
async def test_bad_grants_are_refused_naming_what_was_wrong(
    client: httpx.AsyncClient,
    user: dict[str, str],
    storage: SqliteStorage,
    keeping: Daemon,
    body: dict[str, Any],
    says: str,
) -> None:
    answer = await client.post(
        f"/api/environments/{keeping.environment_id}/grants", json=body, headers=user
    )
    assert answer.status_code == 400, answer.text
    assert says in answer.text
    assert await _queued(storage, keeping) == []  # nothing went to the daemon


async def test_sessions_grants_and_daemons_that_do_not_fit_are_refused(
    client: httpx.AsyncClient,
    user: dict[str, str],
    storage: SqliteStorage,
    hub: Hub,
    keeping: Daemon,
) -> None:
    path = f"/api/environments/{keeping.environment_id}/grants"
    grant = {"tools": ["Write"], "minutes": 5}
    unknown = await client.post(path, json=grant | {"session_id": "ses_nope"}, headers=user)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_session"

    # One the relay's list does not name still goes to the daemon (which may hold it
    # unreported); its refusal is a 404.
    def none_such(directive: wire.UpdateSettings) -> wire.SettingsView:
        assert directive.revoke_grant == "grt_nope"
        why = "no grant grt_nope in force: it ended, or was revoked"
        return attrs.evolve(VIEW, last_update=directive.id, last_refusal=why)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_answer, storage, hub, keeping, none_such)
        gone = await client.delete(f"{path}/grt_nope", headers=user)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_grant"
    assert "it ended, or was revoked" in gone.json()["error"]["message"]
    before = len(await _queued(storage, keeping))
    odd = await client.delete(f"{path}/..%2Fsettings", headers=user)
    assert odd.status_code == 404
    assert (await client.get(path)).status_code == 401  # not signed in
    await storage.save_features(keeping.environment_id, ["settings"])
    old = await client.post(path, json=grant, headers=user)
    assert old.status_code == 409 and old.json()["error"]["code"] == "grants_unsupported"
    assert len(await _queued(storage, keeping)) == before  # nothing more went
