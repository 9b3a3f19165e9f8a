"""Access tokens in virtual time: the daemon's client against the real relay app.

The relay app runs in process (``httpx.ASGITransport``) with its token issuer on the same
virtual clock as the daemon's :class:`RelayClient`, so hours of token lifetimes pass in
moments. Every response status the client sees is recorded. (Each test asks for ``clock``
itself: pytest-trio runs a test on a clock only if the test function takes it.)
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import httpx
import pytest
import trio
import trio.testing

import wire
from daemon.errors import RelayRejected
from daemon.relay_client import RelayClient
from relay import Hub, RelayConfig, SqliteStorage, create_app
from relay.auth import hash_secret, issue_environment_credential
from relay.tokens import TokenIssuer
from testkit.asgi import ASGITransport

URL = "http://relay.test"
TTL = 300.0


@pytest.fixture
def clock() -> trio.testing.MockClock:
    # Jump only when every task has waited a while in real time: a database call that
    # waits for a lock runs in a worker thread and must not look like idleness.
    return trio.testing.MockClock(autojump_threshold=0.05)


@attrs.define
class Setup:
    client: RelayClient
    issuer: TokenIssuer
    storage: SqliteStorage
    environment_id: str
    session_id: str
    statuses: list[tuple[str, int]]
    skew: list[float]
    http: httpx.AsyncClient


def laptop(capacity: int) -> wire.RegisterRequest:
    """The registration of machine ``m1``'s directory ``/p``."""
    return wire.RegisterRequest(
        name="laptop",
        machine="m1",
        directory="/p",
        spawn="same-dir",
        capacity=capacity,
        agent="claude",
    )


@pytest.fixture
async def setup(clock: trio.testing.MockClock, tmp_path: Path) -> AsyncIterator[Setup]:
    skew = [time.time()]
    issuer = TokenIssuer(ttl=TTL, clock=lambda: skew[0] + trio.current_time())
    statuses: list[tuple[str, int]] = []

    async def record(response: httpx.Response) -> None:
        statuses.append((response.request.url.path, response.status_code))

    async def network(request: httpx.Request) -> None:
        # The in-process transport answers with no network in between (the relay's
        # storage does not wait either): a moment of latency keeps a request in flight
        # while others queue behind it, as on a real connection.
        await trio.sleep(0.001)  # clock: virtual time; latency of the network

    async with SqliteStorage.in_data_dir(tmp_path) as storage:
        app = create_app(storage, Hub(), RelayConfig(data_dir=tmp_path), tokens=issuer)
        async with httpx.AsyncClient(
            transport=ASGITransport(app),
            event_hooks={"request": [network], "response": [record]},
        ) as http:
            credential = await issue_environment_credential(storage, "m1")
            client = RelayClient(http=http, relay=URL, credential=credential)
            registration = await client.register(laptop(capacity=16))
            env_id = registration.environment_id
            await storage.open_downlink(env_id, "link_test")
            await storage.add_device_token("phone", hash_secret("rcd_dev_phone"))
            created = await http.post(
                f"{URL}/api/environments/{env_id}/sessions",
                json={"prompt": "hi"},
                headers={"authorization": "Bearer rcd_dev_phone"},
            )
            assert created.status_code == 201, created.text
            statuses.clear()
            yield Setup(client, issuer, storage, env_id, created.json()["id"], statuses, skew, http)


def note(seq: int) -> wire.Event:
    return wire.Event(seq=seq, kind="assistant_text", at=float(seq), data={"text": f"n{seq}"})


