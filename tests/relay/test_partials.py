"""Replies being written, through the relay: handed from the uplink to the session's open
streams (asked for with ``?partials=1``), never stored, the text so far first for a stream
opened mid-message, gone once a later event is in."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio
import trio.testing

import wire
from relay import Hub, RunningRelay, SqliteStorage
from relay.fanout import PARTIAL_IDLE, partial_message
from testkit.sse import SSEReader, sse

from .conftest import (
    GUARD,
    Daemon,
    create_session,
    event,
    make_device_token,
    register,
    started,
    uplink,
)


def piece(offset: int, text: str, after_seq: int = 1, block: int = 0) -> wire.AssistantPartial:
    return wire.AssistantPartial(
        after_seq=after_seq, block=block, kind="text", offset=offset, text=text
    )


async def post_partials(
    client: httpx.AsyncClient,
    daemon: Daemon,
    pieces: list[tuple[str, wire.AssistantPartial]],
    token_for: dict[str, str] | None = None,
) -> httpx.Response:
    """An uplink request of only partials, each with its session's token (or the one
    ``token_for`` names instead)."""
    parts = []
    for session_id, p in pieces:
        headers = await daemon.session_headers(client, session_id)
        token = (token_for or {}).get(session_id) or headers["authorization"].split()[1]
        parts.append({"session_id": session_id, "token": token, "partial": wire.encode(p)})
    return await client.post(
        f"/daemon/v1/environments/{daemon.environment_id}/uplink",
        json={"sessions": [], "partials": parts},
        headers=daemon.headers,
    )


async def test_the_hub_joins_pieces_until_a_later_event() -> None:
    hub = Hub()
    hub.publish_partial("s", piece(0, "hel"))
    hub.publish_partial("s", piece(3, "lo"))
    hub.publish_partial("s", piece(9, "lost"))  # past the text so far: nothing
    shown = hub.partial("s")
    assert shown is not None and (shown.after_seq, shown.text) == (1, "hello")
    hub.publish_events("s", [wire.decode(wire.Event, event(2, "assistant_text", text="hello"))])
    assert hub.partial("s") is None
    # A piece arriving after the event that ended its block shows nothing.
    hub.publish_partial("s", piece(5, " world"))
    hub.publish_partial("s", piece(0, "late"))
    assert hub.partial("s") is None
    hub.publish_partial("s", piece(0, "next", after_seq=2))
    assert hub.partial("s") == wire.Shown(after_seq=2, block=0, kind="text", name=None, text="next")


async def test_a_reply_that_stops_growing_is_shown_no_more(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Its daemon went away mid-message: no event will end it.
    hub = Hub()
    hub.publish_partial("s", piece(0, "half a"))
    await trio.sleep(PARTIAL_IDLE / 2)  # clock: the autojump MockClock, virtual time
    hub.publish_partial("s", piece(6, " reply"))
    await trio.sleep(PARTIAL_IDLE / 2 + 1)  # clock: the autojump MockClock, virtual time
    assert hub.partial("s") is not None  # it grew since
    await trio.sleep(PARTIAL_IDLE)  # clock: the autojump MockClock, virtual time
    assert hub.partial("s") is None


async def test_registration_says_the_relay_takes_partials(
    client: httpx.AsyncClient, storage: SqliteStorage
) -> None:
    from relay.auth import issue_environment_credential

    credential = await issue_environment_credential(storage, "m9")
    response = await client.post(
        "/daemon/v1/register",
        json={"name": "n", "machine": "m9", "directory": "/d", "spawn": "same-dir",
              "capacity": 1, "agent": "claude"},
        headers={"authorization": f"Bearer {credential}"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.headers[wire.FEATURES_HEADER] == "partials, settings, grants, agents"


def test_a_stream_is_sent_what_it_lacks() -> None:
    whole = wire.Shown(after_seq=4, block=0, kind="text", name=None, text="hello world")
    sent = wire.Shown(after_seq=4, block=0, kind="text", name=None, text="hello")

    def data(message: bytes) -> Any:
        lines = message.decode().strip().split("\n")
        assert lines[0] == f"event: {wire.PARTIAL_EVENT}" and not any(
            line.startswith("id:") for line in lines
        )
        return json.loads(lines[1].removeprefix("data: "))

    assert data(partial_message(whole, sent))["offset"] == 5
    assert data(partial_message(whole, sent))["text"] == " world"
    assert data(partial_message(whole, None)) == wire.encode(
        wire.AssistantPartial(after_seq=4, block=0, kind="text", offset=0, text="hello world")
    )
    restarted = wire.Shown(after_seq=4, block=0, kind="text", name=None, text="bye")
    assert data(partial_message(restarted, sent))["offset"] == 0


async def test_the_uplink_hands_partials_to_the_hub_and_stores_nothing(
    client: httpx.AsyncClient,
    storage: SqliteStorage,
    hub: Hub,
    user: dict[str, str],
    daemon: Daemon,
) -> None:
    a = (await create_session(client, user, daemon.environment_id))["id"]
    b = (await create_session(client, user, daemon.environment_id))["id"]
    a_token = (await daemon.session_headers(client, a))["authorization"].split()[1]
    response = await post_partials(
        client,
        daemon,
        [(a, piece(0, "from a")), (b, piece(0, "b with a's token"))],
        token_for={b: a_token},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"sessions": []}
    shown = hub.partial(a)
    assert shown is not None and shown.text == "from a"
    assert hub.partial(b) is None  # not its session's token: dropped
    assert await storage.read_events(a, 0, 10) == []
    # Another environment's daemon, with a token of its own session, cannot write here.
    other = await register(client, storage, machine="m2")
    await storage.open_downlink(other.environment_id, "link_other")
    o = (await create_session(client, user, other.environment_id))["id"]
    o_token = (await other.session_headers(client, o))["authorization"].split()[1]
    response = await post_partials(client, other, [(o, piece(0, "own"))], token_for={a: o_token})
    assert response.status_code == 200
    response = await client.post(
        f"/daemon/v1/environments/{other.environment_id}/uplink",
        json={"sessions": [], "partials": [
            {"session_id": a, "token": o_token, "partial": wire.encode(piece(6, " forged"))}
        ]},
        headers=other.headers,
    )  # fmt: skip
    assert response.status_code == 200
    shown = hub.partial(a)
    assert shown is not None and shown.text == "from a"
    assert hub.partial(o) is not None


async def next_partial(reader: SSEReader) -> wire.AssistantPartial:
    message = await reader.next()
    assert message.event == wire.PARTIAL_EVENT and message.id is None, message
    assert message.data is not None
    return wire.decode_json(wire.AssistantPartial, message.data)


async def test_streams_that_ask_get_the_text_so_far_then_what_grows(
    relay: RunningRelay, http: httpx.AsyncClient
) -> None:
    d = await register(http, relay.storage)
    await relay.storage.open_downlink(d.environment_id, "link_test")
    user = await make_device_token(relay.storage)
    sid = (await create_session(http, user, d.environment_id))["id"]
    url = f"/api/sessions/{sid}/events"
    await uplink(http, d, sid, started(1))
    assert (await post_partials(http, d, [(sid, piece(0, "so "))])).status_code == 200
    assert (await post_partials(http, d, [(sid, piece(3, "far"))])).status_code == 200

    with trio.fail_after(GUARD):
        async with sse(http, url + "?partials=1", user) as (_, reader):
            assert (await reader.next()).id == "1"
            # Opened mid-message: the text so far, whole.
            assert await next_partial(reader) == piece(0, "so far")
            await post_partials(http, d, [(sid, piece(6, ", and on"))])
            assert await next_partial(reader) == piece(6, ", and on")
            # The finished message ends it: the event, and no partial after it.
            await uplink(http, d, sid, event(2, "assistant_text", text="so far, and on"))
            message = await reader.next()
            assert (message.id, message.event) == ("2", "assistant_text")
            await post_partials(http, d, [(sid, piece(0, "late"))])
            await uplink(http, d, sid, event(3, "status", state="idle"))
            assert (await reader.next()).id == "3"
        # Not asked for: never sent (a client that expects an id on every message).
        await post_partials(http, d, [(sid, piece(0, "next", after_seq=3))])
        async with sse(http, url + "?after=2", user) as (_, reader):
            assert (await reader.next()).id == "3"
            await uplink(http, d, sid, event(4, "status", state="busy"))
            assert (await reader.next()).id == "4"
