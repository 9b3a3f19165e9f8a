"""Unread bodies: what 2,000 connections that each present a bogus credential and most of a
1 MiB body cost the relay.

The relay runs as its own process (``python -m daemon relay``); raw trio sockets (an httpx
client per connection would cost more than the connection) send each request's head with
a bogus token or cookie on one of the routes that take a body, then as much of the body as
the relay takes, and wait for the answer. The relay must answer 401 before reading the body
and close the connection, so its RSS (sampled every 20 ms from /proc) stays near where it
started, while a device-token client's ``GET /api/sessions`` keeps working. Before the
relay checked credentials first, the same load took it from 50 MB to 2.2 GB.

:func:`measure_unread_bodies` is also what ``tests/relay/test_unread_bodies.py`` runs.
"""

from __future__ import annotations

import errno
import tempfile
import time
from pathlib import Path

import attrs
import httpx
import trio

from .relayhttp import MIB, start_relay_process
from .stats import Check, Figure, keep_logs, raise_nofile, rss_kib, verdict

__all__ = [
    "ATTACKS",
    "CHUNK",
    "DECLARED",
    "UnreadBodiesResult",
    "head",
    "measure_unread_bodies",
    "read_status",
]

#: The body each connection declares (under the client body limit) and how much it sends.
DECLARED = 1024 * 1024
SENT = 1_000_000
CHUNK = b"x" * 65536
#: The most the relay may grow by, in KiB.
GROWTH_LIMIT_KIB = 100 * 1024

#: A bogus credential on each route that takes a body.
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


async def _connect(port: int) -> trio.SocketStream:
    # Many connects at once may overflow the listen backlog: try again a little later.
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


async def _attack(
    port: int, index: int, statuses: list[int | None], opened: trio.Semaphore, hold: trio.Event
) -> None:
    """One connection: the head with a bogus credential, then as much of the body as the
    relay takes while waiting for its answer; then hold the connection until ``hold``."""
    method, path, credential = ATTACKS[index % len(ATTACKS)]
    async with opened:
        stream = await _connect(port)
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


@attrs.frozen(kw_only=True)
class UnreadBodiesResult:
    connections: int
    #: Relay RSS (KiB) before, at its peak while the connections were open, and after.
    rss_start: int
    rss_peak: int
    rss_after: int
    #: How many connections got each status (None: closed before the client read one).
    statuses: dict[int | None, int]
    #: Seconds from the first connection to the last answer.
    seconds: float
    get_idle: Figure
    get_loaded: Figure

    @property
    def grown_kib(self) -> int:
        return self.rss_peak - self.rss_start

    @property
    def ok(self) -> bool:
        answered = self.statuses.get(401, 0) + self.statuses.get(None, 0)
        return self.grown_kib <= GROWTH_LIMIT_KIB and answered == self.connections


async def _gets(client: httpx.AsyncClient, count: int, pause: float = 0.0) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        (await client.get("/api/sessions")).raise_for_status()
        samples.append((time.perf_counter() - started) * 1000)
        await trio.sleep(pause)
    return samples


