"""The daemon's downlink against the real relay (Hypercorn on loopback, real SSE): keep-alives
are never taken for directives, and the link is renewed on the schedule of the token the
open downlink was opened with."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

import wire
from daemon.relay_client import RENEW_AFTER, RelayClient, downlink, tokens
from relay import RelayConfig, RunningRelay, serve_relay
from relay.auth import hash_secret, issue_environment_credential
from relay.tokens import TokenIssuer

KEEPALIVE = 0.02
TTL = 3.0
PHONE = {"authorization": "Bearer rcd_dev_phone"}


@attrs.define
class Recorder:
    """Stands in for a module's structlog logger: keeps (level, event, fields)."""

    records: list[tuple[str, str, dict[str, Any]]] = attrs.Factory(list)

    def __getattr__(self, level: str) -> Any:
        def record(event: str, **fields: Any) -> None:
            self.records.append((level, event, fields))

        return record


@attrs.define
class World:
    relay: RunningRelay
    issuer: TokenIssuer
    http: httpx.AsyncClient
    client: RelayClient
    environment_id: str
    log: Recorder


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    log = Recorder()
    for module in (downlink, tokens):  # the client's modules that log
        monkeypatch.setattr(module, "log", log)
    issuer = TokenIssuer(ttl=TTL)
    config = RelayConfig(data_dir=tmp_path, port=0, keepalive_interval=KEEPALIVE)
    async with trio.open_nursery() as nursery:
        relay: RunningRelay = await nursery.start(partial(serve_relay, config, tokens=issuer))
        await relay.storage.add_device_token("phone", hash_secret("rcd_dev_phone"))
        credential = await issue_environment_credential(relay.storage, "m1")
        async with httpx.AsyncClient(base_url=relay.url, timeout=10) as http:
            client = RelayClient(http=http, relay=relay.url, credential=credential)
            registration = await client.register(
                wire.RegisterRequest(
                    name="laptop",
                    machine="m1",
                    directory="/p",
                    spawn="same-dir",
                    capacity=2,
                    agent="claude",
                )
            )
            yield World(relay, issuer, http, client, registration.environment_id, log)
        nursery.cancel_scope.cancel()


async def test_keep_alives_are_not_directives(world: World) -> None:
    received: list[tuple[int, wire.Directive]] = []
    keepalives = 0
    changed = trio.Event()
    opened = trio.Event()

    def kept_alive() -> None:
        nonlocal changed, keepalives
        keepalives += 1
        changed.set()
        changed = trio.Event()

    async def follow() -> None:
        nonlocal changed
        async with aclosing(
            world.client.downlink(
                world.environment_id, 0, on_open=opened.set, on_keepalive=kept_alive
            )
        ) as directives:
            async for item in directives:
                received.append(item)
                changed.set()
                changed = trio.Event()

    async def until(condition: Callable[[], bool]) -> None:
        while not condition():
            await changed.wait()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await opened.wait()
            created = await world.http.post(
                f"/api/environments/{world.environment_id}/sessions", json={}, headers=PHONE
            )
            assert created.status_code == 201, created.text
            sid = created.json()["id"]
            await until(lambda: len(received) >= 1)
            # Many keep-alives go by (each one carried the last id as httpx-sse reads it).
            seen = keepalives
            await until(lambda: keepalives >= seen + 50)
            posted = await world.http.post(
                f"/api/sessions/{sid}/messages", json={"id": "m1", "text": "hi"}, headers=PHONE
            )
            assert posted.status_code == 202, posted.text
            await until(lambda: len(received) >= 2)
            seen = keepalives
            await until(lambda: keepalives >= seen + 20)
            nursery.cancel_scope.cancel()
    assert [(dseq, d.type) for dseq, d in received] == [(1, "start_session"), (2, "message")]
    assert world.log.records == []


async def test_the_link_is_renewed_before_the_token_of_its_downlink_expires(
    world: World,
) -> None:
    opened = trio.Event()
    asked_at = trio.current_time()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def follow() -> None:
                async with aclosing(
                    world.client.downlink(world.environment_id, 0, on_open=opened.set)
                ) as directives:
                    async for _ in directives:
                        pass

            nursery.start_soon(follow)
            await opened.wait()
            # A while later another call's token is refused (a key rotation: what a relay
            # restart does) and a new one minted; the open downlink keeps its own.
            await trio.sleep(0.4 * TTL)  # clock: a token minted later renews later
            world.issuer.rotate()
            await world.client.ack(world.environment_id, 0)
            renew_at = world.client.link_renew_at()
            nursery.cancel_scope.cancel()
    assert asked_at + RENEW_AFTER * TTL <= renew_at < asked_at + TTL
    assert [level for level, _, _ in world.log.records] == ["info"]  # the token refresh
