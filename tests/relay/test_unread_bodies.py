"""A body is read only once its caller is authenticated, and never for longer than the
relay's body deadline.

The flood test runs the relay as its own process (``python -m daemon relay``), holds
2,000 raw connections to it that each present a bogus credential with a nearly complete
1 MiB body, and watches the relay's RSS in /proc: without the 401 before the body, the
relay buffered each body (2,000 connections took it from 50 MB to 2.2 GB).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from bench.unread_bodies import ATTACKS, CHUNK, DECLARED, head, measure_unread_bodies, read_status
from relay import RelayConfig, RunningRelay

from .conftest import GUARD, PUBLIC_URL, create_session, make_device_token, register

CONNECTIONS = 2000


async def test_2000_bogus_credentials_with_big_bodies_do_not_grow_the_relay(
    tmp_path: Path,
) -> None:
    result = await measure_unread_bodies(CONNECTIONS, root=tmp_path)
    grown = result.grown_kib / 1024
    assert grown <= 100, f"the relay grew by {grown:.0f} MiB"
    # Each was answered 401 before its body, or (its unread body still arriving when the
    # relay closed) reset before the client could read the 401.
    assert set(result.statuses) <= {401, None}, result.statuses
    assert result.statuses.get(401, 0) >= CONNECTIONS * 0.8, result.statuses
    assert sum(result.statuses.values()) == CONNECTIONS
    # The device-token client's round trips went on meanwhile (each raised for its status).
    assert len(result.get_loaded.samples) >= 5
    assert max(result.get_loaded.samples) < GUARD * 1000


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
