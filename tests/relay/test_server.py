"""The real server: Hypercorn on 127.0.0.1:0, real HTTP, real SSE.

(Over 400 lines on purpose: everything that needs the real server and a real socket is
here, so the rest of tests/relay can use the app in process.)
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import stat
import subprocess
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing

import wire
from relay import (
    RelayConfig,
    RelayError,
    RunningRelay,
    SqliteStorage,
    admin,
    client_api,
    serve_relay,
)
from relay.server import RELAY_INFO_FILENAME, serve_until_signalled
from testkit.sse import sse
from testkit.waiting import eventually

from .conftest import (
    GUARD,
    PUBLIC_URL,
    Daemon,
    create_session,
    event,
    is_online,
    make_device_token,
    register,
    started,
    uplink,
    wait_until,
)


def downlink_url(d: Daemon) -> str:
    return f"/daemon/v1/environments/{d.environment_id}/downlink"


async def test_serves_on_the_bound_port_and_writes_relay_json(
    relay: RunningRelay, http: httpx.AsyncClient, data_dir: Path
) -> None:
    assert relay.port > 0
    assert relay.url == PUBLIC_URL
    info = data_dir / RELAY_INFO_FILENAME
    # The public URL for links; the socket's for this machine's commands.
    local = f"http://127.0.0.1:{relay.port}"
    assert json.loads(info.read_text()) == {"url": PUBLIC_URL, "local": local}
    assert relay.local_url == local
    assert stat.S_IMODE(info.stat().st_mode) == 0o600
    response = await http.get("/")
    assert response.status_code == 200 and "<title>rcd</title>" in response.text
    assert_json_404 = await http.get("/no/such/route")
    assert assert_json_404.json()["error"]["code"] == "not_found"


async def test_url_is_derived_from_the_bound_port_without_public_url(data_dir: Path) -> None:
    config = RelayConfig(data_dir=data_dir, port=0)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            running: RunningRelay = await nursery.start(serve_relay, config)
            assert running.url == f"http://127.0.0.1:{running.port}"
            async with httpx.AsyncClient() as http:
                assert (await http.get(running.url + "/")).status_code == 200
            nursery.cancel_scope.cancel()


async def test_an_idle_connection_outlives_a_clients_pool_and_then_closes(data_dir: Path) -> None:
    # A client (httpx, the daemon) drops an idle pooled connection after 5 s; the relay must
    # keep it longer, or a request can go out on a connection the relay is closing (httpx
    # reports "Server disconnected without sending a response" and does not retry).
    default = RelayConfig(data_dir=data_dir).keep_alive_timeout
    assert default > (httpx.Limits().keepalive_expiry or 0.0) + 10
    # The setting is the one Hypercorn applies: a short one, watched on a raw socket.
    config = RelayConfig(data_dir=data_dir, port=0, keep_alive_timeout=0.5)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            running: RunningRelay = await nursery.start(serve_relay, config)
            stream = await trio.open_tcp_stream("127.0.0.1", running.port)
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: relay\r\n\r\n")
            answered = trio.current_time()
            received = b""
            while True:
                chunk = await stream.receive_some()
                if not chunk:
                    break  # the relay closed the idle connection
                received += chunk
            idle = trio.current_time() - answered
            assert received.startswith(b"HTTP/1.1 200")
            assert 0.4 < idle < 5.0, idle
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_downlink_delivers_directives_and_resumes_after_last_event_id(
    relay: RunningRelay, http: httpx.AsyncClient
) -> None:
    user = await make_device_token(relay.storage)
    d = await register(http, relay.storage)
    with trio.fail_after(GUARD):
        async with sse(http, downlink_url(d), d.headers) as (response, reader):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            # The environment is online as soon as the stream is open.
            assert await is_online(relay.storage, d.environment_id)
            sessions = [
                await create_session(http, user, d.environment_id, prompt=f"task {i}")
                for i in range(3)
            ]
            for i, session in enumerate(sessions, start=1):
                message = await reader.next()
                assert (message.id, message.event) == (str(i), "start_session")
                assert message.data is not None
                start: wire.Directive = wire.decode_json(wire.Directive, message.data)
                assert isinstance(start, wire.StartSession)
                assert start.session_id == session["id"]
                assert start.prompt == f"task {i - 1}"

        # A reconnecting daemon continues exactly after what it saw.
        headers = d.headers | {"last-event-id": "1"}
        async with sse(http, downlink_url(d), headers) as (_, reader):
            assert [(await reader.next()).id for _ in range(2)] == ["2", "3"]
            await http.post(
                f"/api/sessions/{sessions[0]['id']}/messages",
                json={"id": "m", "text": "live"},
                headers=user,
            )
            live = await reader.next()
            assert (live.id, live.event) == ("4", "message")


async def test_an_open_downlink_reads_storage_only_when_there_may_be_news(
    relay: RunningRelay, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Thousands of idle links each send a keep-alive every interval: that must not cost
    # a read of the downlink too. An input posted here reaches the link from its tail.
    reads: list[int] = []
    read_downlink = relay.storage.read_downlink

    async def counting(environment_id: str, link_id: str, after: int, limit: int) -> Any:
        reads.append(after)
        return await read_downlink(environment_id, link_id, after, limit)

    monkeypatch.setattr(relay.storage, "read_downlink", counting)
    user = await make_device_token(relay.storage)
    d = await register(http, relay.storage)
    with trio.fail_after(GUARD):
        async with sse(http, downlink_url(d), d.headers) as (_, reader):
            s = await create_session(http, user, d.environment_id)
            assert (await reader.next()).event == "start_session"
            assert (await reader.next(comments=True)).comment == "keep-alive"
            settled = len(reads)
            for _ in range(3):
                assert (await reader.next(comments=True)).comment == "keep-alive"
            assert len(reads) == settled  # idle: keep-alives only, no reads
            before = len(reads)
            for i in range(5):
                posted = await http.post(
                    f"/api/sessions/{s['id']}/messages",
                    json={"id": f"m{i}", "text": f"hi {i}"},
                    headers=user,
                )
                assert posted.status_code == 202
                message = await reader.next()
                assert (message.id, message.event) == (str(i + 2), "message")
                assert message.data is not None and f'"hi {i}"' in message.data
            for _ in range(2):
                assert (await reader.next(comments=True)).comment == "keep-alive"
    # The start came from storage (the tail knew nothing yet); while idle, no reads; each
    # message came from the tail, then one read found nothing more.
    # Each message came from the tail; at most one read after it found nothing more (from
    # storage alone it would take two: one finding it, one finding nothing).
    assert len(reads) - before <= 5


async def test_uplink_answers_ride_the_downlink_first_at_once_then_with_company(
    relay: RunningRelay, http: httpx.AsyncClient
) -> None:
    """A request's first frame is answered on the downlink at once; later answers wait
    (up to ``ACK_DELAY``) and go in the same write as the next directive, or together."""
    user = await make_device_token(relay.storage)
    d = await register(http, relay.storage)
    url = f"/daemon/v1/environments/{d.environment_id}/uplink"
    with trio.fail_after(GUARD):
        async with sse(http, downlink_url(d), d.headers) as (_, reader):
            s = await create_session(http, user, d.environment_id)
            assert (await reader.next()).event == "start_session"
            session = await d.session_headers(http, s["id"])
            token = session["authorization"].removeprefix("Bearer ")
            frames: trio.MemorySendChannel[bytes]
            frames, body = trio.open_memory_channel[bytes](10)

            def frame(seq: int) -> bytes:
                part = {"session_id": s["id"], "token": token, "events": [started(seq)]}
                if seq > 1:
                    part["events"] = [event(seq, "assistant_text", text=f"t{seq}")]
                return json.dumps({"sessions": [part]}).encode() + b"\n"

            async def stream() -> AsyncIterator[bytes]:
                async for chunk in body:
                    yield chunk

            async def answered(expected: list[int]) -> list[wire.UplinkFrameAck]:
                acks = []
                while len(acks) < len(expected):
                    message = await reader.next()
                    assert message.event == wire.UPLINK_ACK_EVENT, message
                    assert message.data is not None
                    acks.append(wire.decode_json(wire.UplinkFrameAck, message.data))
                assert [a.frame for a in acks] == expected
                return acks

            response: list[httpx.Response] = []

            async def post() -> None:
                headers = d.headers | {
                    "content-type": wire.UPLINK_FRAMES_TYPE,
                    wire.UPLINK_STREAM_HEADER: "req-1",
                }
                response.append(await http.post(url, content=stream(), headers=headers))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(post)
                await frames.send(frame(1))
                [first] = await answered([0])  # at once
                assert (first.stream, first.answer.sessions[0].acked) == ("req-1", 1)
                # Two more: answered together once they have waited (nothing else comes).
                await frames.send(frame(2))
                await frames.send(frame(3))
                await answered([1, 2])
                # One more, then a phone's message: its answer goes with the directive.
                await frames.send(frame(4))

                async def stored() -> bool:
                    events = await relay.storage.read_events(s["id"], 0, 10)
                    return [e.seq for e in events] == [1, 2, 3, 4]

                await eventually(stored, timeout=5, what="the fourth frame stored")
                posted = await http.post(
                    f"/api/sessions/{s['id']}/messages",
                    json={"id": "m1", "text": "hi"},
                    headers=user,
                )
                assert posted.status_code == 202, posted.text
                await answered([3])
                directive = await reader.next()
                assert (directive.id, directive.event) == ("2", "message")
                await frames.aclose()
            [done] = response
            assert done.status_code == 200, done.text
            frames_answered = wire.decode(wire.UplinkFrames, done.json()).frames
            assert [f.sessions[0].acked for f in frames_answered] == [1, 2, 3, 4]


async def test_a_new_downlink_replaces_the_old_one(
    relay: RunningRelay, http: httpx.AsyncClient
) -> None:
    d = await register(http, relay.storage)
    user = await make_device_token(relay.storage)
    with trio.fail_after(GUARD):
        async with sse(http, downlink_url(d), d.headers) as (_, old):
            async with sse(http, downlink_url(d), d.headers) as (_, new):
                # The ghost's stream ends promptly, long before any keep-alive timeout.
                await old.expect_end()
                assert await is_online(relay.storage, d.environment_id)
                await create_session(http, user, d.environment_id)
                assert (await new.next()).event == "start_session"
            await wait_until(lambda: _offline(relay, d), what="the environment to go offline")


async def _offline(relay: RunningRelay, d: Daemon) -> bool:
    return not await is_online(relay.storage, d.environment_id)


async def test_online_exactly_while_the_downlink_is_open(
    relay: RunningRelay, http: httpx.AsyncClient
) -> None:
    d = await register(http, relay.storage)
    user = await make_device_token(relay.storage)

    async def listed_online() -> bool:
        envs = (await http.get("/api/environments", headers=user)).json()["environments"]
        return bool(envs[0]["online"])

    assert not await listed_online()
    with trio.fail_after(GUARD):
        async with sse(http, downlink_url(d), d.headers):
            assert await listed_online()
        await wait_until(lambda: _not(listed_online), what="the environment listed offline")
        async with sse(http, downlink_url(d), d.headers):
            assert await listed_online()
            # Goodbye takes it offline and ends the stream from the relay's side.
            goodbye = f"/daemon/v1/environments/{d.environment_id}/goodbye"
            assert (await http.post(goodbye, headers=d.headers)).status_code == 204
            assert not await listed_online()


async def _not(predicate: Any) -> bool:
    return not await predicate()


async def test_goodbye_ends_the_open_downlink(relay: RunningRelay, http: httpx.AsyncClient) -> None:
    d = await register(http, relay.storage)
    with trio.fail_after(GUARD):
        async with sse(http, downlink_url(d), d.headers) as (_, reader):
            goodbye = f"/daemon/v1/environments/{d.environment_id}/goodbye"
            await http.post(goodbye, headers=d.headers)
            await reader.expect_end()


async def test_idle_streams_get_keepalives(relay: RunningRelay, http: httpx.AsyncClient) -> None:
    d = await register(http, relay.storage)
    with trio.fail_after(GUARD):
        async with sse(http, downlink_url(d), d.headers) as (_, reader):
            message = await reader.next(comments=True)
            assert message.comment == "keep-alive"


async def online_session(
    relay: RunningRelay, http: httpx.AsyncClient
) -> tuple[Daemon, dict[str, str], dict[str, Any]]:
    """A registered environment marked online, a device token, and one session on it."""
    d = await register(http, relay.storage)
    await relay.storage.open_downlink(d.environment_id, "link_test")
    user = await make_device_token(relay.storage)
    return d, user, await create_session(http, user, d.environment_id)


async def test_client_sse_resumes_after_last_event_id_and_goes_live(
    relay: RunningRelay, http: httpx.AsyncClient
) -> None:
    d, user, s = await online_session(relay, http)
    url = f"/api/sessions/{s['id']}/events"
    backlog = [started(1)] + [event(i, "assistant_text", text=f"t{i}") for i in (2, 3)]
    await uplink(http, d, s["id"], *backlog)

    with trio.fail_after(GUARD):
        async with sse(http, url, user | {"last-event-id": "2"}) as (response, reader):
            assert response.status_code == 200
            first = await reader.next()
            assert (first.id, first.event) == ("3", "assistant_text")
            assert first.data is not None and json.loads(first.data) == backlog[2]

            live = event(4, "status", state="busy")
            await uplink(http, d, s["id"], live)
            message = await reader.next()
            assert (message.id, message.event) == ("4", "status")
            assert message.data is not None and json.loads(message.data) == live

        # Without Last-Event-ID, ?after= decides; Last-Event-ID wins over it.
        async with sse(http, url + "?after=1", user) as (_, reader):
            assert (await reader.next()).id == "2"
        async with sse(http, url + "?after=1", user | {"last-event-id": "3"}) as (_, reader):
            assert (await reader.next()).id == "4"


async def test_live_listeners_of_a_session_see_exactly_the_stored_log(
    relay: RunningRelay, http: httpx.AsyncClient
) -> None:
    # Three streams follow one session (served from its shared tail once live); the
    # daemon resends a stored seq with other content and skips ahead. Every listener
    # sees the stored log, in order, once, and what storage refused never.
    d, user, s = await online_session(relay, http)
    url = f"/api/sessions/{s['id']}/events"
    await uplink(http, d, s["id"], started(1))

    async def follow(after: int, count: int, seen: list[tuple[str, Any]]) -> None:
        async with sse(http, url, user | {"last-event-id": str(after)}) as (_, reader):
            while len(seen) < count:
                message = await reader.next()
                assert message.data is not None
                seen.append((message.id or "", json.loads(message.data)))

    listeners: list[list[tuple[str, Any]]] = [[], [], []]
    text = [event(i, "assistant_text", text=f"t{i}") for i in range(2, 9)]
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            for seen in listeners:
                nursery.start_soon(follow, 1, 7, seen)
            await trio.testing.wait_all_tasks_blocked()
            assert (await uplink(http, d, s["id"], text[0], text[1])).json() == {"acked": 3}
            forged = event(3, "assistant_text", text="not what was stored")
            assert (await uplink(http, d, s["id"], forged, text[2])).json() == {"acked": 4}
            # A gap: nothing stored, nothing shown.
            assert (await uplink(http, d, s["id"], text[4])).json() == {"acked": 4}
            assert (await uplink(http, d, s["id"], *text[3:])).json() == {"acked": 8}
    stored = [(str(e["seq"]), e) for e in text]
    assert listeners == [stored, stored, stored]
    # A listener that joins later catches up from storage and gets the same.
    late: list[tuple[str, Any]] = []
    with trio.fail_after(GUARD):
        await follow(1, 7, late)
    assert late == stored


async def test_client_sse_refusals_are_json(relay: RunningRelay, http: httpx.AsyncClient) -> None:
    user = await make_device_token(relay.storage)
    with trio.fail_after(GUARD):
        async with sse(http, "/api/sessions/ses_nope/events", user) as (response, _):
            await response.aread()
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"
        async with sse(http, "/api/sessions/ses_nope/events", {}) as (response, _):
            await response.aread()
            assert response.status_code == 401


async def test_a_restart_forgets_every_link(data_dir: Path) -> None:
    config = RelayConfig(data_dir=data_dir, port=0)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            running: RunningRelay = await nursery.start(serve_relay, config)
            async with httpx.AsyncClient(base_url=running.url) as http:
                d = await register(http, running.storage)
            await running.storage.open_downlink(d.environment_id, "link_from_before_a_crash")
            assert await is_online(running.storage, d.environment_id)
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:
            running = await nursery.start(serve_relay, config)
            assert not await is_online(running.storage, d.environment_id)
            nursery.cancel_scope.cancel()


async def test_plain_http_off_loopback_is_refused(data_dir: Path) -> None:
    config = RelayConfig(data_dir=data_dir, host="0.0.0.0", port=0)
    with pytest.raises(RelayError, match="--insecure-http"):
        await serve_relay(config)
    assert not data_dir.exists()  # refused before touching anything
    with pytest.raises(RelayError, match="both a certificate and a key"):
        await serve_relay(attrs.evolve(config, tls_cert=data_dir / "cert.pem"))


async def test_insecure_http_off_loopback_is_allowed_when_asked(data_dir: Path) -> None:
    config = RelayConfig(data_dir=data_dir, host="0.0.0.0", port=0, insecure_http=True)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            running: RunningRelay = await nursery.start(serve_relay, config)
            async with httpx.AsyncClient() as http:
                response = await http.get(f"http://127.0.0.1:{running.port}/")
                assert response.status_code == 200
            nursery.cancel_scope.cancel()


async def test_tls(data_dir: Path, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("this test needs openssl to make a certificate: apt-get install openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await trio.run_process(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    config = RelayConfig(data_dir=data_dir, host="0.0.0.0", port=0, tls_cert=cert, tls_key=key)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            running: RunningRelay = await nursery.start(serve_relay, config)
            assert running.url.startswith("https://")
            async with httpx.AsyncClient(verify=False) as http:
                response = await http.get(f"https://127.0.0.1:{running.port}/")
                assert response.status_code == 200
                # Cookies are Secure over TLS.
                link = await trio.to_thread.run_sync(admin.create_login_link, data_dir)
                assert link.startswith(running.url)
                login = await http.get(
                    link.replace(running.url, f"https://127.0.0.1:{running.port}")
                )
                assert login.status_code == 303
                assert "secure" in login.headers["set-cookie"].lower()
                plain = f"http://127.0.0.1:{running.port}/"
                with pytest.raises(httpx.HTTPError):
                    await http.get(plain)
            nursery.cancel_scope.cancel()


async def test_revoking_a_token_ends_its_open_stream(
    relay: RunningRelay, http: httpx.AsyncClient, data_dir: Path
) -> None:
    d = await register(http, relay.storage)
    await relay.storage.open_downlink(d.environment_id, "link_test")
    user = await make_device_token(relay.storage, "phone")
    s = await create_session(http, user, d.environment_id)
    with trio.fail_after(GUARD):
        async with sse(http, f"/api/sessions/{s['id']}/events", user) as (_, reader):
            await uplink(http, d, s["id"], started(1))
            assert (await reader.next()).id == "1"
            await trio.to_thread.run_sync(admin.revoke_device_token, data_dir, "phone")
            await reader.expect_end()


async def test_an_input_reaches_the_open_downlink_before_its_answer_goes_out(
    relay: RunningRelay, http: httpx.AsyncClient
) -> None:
    """The daemon gets a client's message before the client hears it was queued: the moment
    the 202 is on the client's connection, the directive is on the downlink's already.
    (Both connections are raw sockets, looked at between every scheduling step.)"""
    user = await make_device_token(relay.storage)
    d = await register(http, relay.storage)
    downlink = socket.create_connection(("127.0.0.1", relay.port))
    client = socket.create_connection(("127.0.0.1", relay.port))
    for sock in (downlink, client):
        sock.setblocking(False)

    def take(sock: socket.socket) -> bytes:
        try:
            return sock.recv(65536)
        except BlockingIOError:
            return b""

    async def read_until(sock: socket.socket, needle: bytes) -> bytes:
        received = b""
        with trio.fail_after(GUARD):
            while needle not in received:
                received += take(sock)
                await trio.lowlevel.checkpoint()
        return received

    def request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
        lines = [
            f"{method} {path} HTTP/1.1",
            "Host: relay",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        if body:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        return "\r\n".join(lines).encode() + b"\r\n\r\n" + body

    try:
        downlink.sendall(
            request("GET", downlink_url(d), {"Accept": "text/event-stream", **d.headers})
        )
        await read_until(downlink, b"HTTP/1.1 200")
        s = await create_session(http, user, d.environment_id)
        await read_until(downlink, b"event: start_session")
        for i in range(30):
            body = json.dumps({"id": f"m{i}", "text": f"hi {i}"}).encode()
            client.sendall(request("POST", f"/api/sessions/{s['id']}/messages", user, body))
            answer = await read_until(client, b"\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 202")
            # Looked at right after the answer came: the message must be here already.
            assert f'"hi {i}"'.encode() in take(downlink), f"message {i} was not sent first"
            if not answer.endswith(b"}"):
                await read_until(client, b"}")  # the rest of the answer
    finally:
        downlink.close()
        client.close()


def held_body(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[AsyncIterator[bytes], trio.Event, trio.Event]:
    """A request body that sends its first half, then the rest once ``finish`` is set;
    ``reading`` is set once the relay's handler has started reading a body (the next
    request's: it is in flight then)."""
    reading, finish = trio.Event(), trio.Event()
    decode_body = client_api.decode_body

    async def noted(*args: Any, **kwargs: Any) -> Any:
        reading.set()
        return await decode_body(*args, **kwargs)

    monkeypatch.setattr(client_api, "decode_body", noted)

    async def body() -> AsyncIterator[bytes]:
        yield b'{"title": "re'
        await finish.wait()
        yield b'named"}'

    return body(), reading, finish


