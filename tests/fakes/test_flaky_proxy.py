"""The flaky proxy fake, over real loopback sockets: forwarding, each fault, its counters,
and that stopping it leaves no socket behind. Real clock, under ``fail_after`` guards.

(Over 400 lines on purpose: one test per fault of the one fake.)
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import attrs
import httpx
import pytest
import trio
import trio.testing
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from testkit.fakes.flaky_proxy import FlakyProxy

GUARD_S = 5  # per test; everything here takes well under a second unless it is broken
QUIET_S = 0.5  # how long "nothing arrives" is watched for


@attrs.define(eq=False)
class Backend:
    """A raw TCP server standing in for the relay: sends ``greeting`` on connect, then echoes.

    Records how each connection ended: ``"eof"`` (the peer closed) or ``"reset"``.
    """

    greeting: bytes = b""
    port: int = 0
    connections: int = 0
    received: int = 0
    ends: list[str] = attrs.field(factory=list)
    _changed: trio.Event = attrs.field(factory=trio.Event)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            listeners: list[trio.SocketListener] = await nursery.start(
                partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
            )
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started(self.port)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        end = "eof"
        try:
            async with stream:
                if self.greeting:
                    await stream.send_all(self.greeting)
                while data := await stream.receive_some(65536):
                    self.received += len(data)
                    await stream.send_all(data)
        except trio.BrokenResourceError:
            end = "reset"
        self.ends.append(end)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_ends(self, count: int) -> list[str]:
        """Wait until ``count`` connections have ended; their ends, in order."""
        while len(self.ends) < count:
            await self._changed.wait()
        return self.ends


@asynccontextmanager
async def proxied(greeting: bytes = b"") -> AsyncIterator[tuple[FlakyProxy, Backend]]:
    """A backend and a proxy to it, both stopped on exit; the client connections
    ``connect`` opened meanwhile are closed then too, even when a test fails half-way (no
    ResourceWarning at the end of the run). (A cleanup fixture would not do: pytest-trio
    never runs an async ``autouse`` fixture.)"""
    backend = Backend(greeting=greeting)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(backend.run)
            proxy = FlakyProxy(("127.0.0.1", backend.port))
            await nursery.start(proxy.run)
            yield proxy, backend
            nursery.cancel_scope.cancel()
    finally:
        for stream in _clients:
            stream.socket.close()
        _clients.clear()


_clients: list[trio.SocketStream] = []


async def connect(proxy: FlakyProxy) -> trio.SocketStream:
    """A client connection to the proxy; closed when ``proxied`` ends if the test does
    not close it."""
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    _clients.append(stream)
    return stream


async def receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


async def round_trip(stream: trio.SocketStream, data: bytes) -> bytes:
    await stream.send_all(data)
    return await receive_exactly(stream, len(data))


async def read_until_closed(stream: trio.SocketStream) -> tuple[bytes, str]:
    """Everything the stream still delivers, and how it ended: ``"eof"`` or ``"reset"``."""
    data = bytearray()
    try:
        while chunk := await stream.receive_some(65536):
            data += chunk
    except trio.BrokenResourceError:
        return bytes(data), "reset"
    return bytes(data), "eof"


async def nothing_arrives(*streams: trio.SocketStream) -> bool:
    """True if none of ``streams`` delivers a byte (or an EOF) within ``QUIET_S``."""
    arrived: list[bytes] = []

    async def watch(stream: trio.SocketStream) -> None:
        arrived.append(await stream.receive_some(1))

    with trio.move_on_after(QUIET_S):
        async with trio.open_nursery() as nursery:
            for stream in streams:
                nursery.start_soon(watch, stream)
    return not arrived


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_bytes_pass_both_ways_with_half_close() -> None:
    with trio.fail_after(GUARD_S):
        async with proxied() as (proxy, backend):
            assert proxy.url == f"http://127.0.0.1:{proxy.port}"
            client = await connect(proxy)
            assert await round_trip(client, b"hello") == b"hello"

            # 2 MiB each way, much more than the proxy and the kernel buffer: back-pressure
            # holds it together, and the order survives the chunking.
            payload = bytes(range(256)) * 8192
            echoed = bytearray()

            async def read_back() -> None:
                echoed.extend(await receive_exactly(client, len(payload)))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_back)
                await client.send_all(payload)
            assert echoed == payload

            # A half-close travels through: the backend sees EOF, closes, the client sees EOF.
            await client.send_eof()
            assert await read_until_closed(client) == (b"", "eof")
            assert await backend.wait_ends(1) == ["eof"]

            await trio.testing.wait_all_tasks_blocked()
            stats = proxy.statistics()
            assert stats.bytes_upstream == stats.bytes_downstream == 5 + len(payload)
            assert (stats.accepted, stats.open, stats.cut) == (1, 0, 0)


async def test_cut_all_resets_both_sides_and_new_connections_work() -> None:
    with trio.fail_after(GUARD_S):
        async with proxied() as (proxy, backend):
            first, second = await connect(proxy), await connect(proxy)
            for client in (first, second):
                assert await round_trip(client, b"ping") == b"ping"
            assert proxy.statistics().open == 2

            proxy.cut_all()
            stats = proxy.statistics()
            assert (stats.open, stats.cut) == (0, 2)
            for client in (first, second):
                assert await read_until_closed(client) == (b"", "reset")
            assert await backend.wait_ends(2) == ["reset", "reset"]

            third = await connect(proxy)
            assert await round_trip(third, b"again") == b"again"
            stats = proxy.statistics()
            assert (stats.accepted, stats.open, stats.cut) == (3, 1, 2)


async def test_black_hole_hangs_new_and_freezes_open_connections_until_heal() -> None:
    with trio.fail_after(GUARD_S):
        async with proxied() as (proxy, backend):
            before = await connect(proxy)
            assert await round_trip(before, b"one") == b"one"

            proxy.black_hole(None)
            during = await connect(proxy)  # accepted: a hang, not a refusal
            await before.send_all(b"two")
            await during.send_all(b"three")
            assert await nothing_arrives(before, during)
            stats = proxy.statistics()
            assert stats.black_holed
            assert (stats.accepted, stats.open, stats.bytes_upstream) == (2, 2, 3)
            assert backend.connections == 1  # "during" was never forwarded

            proxy.heal()
            after = await connect(proxy)
            assert await round_trip(after, b"four") == b"four"
            # Frozen, not lost: what was held back goes through, in order, on both.
            assert await receive_exactly(before, 3) == b"two"
            assert await receive_exactly(during, 5) == b"three"
            assert not proxy.statistics().black_holed


async def test_black_hole_with_a_duration_ends_by_itself() -> None:
    with trio.fail_after(GUARD_S):
        async with proxied() as (proxy, _):
            client = await connect(proxy)
            proxy.black_hole(0.3)
            start = trio.current_time()
            assert await round_trip(client, b"late") == b"late"
            assert trio.current_time() - start >= 0.3
            assert not proxy.statistics().black_holed


async def test_refuse_refuses_new_connections_only() -> None:
    with trio.fail_after(GUARD_S):
        async with proxied() as (proxy, _):
            port = proxy.port
            open_before = await connect(proxy)

            proxy.refuse(True)
            assert not proxy.statistics().listening
            with trio.socket.socket() as sock, pytest.raises(ConnectionRefusedError):
                await sock.connect(("127.0.0.1", port))
            assert await round_trip(open_before, b"still here") == b"still here"

            proxy.refuse(False)
            assert proxy.port == port
            assert proxy.statistics().listening
            client = await connect(proxy)
            assert await round_trip(client, b"back") == b"back"


async def test_refuse_before_run_reserves_a_port_that_listens_once_healed() -> None:
    with trio.fail_after(GUARD_S):
        async with proxied() as (running, _), trio.open_nursery() as nursery:
            proxy = FlakyProxy(running.target)
            proxy.refuse(True)
            port = await nursery.start(proxy.run)
            assert not proxy.statistics().listening
            with trio.socket.socket() as sock, pytest.raises(ConnectionRefusedError):
                await sock.connect(("127.0.0.1", port))
            proxy.heal()
            client = await connect(proxy)
            assert proxy.port == port
            assert await round_trip(client, b"hi") == b"hi"
            nursery.cancel_scope.cancel()


async def test_delay_adds_latency_each_way_and_heal_releases_waiting_chunks() -> None:
    delay = 0.15
    with trio.fail_after(GUARD_S):
        async with proxied() as (proxy, _):
            client = await connect(proxy)
            assert await round_trip(client, b"warm") == b"warm"

            proxy.delay(delay)
            start = trio.current_time()
            assert await round_trip(client, b"slow") == b"slow"
            assert trio.current_time() - start >= 2 * delay - 1e-6

            proxy.delay(60)
            await client.send_all(b"stuck")
            await trio.testing.wait_all_tasks_blocked()
            proxy.heal()
            with trio.fail_after(1):
                assert await receive_exactly(client, 5) == b"stuck"


async def test_cut_every_cuts_each_connection_after_exactly_n_bytes() -> None:
    with trio.fail_after(GUARD_S):
        async with proxied(greeting=b"x" * 10_000) as (proxy, backend):
            proxy.cut_every(3000)
            for _ in range(2):
                client = await connect(proxy)
                assert await read_until_closed(client) == (b"x" * 3000, "reset")
            assert await backend.wait_ends(2) == ["reset", "reset"]
            stats = proxy.statistics()
            assert (stats.cut, stats.bytes_downstream, stats.open) == (2, 6000, 0)


async def test_cut_every_counts_both_directions_together() -> None:
    with trio.fail_after(GUARD_S):
        async with proxied() as (proxy, backend):
            proxy.cut_every(250)
            client = await connect(proxy)
            assert await round_trip(client, b"a" * 100) == b"a" * 100  # 200 forwarded
            await client.send_all(b"b" * 100)  # only 50 of these fit
            assert await read_until_closed(client) == (b"", "reset")
            assert await backend.wait_ends(1) == ["reset"]
            assert backend.received == 150
            stats = proxy.statistics()
            assert (stats.bytes_upstream, stats.bytes_downstream, stats.cut) == (150, 100, 1)

            proxy.cut_every(None)
            client2 = await connect(proxy)
            assert await round_trip(client2, b"c" * 300) == b"c" * 300


async def test_retarget_and_an_unreachable_target() -> None:
    with trio.fail_after(GUARD_S):
        async with proxied() as (proxy, first_backend), trio.open_nursery() as nursery:
            old = await connect(proxy)
            assert await round_trip(old, b"old") == b"old"

            second_backend = Backend()
            await nursery.start(second_backend.run)
            proxy.retarget(second_backend.port)
            new = await connect(proxy)
            assert await round_trip(new, b"new") == b"new"
            assert await round_trip(old, b"old again") == b"old again"
            assert (first_backend.connections, second_backend.connections) == (1, 1)

            # A port nothing listens on: the client's connection is reset.
            with trio.socket.socket() as spare:
                await spare.bind(("127.0.0.1", 0))
                dead_port = spare.getsockname()[1]
                proxy.retarget(dead_port)
                doomed = await connect(proxy)
                assert await read_until_closed(doomed) == (b"", "reset")
            stats = proxy.statistics()
            assert (stats.accepted, stats.open, stats.upstream_failures) == (3, 2, 1)
            assert stats.target == ("127.0.0.1", dead_port)
            nursery.cancel_scope.cancel()


async def test_stopping_closes_every_socket_whatever_the_faults() -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.fail("this test counts open files through /proc/self/fd (Linux)")
    with trio.fail_after(GUARD_S):
        fds_before = open_fds()
        backend = Backend()
        async with trio.open_nursery() as outer:
            await outer.start(backend.run)
            proxy = FlakyProxy(("127.0.0.1", backend.port))
            async with trio.open_nursery() as nursery:
                await nursery.start(proxy.run)
                cut = await connect(proxy)
                assert await round_trip(cut, b"up") == b"up"
                proxy.cut_all()
                flowing, delayed = await connect(proxy), await connect(proxy)
                assert await round_trip(flowing, b"up") == b"up"
                assert await round_trip(delayed, b"up") == b"up"
                proxy.delay(60)
                await delayed.send_all(b"held back")  # read by the proxy, waiting to go on
                proxy.black_hole(None)
                held = await connect(proxy)  # accepted, waiting for the black hole to end
                proxy.refuse(True)  # the port is now held by a non-listening socket
                await trio.testing.wait_all_tasks_blocked()
                assert proxy.statistics().open == 3
                nursery.cancel_scope.cancel()
            assert proxy.statistics().open == 0
            # The proxy closed its side of everything: an ordinary close on stopping.
            assert await read_until_closed(cut) == (b"", "reset")
            for client in (flowing, delayed, held):
                assert await read_until_closed(client) == (b"", "eof")
            for client in (cut, flowing, delayed, held):
                await client.aclose()
            outer.cancel_scope.cancel()
        assert open_fds() == fds_before


async def test_http_through_the_proxy_with_hypercorn_and_httpx() -> None:
    """The way the daemon meets it: an SSE stream dropped by a cut, a request hanging in a
    black hole, and the next request fine once healed."""

    async def ping(request: Request) -> PlainTextResponse:
        return PlainTextResponse("pong")

    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            n = 0
            while True:
                yield f"data: {n}\n\n"
                n += 1
                await trio.sleep(0.05)  # clock: a fake upstream streams at its own pace

        return StreamingResponse(stream(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/ping", ping), Route("/events", events)])
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.0

    async def serving(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(app, config, task_status=task_status)  # type: ignore[arg-type]

    with trio.fail_after(GUARD_S):
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(serving)
            proxy = FlakyProxy(("127.0.0.1", int(binds[0].rsplit(":", 1)[1])))
            await nursery.start(proxy.run)
            async with httpx.AsyncClient(base_url=proxy.url) as client:
                assert (await client.get("/ping")).text == "pong"

                lines: list[str] = []
                with pytest.raises(httpx.TransportError):  # RemoteProtocolError or ReadError
                    async with client.stream("GET", "/events") as response:
                        async for line in response.aiter_lines():
                            lines.append(line)
                            if line == "data: 1":
                                proxy.cut_all()
                assert lines[:3] == ["data: 0", "", "data: 1"]

                proxy.black_hole(None)
                with pytest.raises(httpx.ReadTimeout):
                    await client.get("/ping", timeout=httpx.Timeout(5, read=QUIET_S))
                proxy.heal()
                assert (await client.get("/ping")).text == "pong"
            nursery.cancel_scope.cancel()