async def measure_unread_bodies(
    connections: int = 2000, *, root: Path | None = None
) -> UnreadBodiesResult:
    """Run the load against a fresh relay process (in ``root``, else a temp dir)."""
    from relay import admin

    raise_nofile()  # the relay inherits it: the connections need twice as many files here
    with tempfile.TemporaryDirectory(prefix="rcd-unread-") as tmp:
        where = root or Path(tmp)
        relay = await start_relay_process(where)
        try:
            token = await trio.to_thread.run_sync(
                admin.create_device_token, relay.data_dir, "bench"
            )
            async with httpx.AsyncClient(
                base_url=relay.url, headers={"authorization": f"Bearer {token}"}, timeout=30
            ) as legit:
                await _gets(legit, 10)  # warm-up
                get_idle = await _gets(legit, 40)
                start = rss_kib(relay.pid)
                peak = start
                statuses: list[int | None] = []
                loaded: list[float] = []
                hold = trio.Event()
                began = time.perf_counter()
                with trio.fail_after(180):
                    async with trio.open_nursery() as nursery:

                        async def sample() -> None:
                            nonlocal peak
                            while True:
                                peak = max(peak, rss_kib(relay.pid))
                                await trio.sleep(0.02)

                        async def round_trips() -> None:
                            while True:
                                loaded.extend(await _gets(legit, 1, pause=0.1))

                        nursery.start_soon(sample)
                        nursery.start_soon(round_trips)
                        opened = trio.Semaphore(200)
                        async with trio.open_nursery() as attackers:
                            for i in range(connections):
                                attackers.start_soon(_attack, relay.port, i, statuses, opened, hold)
                            while len(statuses) < connections:
                                await trio.sleep(0.05)
                            seconds = time.perf_counter() - began
                            await trio.sleep(1.0)  # held a moment longer, still sampled
                            hold.set()
                        nursery.cancel_scope.cancel()
                await trio.sleep(0.5)
                rss_after = rss_kib(relay.pid)
                loaded.extend(await _gets(legit, 5))
        except BaseException:
            keep_logs(where, "unread-bodies")
            raise
        finally:
            await relay.stop()
    return UnreadBodiesResult(
        connections=connections,
        rss_start=start,
        rss_peak=peak,
        rss_after=rss_after,
        statuses={s: statuses.count(s) for s in set(statuses)},
        seconds=seconds,
        get_idle=Figure(
            name="baseline: GET /api/sessions, no load", unit="ms", samples=tuple(get_idle)
        ),
        get_loaded=Figure(
            name=f"GET /api/sessions during the {connections} connections",
            unit="ms",
            samples=tuple(loaded),
        ),
    )


def checks(result: UnreadBodiesResult) -> list[Check]:
    return [
        Check(
            name=f"unread bodies: {result.connections} bogus credentials with 1 MiB bodies",
            target="relay RSS ≤ +100 MiB",
            measured=f"+{result.grown_kib / MIB:.0f} MiB "
            f"({result.rss_start / MIB:.0f} → {result.rss_peak / MIB:.0f} MiB)",
            ok=result.ok,
            limit="see Unread bodies",
        )
    ]


def section(result: UnreadBodiesResult) -> list[str]:
    refused = result.statuses.get(401, 0)
    reset = result.statuses.get(None, 0)
    return [
        f"## Unread bodies ({result.connections} connections, each a bogus credential and "
        f"{DECLARED // 1024} KiB declared, relay in its own process)",
        "",
        "| relay RSS | MiB |",
        "|---|---|",
        f"| at start | {result.rss_start / MIB:.1f} |",
        f"| peak, with the {result.connections} connections | {result.rss_peak / MIB:.1f} |",
        f"| after they closed | {result.rss_after / MIB:.1f} |",
        "",
        "| figure | median | p99 | samples |",
        "|---|---|---|---|",
        result.get_idle.row(),
        result.get_loaded.row(),
        "",
        f"- growth: **+{result.grown_kib / MIB:.0f} MiB** — target ≤ +100 MiB: "
        + verdict(result.ok),
        f"- answers: {refused} answered 401 before the body; {reset} reset by the relay's close "
        f"before the client read its 401 (the unread body was still arriving); all in "
        f"{result.seconds:.1f} s",
        "",
        "Each connection sends its head, then up to 1,000,000 bytes of its body while it waits",
        "for the answer. The relay checks the credential before it reads the body, answers",
        "401 and closes; hypercorn holds at most one 64 KiB chunk of a body ahead of the app",
        "(`max_app_queue_size = 1`), and what is left unread is dropped with the answer.",
        "Before, the relay read each body up to its limit first: 2,000 such connections took",
        "it from 50 MB to 2.2 GB.",
        "",
    ]
