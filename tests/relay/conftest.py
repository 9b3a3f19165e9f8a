"""Shared fixtures for the relay tests.

Plain requests go through httpx's ASGI transport (``testkit.asgi``) against an app on a
real SQLite file in ``tmp_path``; streaming (SSE) tests start the real server with
``serve_relay`` on port 0.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from relay import Hub, RelayConfig, RunningRelay, SqliteStorage, create_app, serve_relay
from relay.auth import hash_secret, issue_environment_credential
from relay.sqlite import database_path
from testkit.asgi import ASGITransport
from testkit.fakes.push_service import PushService, open_push_service
from testkit.waiting import eventually
from wire import Directive, decode_json

PUBLIC_URL = "http://relay.test"
#: Every test that waits on the network is guarded by this.
GUARD = 10.0


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "relay-data"


@pytest.fixture
async def storage(data_dir: Path) -> AsyncIterator[SqliteStorage]:
    async with SqliteStorage.in_data_dir(data_dir) as storage:
        yield storage


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    """A Web Push service on loopback that checks VAPID and decrypts what it takes."""
    async with open_push_service() as service:
        yield service


@pytest.fixture
def hub() -> Hub:
    return Hub()


@pytest.fixture
def config(data_dir: Path) -> RelayConfig:
    return RelayConfig(
        data_dir=data_dir,
        port=0,
        public_url=PUBLIC_URL,
        keepalive_interval=0.2,
        push_loopback_http=True,  # the fake push service is on loopback
    )


@pytest.fixture
async def client(
    storage: SqliteStorage, hub: Hub, config: RelayConfig
) -> AsyncIterator[httpx.AsyncClient]:
    """An unauthenticated client of an in-process app (no SSE: ASGITransport buffers)."""
    app = create_app(storage, hub, config)
    async with httpx.AsyncClient(transport=ASGITransport(app), base_url=PUBLIC_URL) as c:
        yield c


async def make_device_token(storage: SqliteStorage, name: str = "phone") -> dict[str, str]:
    """Headers carrying a fresh device token called ``name``."""
    token = f"rcd_dev_test_{name}"
    await storage.add_device_token(name, hash_secret(token))
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
async def user(storage: SqliteStorage) -> dict[str, str]:
    return await make_device_token(storage)


@attrs.frozen
class Daemon:
    """A daemon's credential, its registered environment and its link access token."""

    credential: str
    environment_id: str
    link_token: str
    #: Session access tokens minted so far, by session id.
    session_tokens: dict[str, str] = attrs.field(factory=dict, eq=False)

    @property
    def credential_headers(self) -> dict[str, str]:
        """For register and tokens."""
        return {"authorization": f"Bearer {self.credential}"}

    @property
    def headers(self) -> dict[str, str]:
        """The link token: downlink, ack, goodbye."""
        return {"authorization": f"Bearer {self.link_token}"}

    async def session_headers(self, client: httpx.AsyncClient, session_id: str) -> dict[str, str]:
        """A session token for ``session_id`` (minted on first use)."""
        if session_id not in self.session_tokens:
            self.session_tokens[session_id] = await mint_token(
                client, self.credential, self.environment_id, session_id
            )
        return {"authorization": f"Bearer {self.session_tokens[session_id]}"}


async def mint_token(
    client: httpx.AsyncClient, credential: str, environment_id: str, session_id: str | None = None
) -> str:
    response = await client.post(
        f"/daemon/v1/environments/{environment_id}/tokens",
        json={"session_id": session_id},
        headers={"authorization": f"Bearer {credential}"},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def register_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "laptop",
        "machine": "m1",
        "directory": "/home/dev/project",
        "spawn": "same-dir",
        "capacity": 4,
        "agent": "claude",
    }
    return body | overrides


async def register(
    client: httpx.AsyncClient, storage: SqliteStorage, machine: str = "m1", **overrides: Any
) -> Daemon:
    credential = await issue_environment_credential(storage, machine)
    response = await client.post(
        "/daemon/v1/register",
        json=register_body(machine=machine, **overrides),
        headers={"authorization": f"Bearer {credential}"},
    )
    assert response.status_code == 200, response.text
    environment_id = response.json()["environment_id"]
    return Daemon(credential, environment_id, await mint_token(client, credential, environment_id))


@pytest.fixture
async def daemon(client: httpx.AsyncClient, storage: SqliteStorage) -> Daemon:
    """A registered environment that is *online* (as if its downlink were open)."""
    d = await register(client, storage)
    await storage.open_downlink(d.environment_id, "link_test")
    return d


async def create_session(
    client: httpx.AsyncClient, headers: dict[str, str], environment_id: str, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/api/environments/{environment_id}/sessions", json=body, headers=headers
    )
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


def event(seq: int, kind: str, **data: Any) -> dict[str, Any]:
    return {"seq": seq, "kind": kind, "at": 1700000000.0 + seq, "data": data}


def started(seq: int = 1, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "cwd": "/home/dev/project",
        "spawn": "same-dir",
        "branch": None,
        "agent": "claude",
        "agent_session_id": "agent-123",
    }
    return event(seq, "session_started", **(data | overrides))


async def uplink(
    client: httpx.AsyncClient, daemon: Daemon, session_id: str, *events: dict[str, Any]
) -> httpx.Response:
    return await client.post(
        f"/daemon/v1/sessions/{session_id}/events",
        json={"events": list(events)},
        headers=await daemon.session_headers(client, session_id),
    )


def queued_directives(data_dir: Path, environment_id: str) -> list[Directive]:
    """Every directive still queued for an environment, read straight from the file."""
    with closing(sqlite3.connect(database_path(data_dir))) as db:
        rows = db.execute(
            "SELECT body FROM directives WHERE environment_id = ? ORDER BY dseq",
            (environment_id,),
        ).fetchall()
    return [decode_json(Directive, r[0]) for r in rows]


def count_rows(data_dir: Path, table: str) -> int:
    with closing(sqlite3.connect(database_path(data_dir))) as db:
        (n,) = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    return int(n)


# -- the real server, for streaming ---------------------------------------------------------


@pytest.fixture
async def relay(config: RelayConfig) -> AsyncIterator[RunningRelay]:
    async with trio.open_nursery() as nursery:
        running: RunningRelay = await nursery.start(serve_relay, config)
        yield running
        nursery.cancel_scope.cancel()


@pytest.fixture
async def http(relay: RunningRelay) -> AsyncIterator[httpx.AsyncClient]:
    """A real HTTP client of the real server."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{relay.port}", timeout=GUARD) as c:
        yield c


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, what: str, timeout: float = GUARD
) -> None:
    """Poll ``predicate`` (for state another task changes asynchronously, e.g. over TCP,
    that wakes nobody) through :func:`testkit.waiting.eventually`."""
    await eventually(predicate, timeout=timeout, what=what)


async def is_online(storage: SqliteStorage, environment_id: str) -> bool:
    env = await storage.get_environment(environment_id)
    assert env is not None
    return env.online
