"""A body is read only once its caller is authenticated, and never for longer than the
relay's body deadline.

The flood test runs the relay as its own process (``python -m daemon relay``), holds
2,000 raw connections to it that each present a bogus credential with a nearly complete
1 MiB body, and watches the relay's RSS in /proc: without the 401 before the body, the
relay buffered each body (2,000 connections took it from 50 MB to 2.2 GB).
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from bench.relay_scale import RelayProcess, start_relay_process
from bench.stats import raise_nofile, rss_kib
from relay import RelayConfig, RunningRelay, admin

from .conftest import GUARD, PUBLIC_URL, create_session, make_device_token, register

CONNECTIONS = 2000
#: The body each connection declares (under the client body limit) and how much it sends.
DECLARED = 1024 * 1024
SENT = 1_000_000
#: What the relay may grow by while the connections are held.
GROWTH_LIMIT_KIB = 100 * 1024
CHUNK = b"x" * 65536

#: A bogus credential on each route that takes a body (every one reads it after the check).
ATTACKS = [
    ("POST", "/api/sessions/ses_x/messages", "authorization: Bearer x"),
    ("POST", "/api/sessions/ses_x/permissions/req_1", "cookie: rcd_session=x"),
    ("POST", "/api/environments/env_x/sessions", "authorization: Bearer rcd_dev_bogus"),
    ("PATCH", "/api/sessions/ses_x", "cookie: rcd_session=x"),
    ("POST", "/daemon/v1/environments/env_x/tokens", "authorization: Bearer rcd_env_bogus"),
]


def head(method: str, path: str, credential: str, length: int) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nhost: relay\r\n{credential}\r\n"
        f"content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    ).encode()


async def connect(port: int) -> trio.SocketStream:
    # Many connects at once may overflow the listen backlog; the kernel retries them.
    for _ in range(50):
        try:
            return await trio.open_tcp_stream("127.0.0.1", port)
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ECONNRESET, errno.EAGAIN):
                raise
            await trio.sleep(0.05)
    return await trio.open_tcp_stream("127.0.0.1", port)


async def read_status(stream: trio.SocketStream) -> int | None:
    """The status of the response on ``stream``, or None if it closed without one."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return None
            data += chunk
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return None
    return int(data.split(b" ", 2)[1])


async def attack(
    port: int, index: int, statuses: list[int | None], opened: trio.Semaphore, hold: trio.Event
) -> None:
    """One connection: head with a bogus credential, then as much of the body as the relay
    takes while waiting for its answer; then hold the connection until ``hold``."""
    method, path, credential = ATTACKS[index % len(ATTACKS)]
    async with opened:
        stream = await connect(port)
    async with stream:
        answered = trio.Event()

        async def send_body() -> None:
            try:
                await stream.send_all(head(method, path, credential, DECLARED))
                sent = 0
                while sent < SENT and not answered.is_set():
                    await stream.send_all(CHUNK[: min(len(CHUNK), SENT - sent)])
                    sent += len(CHUNK)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the relay answered and closed: what it should do

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_body)
            statuses.append(await read_status(stream))
            answered.set()
            await hold.wait()
            nursery.cancel_scope.cancel()


@pytest.fixture
async def relay_process(tmp_path: Path) -> AsyncIterator[RelayProcess]:
    raise_nofile()  # the relay inherits it; 2,000 connections need 4,000 files here
    relay = await start_relay_process(tmp_path)
    try:
        yield relay
    finally:
        await relay.stop()