async def test_a_session_keeps_working_across_many_token_lifetimes(
    setup: Setup, clock: trio.testing.MockClock
) -> None:
    start = trio.current_time()
    seq = 0
    while trio.current_time() - start < 6 * TTL:
        seq += 1
        assert await setup.client.post_events(setup.session_id, [note(seq)]) == seq
        await setup.client.ack(setup.environment_id, 1)
        await trio.sleep(TTL / 7)  # clock: virtual time; token lifetimes pass
    assert seq >= 40
    # Renewed before expiry every time: no request was ever refused.
    assert all(status < 400 for _, status in setup.statuses), setup.statuses
    # One link and one session token per renewal period (80 % of a lifetime), no more.
    periods = 6 / 0.8
    assert 2 * periods - 2 <= setup.client.tokens_minted <= 2 * (periods + 1)
    events = await setup.storage.read_events(setup.session_id, 0, 1000)
    assert [e.seq for e in events] == list(range(1, seq + 1))


async def test_a_relay_restart_costs_one_refusal_one_mint_and_one_retry(
    setup: Setup, clock: trio.testing.MockClock
) -> None:
    assert await setup.client.post_events(setup.session_id, [note(1)]) == 1
    minted = setup.client.tokens_minted
    setup.statuses.clear()
    setup.issuer.rotate()  # what a restart does: every token issued so far is unknown
    assert await setup.client.post_events(setup.session_id, [note(2)]) == 2
    events_path = f"/daemon/v1/sessions/{setup.session_id}/events"
    tokens_path = f"/daemon/v1/environments/{setup.environment_id}/tokens"
    assert setup.statuses == [(events_path, 401), (tokens_path, 200), (events_path, 200)]
    assert setup.client.tokens_minted == minted + 1


async def test_a_token_expired_while_the_machine_slept_is_refreshed(
    setup: Setup, clock: trio.testing.MockClock
) -> None:
    assert await setup.client.post_events(setup.session_id, [note(1)]) == 1
    await setup.client.ack(setup.environment_id, 1)
    # The monotonic clock stops while a laptop sleeps; the relay's wall clock does not.
    setup.skew[0] += 2 * TTL
    setup.statuses.clear()
    await setup.client.ack(setup.environment_id, 1)
    assert await setup.client.post_events(setup.session_id, [note(2)]) == 2
    assert [status for _, status in setup.statuses] == [401, 200, 204, 401, 200, 200]


async def test_a_revoked_credential_is_final(setup: Setup, clock: trio.testing.MockClock) -> None:
    assert await setup.client.post_events(setup.session_id, [note(1)]) == 1
    await setup.storage.revoke_environment(setup.environment_id)
    setup.statuses.clear()
    with pytest.raises(RelayRejected) as refused:
        await setup.client.post_events(setup.session_id, [note(2)])
    assert refused.value.status == 401 and refused.value.code == "credential_revoked"
    assert "rcd pair" in refused.value.message
    assert len(setup.statuses) == 1  # no mint, no retry: nothing would help
    with pytest.raises(RelayRejected, match="credential_revoked"):
        await setup.client.ack(setup.environment_id, 1)


async def test_concurrent_batches_of_many_sessions_share_requests(
    setup: Setup, clock: trio.testing.MockClock
) -> None:
    sessions = [setup.session_id]
    for _ in range(11):
        created = await setup.http.post(
            f"{URL}/api/environments/{setup.environment_id}/sessions",
            json={"prompt": "hi"},
            headers={"authorization": "Bearer rcd_dev_phone"},
        )
        sessions.append(created.json()["id"])
    for sid in sessions:  # tokens first, so only uplink requests are counted below
        assert await setup.client.post_events(sid, [note(1)]) == 1
    before = setup.client.uplink_requests
    setup.statuses.clear()
    acked: dict[str, int] = {}

    async def post(sid: str) -> None:
        acked[sid] = await setup.client.post_events(sid, [note(2), note(3)])

    async with trio.open_nursery() as nursery:
        for sid in sessions:
            nursery.start_soon(post, sid)
    assert acked == {sid: 3 for sid in sessions}
    sent = setup.client.uplink_requests - before
    # Two go out at once; everything that queued behind them shares the next requests.
    assert sent <= 4, setup.statuses
    assert any(path.endswith("/uplink") for path, _ in setup.statuses)
    for sid in sessions:
        assert [e.seq for e in await setup.storage.read_events(sid, 0, 10)] == [1, 2, 3]
