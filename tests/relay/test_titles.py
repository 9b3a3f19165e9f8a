"""A session's title is capped at 500 characters, at creation as at a rename."""

from __future__ import annotations

import httpx
import pytest

from relay import RunningRelay

from .conftest import create_session, make_device_token, register
from .test_client_api import assert_error


@pytest.fixture
async def setup(relay: RunningRelay, http: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    user = await make_device_token(relay.storage)
    daemon = await register(http, relay.storage)
    await relay.storage.open_downlink(daemon.environment_id, "link_test")
    return daemon.environment_id, user


@pytest.mark.parametrize("length", [501, 1_000_000])
async def test_a_title_over_500_characters_is_refused_at_creation(
    relay: RunningRelay, http: httpx.AsyncClient, setup: tuple[str, dict[str, str]], length: int
) -> None:
    environment_id, user = setup
    response = await http.post(
        f"/api/environments/{environment_id}/sessions",
        json={"title": "t" * length, "prompt": "hi"},
        headers=user,
    )
    body = assert_error(response, 400, "invalid_body")
    assert "title" in body["error"]["message"]
    assert (await http.get("/api/sessions", headers=user)).json() == {"sessions": []}


async def test_a_title_of_500_characters_is_kept_whole_at_creation_and_rename(
    http: httpx.AsyncClient, setup: tuple[str, dict[str, str]]
) -> None:
    environment_id, user = setup
    title = "é" * 500  # characters, not bytes
    session = await create_session(http, user, environment_id, title=title)
    assert session["title"] == title
    path = f"/api/sessions/{session['id']}"
    renamed = await http.patch(path, json={"title": "x" * 500}, headers=user)
    assert renamed.status_code == 200, renamed.text
    body = assert_error(
        await http.patch(path, json={"title": "x" * 501}, headers=user), 400, "invalid_body"
    )
    assert "title" in body["error"]["message"]
    assert (await http.get(path, headers=user)).json()["title"] == "x" * 500
