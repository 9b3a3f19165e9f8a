"""Browser sign-ins: each is listed with what a person recognises, and revoking one (from
the web app's API or with ``rcd relay sign-ins revoke``) ends it at once, its open event
streams within about a second, whatever the keep-alive interval."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
import trio

from relay import Hub, RelayConfig, RunningRelay, SqliteStorage, admin, create_app, serve_relay
from relay.errors import AdminError
from relay.sqlite import SqliteConnection, clients, database_path
from relay.useragent import describe_user_agent
from testkit.asgi import ASGITransport
from testkit.harness import REPO
from testkit.sse import sse

from .conftest import GUARD, PUBLIC_URL, create_session, register, started, uplink
from .test_client_api import assert_error

PHONE_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0.0.0 Mobile Safari/537.36"
)
LAPTOP_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
WEB = {"X-Requested-With": "rcd"}


async def sign_in(http: httpx.AsyncClient, data_dir: Path, user_agent: str) -> str:
    """Open a fresh one-time link as a browser with ``user_agent``; returns its cookie."""
    link = await trio.to_thread.run_sync(
        lambda: admin.create_login_link(data_dir, public_url=PUBLIC_URL)
    )
    http.cookies.clear()
    response = await http.get(link.removeprefix(PUBLIC_URL), headers={"user-agent": user_agent})
    assert response.status_code == 303, response.text
    cookie = response.cookies["rcd_session"]
    http.cookies.clear()
    return cookie


def browser(cookie: str, csrf: bool = True) -> dict[str, str]:
    return {"cookie": f"rcd_session={cookie}"} | (WEB if csrf else {})


async def test_sign_ins_are_listed_with_browser_address_and_times(
    client: httpx.AsyncClient, data_dir: Path, user: dict[str, str]
) -> None:
    phone = await sign_in(client, data_dir, PHONE_UA)
    laptop = await sign_in(client, data_dir, LAPTOP_UA)
    assert (await client.get("/api/sessions", headers=browser(laptop))).status_code == 200

    response = await client.get("/api/sign-ins", headers=browser(phone))
    assert response.status_code == 200
    listed = response.json()["sign_ins"]
    by_name = {s["name"]: s for s in listed}
    assert set(by_name) == {"Chrome on Android", "Firefox on Linux"}
    mine = by_name["Chrome on Android"]
    assert mine["current"] is True and by_name["Firefox on Linux"]["current"] is False
    assert mine["user_agent"] == PHONE_UA
    assert mine["address"] == "127.0.0.1"  # httpx's ASGITransport calls from there
    assert mine["id"].startswith("signin_")
    assert mine["created_at"] <= mine["last_used_at"] < mine["expires_at"]
    assert mine["expires_at"] - mine["created_at"] == pytest.approx(30 * 24 * 3600)
    # A device token sees them all, none of them its own.
    by_token = (await client.get("/api/sign-ins", headers=user)).json()["sign_ins"]
    assert {s["id"] for s in by_token} == {s["id"] for s in listed}
    assert not any(s["current"] for s in by_token)
    # The admin command lists the same, with the same names.
    records = await trio.to_thread.run_sync(admin.list_sign_ins, data_dir)
    assert {(r.id, r.name, r.address) for r in records} == {
        (s["id"], s["name"], s["address"]) for s in listed
    }


async def test_revoking_a_sign_in_from_another_browser_ends_it_at_once(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    phone = await sign_in(client, data_dir, PHONE_UA)
    laptop = await sign_in(client, data_dir, LAPTOP_UA)
    listed = (await client.get("/api/sign-ins", headers=browser(laptop))).json()["sign_ins"]
    (phone_id,) = [s["id"] for s in listed if s["name"] == "Chrome on Android"]
    (laptop_id,) = [s["id"] for s in listed if s["current"]]

    # A forged cross-site request (the cookie, not the header) changes nothing.
    forged = await client.delete(f"/api/sign-ins/{phone_id}", headers=browser(laptop, False))
    assert_error(forged, 403, "csrf")
    assert (await client.get("/api/sessions", headers=browser(phone))).status_code == 200

    response = await client.delete(f"/api/sign-ins/{phone_id}", headers=browser(laptop))
    assert response.status_code == 204
    assert "set-cookie" not in response.headers  # the laptop keeps its own cookie
    assert_error(await client.get("/api/sessions", headers=browser(phone)), 401, "unauthenticated")
    assert_error(
        await client.delete(f"/api/sign-ins/{phone_id}", headers=browser(laptop)), 404, "not_found"
    )
    listed = (await client.get("/api/sign-ins", headers=browser(laptop))).json()["sign_ins"]
    assert [s["id"] for s in listed] == [laptop_id]

    # Signing itself out this way also clears the browser's cookie.
    response = await client.delete(f"/api/sign-ins/{laptop_id}", headers=browser(laptop))
    assert response.status_code == 204
    assert response.headers["set-cookie"].startswith('rcd_session=""')
    assert_error(await client.get("/api/sign-ins", headers=browser(laptop)), 401, "unauthenticated")


# -- open streams -------------------------------------------------------------------------


@pytest.fixture
async def slow_keepalive_relay(data_dir: Path) -> AsyncIterator[RunningRelay]:
    """A real relay whose keep-alive is the default 15 s: a stream that ends promptly after a
    revocation did not wait for a keep-alive to notice it."""
    config = RelayConfig(data_dir=data_dir, port=0, public_url=PUBLIC_URL, keepalive_interval=15)
    async with trio.open_nursery() as nursery:
        running: RunningRelay = await nursery.start(serve_relay, config)
        yield running
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("revoked_by", ["api", "admin", "admin --all"])
async def test_revoking_a_sign_in_ends_its_open_streams_within_a_second(
    slow_keepalive_relay: RunningRelay, data_dir: Path, revoked_by: str
) -> None:
    relay = slow_keepalive_relay
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{relay.port}", timeout=GUARD) as http:
        d = await register(http, relay.storage)
        await relay.storage.open_downlink(d.environment_id, "link_test")
        phone = await sign_in(http, data_dir, PHONE_UA)
        laptop = await sign_in(http, data_dir, LAPTOP_UA)
        s = await create_session(http, browser(phone), d.environment_id)
        (phone_id,) = [r.id for r in await relay.storage.list_sign_ins() if "Android" in r.name]
        with trio.fail_after(GUARD):
            async with (
                sse(http, f"/api/sessions/{s['id']}/events", browser(phone)) as (_, phone_events),
                sse(http, f"/api/sessions/{s['id']}/events", browser(laptop)) as (_, laptop_events),
            ):
                await uplink(http, d, s["id"], started(1))
                assert (await phone_events.next()).id == "1"
                assert (await laptop_events.next()).id == "1"
                if revoked_by == "api":
                    response = await http.delete(
                        f"/api/sign-ins/{phone_id}", headers=browser(laptop)
                    )
                    assert response.status_code == 204
                elif revoked_by == "admin":
                    await trio.to_thread.run_sync(admin.revoke_sign_in, data_dir, phone_id)
                else:
                    assert await trio.to_thread.run_sync(admin.revoke_all_sign_ins, data_dir) == 2
                revoked_at = trio.current_time()
                with trio.fail_after(2.0):
                    await phone_events.expect_end()
                assert trio.current_time() - revoked_at < 1.6
                if revoked_by == "admin --all":
                    with trio.fail_after(2.0):
                        await laptop_events.expect_end()
                else:
                    # The other browser's stream goes on.
                    await uplink(http, d, s["id"], started(2))
                    assert (await laptop_events.next()).id == "2"
        status = (await http.get("/api/sessions", headers=browser(phone))).status_code
        assert status == 401


# -- the admin commands -------------------------------------------------------------------


async def test_admin_revokes_by_id_by_unambiguous_name_or_all(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    phone = await sign_in(client, data_dir, PHONE_UA)
    laptop = await sign_in(client, data_dir, LAPTOP_UA)
    laptop_2 = await sign_in(client, data_dir, LAPTOP_UA)

    def revoke(which: str) -> list[str]:
        return [r.name for r in admin.revoke_sign_in(data_dir, which)]

    with pytest.raises(AdminError, match="2 sign-ins are 'Firefox on Linux': use an id"):
        await trio.to_thread.run_sync(revoke, "Firefox on Linux")
    with pytest.raises(AdminError, match="no sign-in 'signin_nope'"):
        await trio.to_thread.run_sync(revoke, "signin_nope")
    assert await trio.to_thread.run_sync(revoke, "chrome on android") == ["Chrome on Android"]
    assert (await client.get("/api/sessions", headers=browser(phone))).status_code == 401
    assert (await client.get("/api/sessions", headers=browser(laptop))).status_code == 200
    records = await trio.to_thread.run_sync(admin.list_sign_ins, data_dir)
    assert len(records) == 2
    assert await trio.to_thread.run_sync(revoke, records[0].id) == ["Firefox on Linux"]
    assert await trio.to_thread.run_sync(admin.revoke_all_sign_ins, data_dir) == 1
    assert await trio.to_thread.run_sync(admin.list_sign_ins, data_dir) == []
    for cookie in (laptop, laptop_2):
        assert (await client.get("/api/sessions", headers=browser(cookie))).status_code == 401
    assert await trio.to_thread.run_sync(admin.revoke_all_sign_ins, data_dir) == 0


def test_the_cli_lists_and_revokes_sign_ins(data_dir: Path) -> None:
    def rcd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "daemon",
                "relay",
                "sign-ins",
                *args,
                "--data-dir",
                str(data_dir),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    empty = rcd("list")
    assert empty.returncode == 0, empty.stderr
    assert "no browser is signed in" in empty.stdout
    with closing(SqliteConnection(database_path(data_dir))) as db:
        clients.add_login_code(db, "code-hash", 60)
        assert clients.redeem_login_code(
            db, "code-hash", "cookie-hash", 3600, user_agent=PHONE_UA, address="203.0.113.7"
        )
        (record,) = clients.list_sign_ins(db)
    listed = rcd("list")
    assert listed.returncode == 0, listed.stderr
    assert record.id in listed.stdout
    assert "Chrome on Android" in listed.stdout and "203.0.113.7" in listed.stdout
    usage = rcd("revoke")
    assert usage.returncode == 2
    assert "NAME, an ID or --all" in usage.stderr
    unknown = rcd("revoke", "nokia")
    assert unknown.returncode == 1
    assert "no sign-in 'nokia'" in unknown.stderr
    revoked = rcd("revoke", record.id)
    assert revoked.returncode == 0, revoked.stderr
    assert "signed out 1 browser" in revoked.stdout
    assert "no browser is signed in" in rcd("list").stdout


# -- storage ------------------------------------------------------------------------------


def test_a_version_1_database_is_upgraded_and_its_sign_ins_can_be_revoked(
    data_dir: Path,
) -> None:
    data_dir.mkdir()
    with closing(sqlite3.connect(database_path(data_dir))) as old:
        old.executescript(
            """
            CREATE TABLE web_sessions (session_hash TEXT PRIMARY KEY, created_at REAL NOT NULL,
                                       expires_at REAL NOT NULL);
            CREATE TABLE environments (id TEXT PRIMARY KEY, credential_id TEXT NOT NULL,
                name TEXT NOT NULL, machine TEXT NOT NULL, directory TEXT NOT NULL,
                spawn TEXT NOT NULL, capacity INTEGER NOT NULL, agent TEXT NOT NULL,
                link_id TEXT, last_dseq INTEGER NOT NULL DEFAULT 0,
                acked_dseq INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
                updated_at REAL NOT NULL, UNIQUE (credential_id, machine, directory, name));
            INSERT INTO web_sessions VALUES ('old-cookie-hash', 1.0, 9e12);
            INSERT INTO environments (id, credential_id, name, machine, directory, spawn,
                capacity, agent, created_at, updated_at)
                VALUES ('env_1', 'cred_1', 'laptop', 'mid', '/d', 'same-dir', 1, 'claude', 1, 1);
            PRAGMA user_version = 1;
            """
        )
    (record,) = admin.list_sign_ins(data_dir)
    assert record.id.startswith("signin_")
    assert (record.user_agent, record.address, record.last_used_at) == (None, None, None)
    assert record.name == "unknown browser"
    (env,) = admin.list_environments(data_dir)
    assert (env.machine, env.hostname, env.machine_name) == ("mid", None, "mid")
    assert [r.id for r in admin.revoke_sign_in(data_dir, record.id)] == [record.id]


def test_user_agents_in_words() -> None:
    assert describe_user_agent(PHONE_UA) == "Chrome on Android"
    assert describe_user_agent(LAPTOP_UA) == "Firefox on Linux"
    iphone = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
        " (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
    )
    assert describe_user_agent(iphone) == "Safari on iPhone"
    edge = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0"
    )
    assert describe_user_agent(edge) == "Edge on Windows"
    assert describe_user_agent(None) == "unknown browser"
    assert describe_user_agent("curl/8.5.0") == "curl"


async def test_the_app_without_sign_ins_lists_none(
    storage: SqliteStorage, hub: Hub, config: RelayConfig, user: dict[str, str]
) -> None:
    app = create_app(storage, hub, config)
    async with httpx.AsyncClient(transport=ASGITransport(app), base_url=PUBLIC_URL) as c:
        response = await c.get("/api/sign-ins", headers=user)
    assert response.json() == {"sign_ins": []}