async def test_a_graceful_stop_ends_live_streams_and_lets_a_request_in_flight_finish(
    config: RelayConfig, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the relay is told to stop, its live streams end cleanly at once (the daemon's
    environment goes offline) while a request already under way still gets its answer;
    then serve_relay returns by itself."""
    stop = trio.Event()
    renamed: list[httpx.Response] = []
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            running: RunningRelay = await nursery.start(
                partial(serve_relay, config, shutdown_trigger=stop.wait)
            )
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.port}") as http,
                trio.open_nursery() as requests,
            ):
                user = await make_device_token(running.storage)
                d = await register(http, running.storage)
                async with sse(http, downlink_url(d), d.headers) as (_, downlink):
                    session = await create_session(http, user, d.environment_id)
                    assert (await downlink.next()).event == "start_session"
                    url = f"/api/sessions/{session['id']}"
                    body, reading, finish = held_body(monkeypatch)
                    async with sse(http, f"{url}/events", user) as (_, events):

                        async def rename() -> None:
                            renamed.append(await http.patch(url, content=body, headers=user))

                        requests.start_soon(rename)
                        await reading.wait()
                        stop.set()
                        await downlink.expect_end()
                        await events.expect_end()
                        finish.set()
        # The nursery is done: serve_relay returned once the answer had gone out.
    assert [r.status_code for r in renamed] == [200]
    assert renamed[0].json()["title"] == "renamed"
    async with SqliteStorage.in_data_dir(data_dir) as storage:
        assert not await is_online(storage, d.environment_id)


async def test_a_signal_stops_the_relay_gracefully_and_a_second_one_at_once(
    config: RelayConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rcd relay``: SIGTERM (or SIGINT) stops it gracefully; while a request in flight
    holds that stop (for up to its deadline, a long one here), a second signal ends it."""
    config = attrs.evolve(config, stop_timeout=10 * GUARD)
    stopped = trio.Event()
    failed: list[Exception] = []

    async def relay(task_status: trio.TaskStatus[RunningRelay]) -> None:
        await serve_until_signalled(config, task_status=task_status)
        stopped.set()

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            running: RunningRelay = await nursery.start(relay)
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.port}") as http,
                trio.open_nursery() as requests,
            ):
                user = await make_device_token(running.storage)
                d = await register(http, running.storage)
                await running.storage.open_downlink(d.environment_id, "link_test")
                session = await create_session(http, user, d.environment_id)
                body, reading, finish = held_body(monkeypatch)

                async def rename() -> None:
                    url = f"/api/sessions/{session['id']}"
                    try:
                        await http.patch(url, content=body, headers=user)
                    except httpx.TransportError as exc:
                        failed.append(exc)

                requests.start_soon(rename)
                await reading.wait()
                signal.raise_signal(signal.SIGTERM)
                await running.hub.stopping.wait()  # the graceful stop has begun,
                await trio.testing.wait_all_tasks_blocked()
                assert not stopped.is_set()  # and waits for the request in flight
                signal.raise_signal(signal.SIGTERM)
                await stopped.wait()  # well before the stop's deadline
                finish.set()
    # The request was cut off.
    assert len(failed) == 1