async def test_2000_bogus_credentials_with_big_bodies_do_not_grow_the_relay(
    relay_process: RelayProcess,
) -> None:
    relay = relay_process
    token = await trio.to_thread.run_sync(admin.create_device_token, relay.data_dir, "phone")
    async with httpx.AsyncClient(
        base_url=relay.url, headers={"authorization": f"Bearer {token}"}, timeout=GUARD
    ) as legit:
        for _ in range(5):  # warm up
            assert (await legit.get("/api/sessions")).status_code == 200
        start = rss_kib(relay.pid)
        peak = start
        statuses: list[int | None] = []
        round_trips: list[float] = []
        hold = trio.Event()
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:

                async def sample() -> None:
                    nonlocal peak
                    while True:
                        peak = max(peak, rss_kib(relay.pid))
                        await trio.sleep(0.02)

                async def round_trip() -> None:
                    while True:
                        started = trio.current_time()
                        response = await legit.get("/api/sessions")
                        assert response.status_code == 200, response.text
                        round_trips.append(trio.current_time() - started)
                        await trio.sleep(0.1)

                nursery.start_soon(sample)
                nursery.start_soon(round_trip)
                opened = trio.Semaphore(200)
                async with trio.open_nursery() as attackers:
                    for i in range(CONNECTIONS):
                        attackers.start_soon(attack, relay.port, i, statuses, opened, hold)
                    while len(statuses) < CONNECTIONS:
                        await trio.sleep(0.05)
                    # Every connection has its answer; hold them a moment, still sampling.
                    await trio.sleep(1.0)
                    hold.set()
                nursery.cancel_scope.cancel()
        grown = peak - start
        assert grown <= GROWTH_LIMIT_KIB, f"the relay grew by {grown / 1024:.0f} MiB"
        # Each was answered 401 before its body, or (its unread body still arriving when
        # the relay closed) reset before the client could read the 401.
        counts = {s: statuses.count(s) for s in set(statuses)}
        assert set(counts) <= {401, None} and counts.get(401, 0) >= CONNECTIONS * 0.8, counts
        assert round_trips and max(round_trips) < GUARD
        assert (await legit.get("/api/sessions")).status_code == 200


# -- one connection at a time, in process -------------------------------------------------


async def raw_request(port: int, data: bytes, *, wait: float = GUARD) -> tuple[int | None, bool]:
    """Send ``data`` (a head and part of a body), then: the response's status, and whether
    the relay closed the connection after it."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        with trio.fail_after(wait):
            status = await read_status(stream)
            closed = False
            try:
                while await stream.receive_some(4096):
                    pass
                closed = True
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                closed = True
    return status, closed


@pytest.mark.parametrize(("method", "path", "credential"), ATTACKS)
async def test_a_bogus_credential_is_401_before_the_body_arrives(
    relay: RunningRelay, method: str, path: str, credential: str
) -> None:
    # Only the head and a first slice of a 1 MiB body are sent: the answer cannot wait
    # for the rest.
    data = head(method, path, credential, DECLARED) + b'{"id": "m1", "text": "' + CHUNK
    status, closed = await raw_request(relay.port, data, wait=5)
    assert status == 401
    assert closed, "the unread rest of the body is never read: the connection closes"


@pytest.fixture
def config(data_dir: Path) -> RelayConfig:
    """The in-process relay of these tests gives a body 1 s to arrive."""
    return RelayConfig(data_dir=data_dir, port=0, public_url=PUBLIC_URL, body_deadline=1.0)


async def test_a_body_that_does_not_arrive_in_time_is_408(
    relay: RunningRelay, http: httpx.AsyncClient
) -> None:
    user = await make_device_token(relay.storage)
    daemon = await register(http, relay.storage)
    await relay.storage.open_downlink(daemon.environment_id, "link_test")
    session = await create_session(http, user, daemon.environment_id)
    credential = f"authorization: {user['authorization']}"
    data = head("POST", f"/api/sessions/{session['id']}/messages", credential, 100) + b'{"id"'
    started = trio.current_time()
    status, closed = await raw_request(relay.port, data)
    assert status == 408
    assert closed
    assert 0.9 <= trio.current_time() - started < 5
    events = await http.get(f"/api/sessions/{session['id']}/events", headers=user)
    assert events.json() == {"events": []}
