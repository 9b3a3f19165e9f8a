"""Every route by every kind of credential: the status each cell must get.

The routes are read from the app itself: the client API from ``/api/openapi.json`` (which a
test in ``test_openapi.py`` keeps equal to the app's client routes) and the daemon API from
the app's ``/daemon/v1`` routes, so a new route without a row here fails this test.

Credentials, per route: none; expired (an expired cookie sign-in for client routes, an
access token past its lifetime for daemon routes); revoked (a revoked device token, or the
daemon's revoked environment credential and the tokens it minted); every credential of
the wrong scope (device token, environment credential, link token, session token, and the
same kind of token for another environment or session); and the right one.

Each cell runs against a fresh relay (SQLite on disk): one environment online with a
running session ``A`` (waiting on a permission), an ended session ``B``, and a second
environment of another machine with its own session.

(Over 400 lines on purpose: one table of every route by every credential, and the
requests that fill it.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from starlette.routing import Route
from starlette.types import Message

import wire
from relay import Hub, RelayConfig, SqliteStorage, create_app
from relay.auth import hash_secret
from relay.openapi import openapi_document
from relay.records import ClientPrincipal
from relay.tokens import TokenIssuer
from testkit.asgi import ASGITransport

from .conftest import (
    PUBLIC_URL,
    Daemon,
    create_session,
    event,
    make_device_token,
    mint_token,
    register,
    register_body,
    started,
    uplink,
)

TTL = 60.0


@attrs.define
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@attrs.frozen
class World:
    client: httpx.AsyncClient
    app: Any
    storage: SqliteStorage
    daemon: Daemon
    other: Daemon
    session_a: str
    session_b: str
    other_session: str
    #: Credentials by name (see ``KINDS``), as request headers.
    headers: dict[str, dict[str, str]]
    pair_code: str
    login_code: str
    #: Another browser's sign-in (what ``DELETE /api/sign-ins/{sign_in_id}`` ends).
    sign_in_id: str


@asynccontextmanager
async def world(data_dir: Path) -> AsyncIterator[World]:
    clock = Clock()
    async with SqliteStorage.in_data_dir(data_dir) as storage:
        # No daemon answers a settings change here: it is queued (202) at once.
        config = RelayConfig(data_dir=data_dir, port=0, public_url=PUBLIC_URL, settings_wait=0)
        app = create_app(storage, Hub(), config, tokens=TokenIssuer(ttl=TTL, clock=clock))
        transport = ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            user = await make_device_token(storage)
            revoked_device = await make_device_token(storage, "old-phone")
            assert await storage.revoke_device_token("old-phone")
            await storage.add_login_code(hash_secret("expired-login"), 60)
            assert await storage.redeem_login_code(
                hash_secret("expired-login"), hash_secret("expired-cookie"), -1
            )
            await storage.add_login_code(hash_secret("good-login"), 60)
            await storage.add_pair_code(hash_secret("GOODPAIR"), 60)

            daemon = await register(client, storage)
            other = await register(client, storage, machine="m2")
            for d in (daemon, other):
                await storage.open_downlink(d.environment_id, f"link_{d.environment_id}")
                await storage.save_settings(d.environment_id, SETTINGS)
                await storage.save_features(d.environment_id, ["settings"])
            a = (await create_session(client, user, daemon.environment_id, prompt="a"))["id"]
            b = (await create_session(client, user, daemon.environment_id, prompt="b"))["id"]
            o = (await create_session(client, user, other.environment_id, prompt="o"))["id"]
            permission = event(
                2, "permission_request", request_id="req-1", tool="Bash", input={}, description="ls"
            )
            ended = event(2, "session_ended", reason="done", worktree_kept=False, branch=None)
            for sid, events in ((a, [started(), permission]), (b, [started(), ended])):
                assert (await uplink(client, daemon, sid, *events)).status_code == 200
            assert (await uplink(client, other, o, started())).status_code == 200

            # Tokens minted now expire when the clock moves on; fresh ones are minted after.
            expired_link = daemon.headers
            expired_session = await daemon.session_headers(client, a)
            clock.now += TTL + 1
            cred = daemon.credential

            async def token(d: Daemon, session_id: str | None = None) -> dict[str, str]:
                value = await mint_token(client, d.credential, d.environment_id, session_id)
                return {"authorization": f"Bearer {value}"}

            headers = {
                "none": {},
                "device": user,
                "cookie": {"cookie": "rcd_session=good", "x-requested-with": "rcd"},
                "expired cookie": {"cookie": "rcd_session=expired-cookie"},
                "revoked device": revoked_device,
                "credential": daemon.credential_headers,
                "link": await token(daemon),
                "session": await token(daemon, a),
                "session B": await token(daemon, b),
                "other credential": other.credential_headers,
                "other link": await token(other),
                "other session": await token(other, o),
                "expired link": expired_link,
                "expired session": expired_session,
                # Minted before revocation (which some cells do): see ``revoke``.
                "revoked credential": {"authorization": f"Bearer {cred}"},
            }
            # A real signed-in browser for the "cookie" credential.
            await storage.add_login_code(hash_secret("cookie-login"), 60)
            assert await storage.redeem_login_code(
                hash_secret("cookie-login"), hash_secret("good"), 3600
            )
            await storage.add_login_code(hash_secret("laptop-login"), 60)
            assert await storage.redeem_login_code(
                hash_secret("laptop-login"), hash_secret("laptop-cookie"), 3600
            )
            (laptop,) = [
                s
                for s in await storage.list_sign_ins()
                if s.session_hash == hash_secret("laptop-cookie")
            ]
            yield World(
                client=client,
                app=app,
                storage=storage,
                daemon=daemon,
                other=other,
                session_a=a,
                session_b=b,
                other_session=o,
                headers=headers,
                pair_code="GOODPAIR",
                login_code="good-login",
                sign_in_id=laptop.id,
            )


# -- the routes --------------------------------------------------------------------------


@attrs.frozen
class Row:
    """One route: its credential scope, how to call it and what the right credential gets."""

    scope: str  # "public", "client", "pair", "credential", "link", "session"
    ok: int
    body: Callable[[World], Any] = lambda w: None
    #: The session a ``{session_id}`` means here.
    session: str = "a"
    #: The route names an environment or session (so another one's credential is wrong).
    targeted: bool = True


SETTINGS = wire.SettingsView(
    env_names=[], spawn="same-dir", permission_mode="default", allowed_tools=[], sandbox=False,
    sandbox_allow_hosts=[], capacity=4, pinned=[], changes=[],
)  # fmt: skip

CLIENT_ROWS: dict[tuple[str, str], Row] = {
    ("GET", "/login"): Row("public", 303),
    ("POST", "/logout"): Row("public", 204),
    ("GET", "/api/openapi.json"): Row("public", 200),
    ("GET", "/api/environments"): Row("client", 200),
    ("POST", "/api/environments/{environment_id}/sessions"): Row(
        "client", 201, lambda w: {"prompt": "hi"}
    ),
    ("GET", "/api/sessions"): Row("client", 200),
    ("GET", "/api/sessions/{session_id}"): Row("client", 200),
    ("PATCH", "/api/sessions/{session_id}"): Row("client", 200, lambda w: {"title": "x"}),
    ("GET", "/api/sessions/{session_id}/events"): Row("client", 200),
    ("POST", "/api/sessions/{session_id}/messages"): Row(
        "client", 202, lambda w: {"id": "in_1", "text": "hi"}
    ),
    ("POST", "/api/sessions/{session_id}/permissions/{request_id}"): Row(
        "client", 202, lambda w: {"decision": "allow"}
    ),
    ("POST", "/api/sessions/{session_id}/interrupt"): Row("client", 202),
    ("POST", "/api/sessions/{session_id}/stop"): Row("client", 202),
    ("POST", "/api/sessions/{session_id}/resume"): Row("client", 202, session="b"),
    ("GET", "/api/sign-ins"): Row("client", 200),
    ("GET", "/api/environments/{environment_id}/settings"): Row("client", 200),
    ("PUT", "/api/environments/{environment_id}/settings"): Row(
        "client", 202, lambda w: {"env": {"A": "b"}}
    ),
    ("DELETE", "/api/sign-ins/{sign_in_id}"): Row("client", 204),
    ("GET", "/api/environments/{environment_id}/grants"): Row("client", 200),
    # No daemon here keeps grants: past the credential, 409 grants_unsupported.
    ("POST", "/api/environments/{environment_id}/grants"): Row(
        "client", 409, lambda w: {"tools": ["Write"], "minutes": 5}
    ),
    # Past the credential, the same: a revoke goes to the daemon, and none here keeps grants.
    ("DELETE", "/api/environments/{environment_id}/grants/{grant_id}"): Row("client", 409),
    ("GET", "/api/push/key"): Row("client", 200),
    ("GET", "/api/push/subscriptions"): Row("client", 200),
    ("POST", "/api/push/subscriptions"): Row("client", 201, lambda w: SUBSCRIPTION),
    # The subscription asked about is the asking device's own (see ``test_cell``).
    ("PUT", "/api/push/subscriptions/{subscription_id}/settings"): Row(
        "client", 200, lambda w: {"permission": False}
    ),
    ("DELETE", "/api/push/subscriptions/{subscription_id}"): Row("client", 204),
    # No daemon here says it shows changes: past the credential, 409 changes_unsupported.
    ("GET", "/api/sessions/{session_id}/changes"): Row("client", 409),
    ("POST", "/api/sessions/{session_id}/changes/{action}"): Row(
        "client", 409, lambda w: {"message": "x"}
    ),
    ("GET", "/api/environments/{environment_id}/worktrees"): Row("client", 409),
    ("GET", "/api/environments/{environment_id}/worktrees/{slug}/changes"): Row("client", 409),
    ("POST", "/api/environments/{environment_id}/worktrees/{slug}/changes/{action}"): Row(
        "client", 409, lambda w: {"message": "x"}
    ),
}

#: A browser's ``PushSubscription.toJSON()`` (its key a real P-256 point's shape).
SUBSCRIPTION: dict[str, Any] = {
    "endpoint": "https://push.example/sub/1",
    "keys": {"p256dh": "B" + "A" * 85 + "Q", "auth": "A" * 21 + "g"},
}

DAEMON_ROWS: dict[tuple[str, str], Row] = {
    ("POST", "/daemon/v1/pair"): Row("pair", 200, lambda w: {"code": w.pair_code, "machine": "m9"}),
    ("POST", "/daemon/v1/register"): Row(
        "credential",
        200,
        lambda w: register_body(),
        # Any machine's credential registers its own environment.
        targeted=False,
    ),
    ("POST", "/daemon/v1/environments/{environment_id}/tokens"): Row(
        "credential", 200, lambda w: {"session_id": w.session_a}
    ),
    ("GET", "/daemon/v1/environments/{environment_id}/downlink"): Row("link", 200),
    ("POST", "/daemon/v1/environments/{environment_id}/ack"): Row(
        "link", 204, lambda w: {"through": 1}
    ),
    ("POST", "/daemon/v1/environments/{environment_id}/goodbye"): Row("link", 204),
    ("POST", "/daemon/v1/environments/{environment_id}/answers"): Row(
        "link", 204, lambda w: {"id": "ws_nobody_asked", "landed": None}
    ),
    ("POST", "/daemon/v1/environments/{environment_id}/settings"): Row(
        "link", 204, lambda w: wire.encode(SETTINGS)
    ),
    # The request takes the link token; each session's part its own token (checked per
    # part: tests/relay/test_daemon_api.py).
    ("POST", "/daemon/v1/environments/{environment_id}/uplink"): Row(
        "link",
        200,
        lambda w: {
            "sessions": [
                {
                    "session_id": w.session_a,
                    "token": w.headers["session"]["authorization"].removeprefix("Bearer "),
                    "events": [event(3, "assistant_text", text="hi")],
                }
            ]
        },
    ),
    ("POST", "/daemon/v1/sessions/{session_id}/events"): Row(
        "session", 200, lambda w: {"events": [event(3, "assistant_text", text="hi")]}
    ),
}

# -- the credentials and the table -------------------------------------------------------

KINDS = [
    "none",
    "expired",
    "revoked",
    "device",
    "cookie",
    "credential",
    "link",
    "session",
    "other",
    "right",
]

WRONG = (403, "wrong_scope")
NONE = (401, "unauthenticated")
EXPIRED_TOKEN = (401, "token_expired")
REVOKED = (401, "credential_revoked")


def expected(row: Row, kind: str) -> tuple[str, tuple[int, str | None]] | None:
    """(credential to send, (status, error code or None)) for one cell; None if the cell
    does not apply (public routes take no credential; pairing takes a code, not a header)."""
    ok = (row.ok, None)
    if row.scope == "public":
        return ("none", ok) if kind == "right" else None
    if row.scope == "pair":
        return {"right": ("none", ok)}.get(kind)
    if row.scope == "client":
        return {
            "none": ("none", NONE),
            "expired": ("expired cookie", (401, "unauthenticated")),
            "revoked": ("revoked device", NONE),
            "device": ("device", ok),
            "cookie": ("cookie", ok),
            "credential": ("credential", WRONG),
            "link": ("link", WRONG),
            "session": ("session", WRONG),
            "other": ("other link", WRONG),
            "right": ("device", ok),
        }[kind]
    table: dict[str, dict[str, tuple[str, tuple[int, str | None]]]] = {
        "credential": {
            "none": ("none", NONE),
            # An environment credential never expires; an expired token is not one.
            "expired": ("expired link", WRONG),
            "revoked": ("revoked credential", REVOKED),
            "device": ("device", WRONG),
            "cookie": ("cookie", NONE),
            "link": ("link", WRONG),
            "session": ("session", WRONG),
            # Another machine's credential does not see this environment at all.
            "other": ("other credential", (404, "not_found")),
            "right": ("credential", ok),
        },
        "link": {
            "none": ("none", NONE),
            "expired": ("expired link", EXPIRED_TOKEN),
            "revoked": ("link", REVOKED),
            "device": ("device", WRONG),
            "cookie": ("cookie", NONE),
            "credential": ("credential", WRONG),
            "session": ("session", WRONG),
            "other": ("other link", WRONG),
            "right": ("link", ok),
        },
        "session": {
            "none": ("none", NONE),
            "expired": ("expired session", EXPIRED_TOKEN),
            "revoked": ("session", REVOKED),
            "device": ("device", WRONG),
            "cookie": ("cookie", NONE),
            "credential": ("credential", WRONG),
            "link": ("link", WRONG),
            "other": ("session B", WRONG),
            "right": ("session", ok),
        },
    }
    if kind == "other" and not row.targeted:
        return None
    return table[row.scope].get(kind)


ALL_ROWS = CLIENT_ROWS | DAEMON_ROWS
CELLS = [
    pytest.param(method, path, kind, id=f"{method} {path} [{kind}]")
    for (method, path), row in ALL_ROWS.items()
    for kind in KINDS
    if expected(row, kind) is not None
]


def test_the_table_covers_every_route() -> None:
    documented = {
        (method.upper(), path)
        for path, ops in openapi_document(PUBLIC_URL)["paths"].items()
        for method in ops
    }
    assert set(CLIENT_ROWS) == documented
    app = create_app(None, Hub(), RelayConfig(data_dir=Path("/nonexistent")))  # type: ignore[arg-type]
    daemon_routes = {
        (m, route.path)
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith("/daemon/")
        for m in route.methods or ()
        if m != "HEAD"
    }
    assert set(DAEMON_ROWS) == daemon_routes
    # Every secured route has a cell for each kind of credential that applies to it.
    for row in ALL_ROWS.values():
        if row.scope not in ("public", "pair"):
            assert {"none", "expired", "revoked", "right"} <= {
                k for k in KINDS if expected(row, k) is not None
            }
    assert len(CELLS) > 150


async def stream_status(app: Any, path: str, headers: dict[str, str]) -> int:
    """The status of a streaming response (ASGITransport would wait for its end)."""
    status: list[int] = []
    started = trio.Event()

    async def receive() -> Message:
        await trio.sleep_forever()
        raise AssertionError

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
            started.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("relay.test", 80),
    }
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app, scope, receive, send)
            await started.wait()
            nursery.cancel_scope.cancel()
    return status[0]


@pytest.mark.parametrize(("method", "path", "kind"), CELLS)
async def test_cell(tmp_path: Path, method: str, path: str, kind: str) -> None:
    row = ALL_ROWS[(method, path)]
    cell = expected(row, kind)
    assert cell is not None
    credential, (status, code) = cell
    async with world(tmp_path) as w:
        if credential in ("revoked credential",) or (
            kind == "revoked" and row.scope in ("link", "session")
        ):
            assert await w.storage.revoke_environment(w.daemon.environment_id)
        session = w.session_b if row.session == "b" else w.session_a
        subscription_id = "push_none"
        if "{subscription_id}" in path and credential in ("device", "cookie"):
            owner = (
                ClientPrincipal(name="phone", via="token")
                if credential == "device"
                else ClientPrincipal(name="web", via="cookie", session_hash=hash_secret("good"))
            )
            keys = SUBSCRIPTION["keys"]
            made = await w.storage.add_push_subscription(
                owner, SUBSCRIPTION["endpoint"], keys["p256dh"], keys["auth"], None
            )
            subscription_id = made.id
        url = path.format(
            subscription_id=subscription_id,
            environment_id=w.daemon.environment_id,
            session_id=session,
            request_id="req-1",
            sign_in_id=w.sign_in_id,
            slug="kept",
            action="commit",
            grant_id="grt_none",
        )
        if path == "/login" and kind == "right":
            url += f"?code={w.login_code}"
        headers = dict(w.headers[credential])
        body = row.body(w)
        if method == "GET" and path.endswith("/downlink") and status == 200:
            assert await stream_status(w.app, url, headers) == 200
            return
        response = await w.client.request(
            method, url, headers=headers, json=body, follow_redirects=False
        )
        assert response.status_code == status, response.text
        if code is not None:
            assert response.json()["error"]["code"] == code, response.text
