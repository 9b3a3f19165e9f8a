"""The relay's app as an httpx transport in its own process (``relay.inprocess``): a body
reaches the app as it is written, an answer's body reaches the client as it is sent, a
client that goes away is seen by the app, and failures and silence are httpx errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from relay import RunningRelay
from relay.inprocess import InProcessTransport
from testkit.harness import start_relay

from .conftest import GUARD, create_session, make_device_token, register


def transport(app: Any, nursery: trio.Nursery) -> InProcessTransport:
    return InProcessTransport(app, nursery, server=("127.0.0.1", 7878))


async def test_a_body_reaches_the_app_as_it_is_written_and_the_answer_as_it_is_sent() -> None:
    seen: list[bytes] = []
    first_seen = trio.Event()
    disconnected = trio.Event()
    second = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["path"] == "/a b" and scope["query_string"] == b"x=1"
        assert scope["client"] == ("127.0.0.1", 0)
        assert (b"x-test", b"yes") in scope["headers"]
        while True:
            message = await receive()
            seen.append(message["body"])
            first_seen.set()
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 201, "headers": [(b"a", b"b")]})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await second.wait()
        await send({"type": "http.response.body", "body": b"two", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        assert (await receive())["type"] == "http.disconnect"
        disconnected.set()

    written = trio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        with trio.fail_after(5):
            await first_seen.wait()  # the app has it before the body goes on
        written.set()
        yield b"second"

    async with (
        trio.open_nursery() as nursery,
        httpx.AsyncClient(
            transport=transport(app, nursery), base_url="http://127.0.0.1:7878"
        ) as http,
    ):
        async with http.stream(
            "POST", "/a%20b?x=1", content=body(), headers={"x-test": "yes"}
        ) as response:
            assert written.is_set()
            assert response.status_code == 201 and response.headers["a"] == "b"
            got = []
            async for chunk in response.aiter_bytes():
                got.append(chunk)
                second.set()  # "two" is sent only once "one" came
            assert got == [b"one", b"two"]
        # The client closed the answer: the app hears it, as it would from a socket.
        with trio.fail_after(5):
            await disconnected.wait()
    assert seen == [b"first", b"second", b""]


async def test_an_app_that_fails_or_stays_silent_is_an_httpx_error() -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def silent(scope: Any, receive: Any, send: Any) -> None:
        await trio.sleep_forever()

    async def cut(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("mid-answer")

    async with trio.open_nursery() as nursery:
        for app, error in [
            (failing, httpx.RemoteProtocolError),
            (silent, httpx.ReadTimeout),
            (cut, httpx.RemoteProtocolError),
        ]:
            async with httpx.AsyncClient(
                transport=transport(app, nursery), base_url="http://relay", timeout=0.2
            ) as http:
                with pytest.raises(error):
                    await http.get("/")
        # The silent app was abandoned (cancelled), not left running.
        await trio.testing.wait_all_tasks_blocked()
        assert not nursery.child_tasks


async def test_the_relays_app_answers_in_process_as_over_loopback(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        assert relay.running is not None
        headers = {"Authorization": f"Bearer {relay.token}"}
        async with httpx.AsyncClient(
            transport=relay.running.local, base_url=relay.url, headers=headers
        ) as local:
            for path in ["/api/environments", "/api/sessions", "/api/nowhere", "/api/openapi.json"]:
                over_loopback = await relay.client.get(path)
                in_process = await local.get(path)
                assert (in_process.status_code, in_process.json()) == (
                    over_loopback.status_code,
                    over_loopback.json(),
                ), path
            refused = await local.get("/api/sessions", headers={"Authorization": "Bearer no"})
            assert refused.status_code == 401
        await relay.aclose()
        nursery.cancel_scope.cancel()


async def test_a_daemon_in_process_has_an_input_before_its_post_is_answered(
    relay: RunningRelay,
) -> None:
    """The relay answers a client's POST once the open downlink took the input, and, for a
    daemon in its own process, only in the event loop's pass after the one in which the
    daemon reads it: the two would otherwise run in the same pass, in either order, and the
    agent is what waits for the input."""
    order: list[str] = []

    def recording(app: Any) -> Any:
        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            async def sending(message: Any) -> None:
                if message["type"] == "http.response.start" and scope["path"].endswith("/messages"):
                    order.append("answered")
                await send(message)

            await app(scope, receive, sending)

        return wrapped

    base = relay.local_url
    async with (
        trio.open_nursery() as nursery,
        httpx.AsyncClient(transport=relay.local, base_url=base, timeout=GUARD) as daemon_side,
        httpx.AsyncClient(
            transport=InProcessTransport(recording(relay.local.app), nursery, relay.local.server),
            base_url=base,
            timeout=GUARD,
            headers=await make_device_token(relay.storage),
        ) as phone,
    ):
        daemon = await register(daemon_side, relay.storage)

        async def read_downlink(task_status: trio.TaskStatus[None]) -> None:
            url = f"/daemon/v1/environments/{daemon.environment_id}/downlink"
            async with daemon_side.stream("GET", url, headers=daemon.headers) as downlink:
                task_status.started()
                async for chunk in downlink.aiter_raw():
                    order.extend("read" for _ in range(chunk.count(b'"type":"message"')))

        await nursery.start(read_downlink)
        session = await create_session(phone, {}, daemon.environment_id)
        for i in range(20):
            posted = await phone.post(
                f"/api/sessions/{session['id']}/messages", json={"id": f"m{i}", "text": "hi"}
            )
            assert posted.status_code == 202
            assert order[-2:] == ["read", "answered"], (i, order)
        nursery.cancel_scope.cancel()
