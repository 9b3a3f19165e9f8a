from __future__ import annotations

from pathlib import Path

import httpx
import trio

from relay import admin

from .conftest import PUBLIC_URL, Daemon, create_session, queued_directives
from .test_client_api import assert_error


async def test_login_link_sets_a_strict_cookie_once(
    client: httpx.AsyncClient, data_dir: Path, daemon: Daemon
) -> None:
    link = await trio.to_thread.run_sync(
        lambda: admin.create_login_link(data_dir, public_url=PUBLIC_URL)
    )
    path = link.removeprefix(PUBLIC_URL)
    response = await client.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("rcd_session=")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert "secure" not in attributes  # plain HTTP relay

    # The cookie authenticates the client API, as the client "web".
    assert (await client.get("/api/sessions")).status_code == 200
    web = {"X-Requested-With": "rcd"}  # what the web app sends on every call
    s = await create_session(client, web, daemon.environment_id, prompt="from the browser")
    r = await client.post(
        f"/api/sessions/{s['id']}/messages", json={"id": "w1", "text": "hi"}, headers=web
    )
    assert r.status_code == 202
    # A write by cookie without the header (what a forged cross-site form sends) is refused,
    # and changes nothing.
    before = queued_directives(data_dir, daemon.environment_id)
    forged = await client.post(
        f"/api/sessions/{s['id']}/messages", json={"id": "w2", "text": "rm -rf"}
    )
    assert_error(forged, 403, "csrf")
    assert_error(await client.post(f"/api/sessions/{s['id']}/stop"), 403, "csrf")
    assert queued_directives(data_dir, daemon.environment_id) == before
    origins = {
        getattr(d, "origin", None) for d in queued_directives(data_dir, daemon.environment_id)
    }
    assert origins == {"web"}

    # The link works once.
    client.cookies.clear()
    assert_error(await client.get(path), 401, "invalid_login_code")
    assert_error(await client.get("/login?code=nope"), 401, "invalid_login_code")
    assert_error(await client.get("/login"), 401, "invalid_login_code")


async def test_logout_ends_the_cookie_session(client: httpx.AsyncClient, data_dir: Path) -> None:
    link = await trio.to_thread.run_sync(
        lambda: admin.create_login_link(data_dir, public_url=PUBLIC_URL)
    )
    await client.get(link.removeprefix(PUBLIC_URL))
    session_cookie = client.cookies["rcd_session"]
    assert (await client.get("/api/environments")).status_code == 200
    # Like every write signed by the cookie, a sign-out needs the CSRF header: a page on
    # another site cannot sign the browser out (403, and the sign-in stands).
    assert_error(await client.post("/logout"), 403, "csrf")
    assert (await client.get("/api/environments")).status_code == 200
    response = await client.post("/logout", headers={"X-Requested-With": "rcd"})
    assert response.status_code == 204
    assert "rcd_session=" in response.headers["set-cookie"]
    # Even a client that keeps the old cookie is out.
    client.cookies.set("rcd_session", session_cookie)
    assert_error(await client.get("/api/environments"), 401, "unauthenticated")


async def test_web_page_is_served_at_root_and_session_urls(client: httpx.AsyncClient) -> None:
    for path in ("/", "/s/ses_123"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "<title>rcd</title>" in response.text
        assert "running" in response.text
        assert response.headers["x-content-type-options"] == "nosniff"
