"""Query parameters and headers that carry numbers: out of range or not a number is a 400
naming the parameter, never a 500 (they reach SQLite, whose integers are 64-bit)."""

from __future__ import annotations

import httpx
import pytest

from relay import RunningRelay

from .conftest import create_session, make_device_token, register
from .test_client_api import assert_error

TOO_BIG = str(2**63)
BAD_NUMBERS = [TOO_BIG, str(2**64 + 5), "9" * 5000, "-1", "1.5", "1e3", "abc", "²", "١٢", " "]


@pytest.fixture
async def session_path(relay: RunningRelay, http: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    user = await make_device_token(relay.storage)
    daemon = await register(http, relay.storage)
    await relay.storage.open_downlink(daemon.environment_id, "link_test")
    session = await create_session(http, user, daemon.environment_id)
    return f"/api/sessions/{session['id']}/events", user


@pytest.mark.parametrize("value", BAD_NUMBERS)
@pytest.mark.parametrize("name", ["after", "limit"])
async def test_a_bad_number_in_the_query_is_400_naming_it(
    http: httpx.AsyncClient, session_path: tuple[str, dict[str, str]], name: str, value: str
) -> None:
    path, user = session_path
    if value == " " and name == "after":
        value = "%20"
    response = await http.get(path, params={name: value}, headers=user)
    body = assert_error(response, 400, "invalid_parameter")
    assert name in body["error"]["message"]


@pytest.mark.parametrize("value", [v for v in BAD_NUMBERS if v.strip()])
@pytest.mark.parametrize("accept", ["text/event-stream", "application/json"])
async def test_a_bad_last_event_id_is_400_naming_it(
    http: httpx.AsyncClient, session_path: tuple[str, dict[str, str]], value: str, accept: str
) -> None:
    path, user = session_path
    headers = [(k.encode(), v.encode()) for k, v in user.items()]
    headers += [(b"accept", accept.encode()), (b"last-event-id", value.encode())]
    if accept == "application/json":
        # Only a stream reads the header: a JSON page ignores it.
        assert (await http.get(path, headers=headers)).status_code == 200
        return
    body = assert_error(await http.get(path, headers=headers), 400, "invalid_parameter")
    assert "Last-Event-ID" in body["error"]["message"]


async def test_the_largest_offset_is_served(
    http: httpx.AsyncClient, session_path: tuple[str, dict[str, str]]
) -> None:
    path, user = session_path
    response = await http.get(path, params={"after": str(2**63 - 1)}, headers=user)
    assert response.status_code == 200, response.text
    assert response.json() == {"events": []}


async def test_a_daemon_downlink_with_a_bad_last_event_id_is_400(
    relay: RunningRelay, http: httpx.AsyncClient
) -> None:
    daemon = await register(http, relay.storage)
    response = await http.get(
        f"/daemon/v1/environments/{daemon.environment_id}/downlink",
        headers=daemon.headers | {"last-event-id": TOO_BIG},
    )
    body = assert_error(response, 400, "invalid_parameter")
    assert "Last-Event-ID" in body["error"]["message"]
