"""Event throughput into one session: events appended through the daemon uplink route
(``POST /daemon/v1/sessions/{id}/events``) and delivered to every SSE listener of the
session (``GET /api/sessions/{id}/events``, ``Accept: text/event-stream``).

The relay runs as its own process (``python -m daemon relay``). This process plays the
daemon — registered, its downlink open, a session token minted per session — and the
listeners, all over raw trio sockets speaking minimal HTTP/1.1, so the clients stay cheap
next to the relay. The writer behaves like the daemon's uplink: one request in flight per
session, ``batch`` events per request (``assistant_text`` of ~100 characters). Each trial
uses a fresh session with 0, 1 or 10 listeners connected before the first append, and
ends when every listener has received the last event; events/s = events / that time. The
0-listener figure (append only, until the last answer) and the 1-listener figure are the
baselines; the configurations rotate trial by trial so all see the same machine noise.
The relay's and this process's CPU over each 10-listener trial tell which side limits it.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import attrs
import trio

from .relayhttp import HttpConnection, RelayProcess, start_relay_process
from .stats import Check, Figure, cpu_seconds, keep_logs, percentile

__all__ = ["ThroughputResult", "measure_throughput"]

TEXT = "x" * 100


@attrs.frozen(kw_only=True)
class ThroughputResult:
    events: int
    batch: int
    figures: dict[int, Figure]
    relay_cpu_percent: float
    client_cpu_percent: float


@attrs.define(eq=False)
class _Daemon:
    """This process in the daemon's role: one environment, its downlink held open."""

    relay: RelayProcess
    host: str
    port: int
    credential: str
    device_token: str
    env_id: str = ""

    async def register(self, nursery: trio.Nursery) -> None:
        conn = await HttpConnection.open(self.host, self.port)
        auth = {"Authorization": f"Bearer {self.credential}"}
        body = {
            "name": "bench-throughput",
            "machine": "bench",
            "directory": "/bench/throughput",
            "spawn": "same-dir",
            "capacity": 256,
            "agent": "claude",
            "protocol": 1,
        }
        status, raw = await conn.request(
            "POST", "/daemon/v1/register", headers=auth, body=json.dumps(body).encode()
        )
        self.env_id = _ok(status, raw)["environment_id"]
        link_token = await self._token(conn, None)
        await conn.aclose()
        link = await HttpConnection.open(self.host, self.port)
        status, reader = await link.open_stream(
            f"/daemon/v1/environments/{self.env_id}/downlink",
            {"Authorization": f"Bearer {link_token}"},
        )
        if status != 200:
            raise RuntimeError(f"downlink: HTTP {status}")

        async def drain() -> None:  # start_session directives: read and ignored
            while await reader.read():
                pass

        nursery.start_soon(drain)

    async def _token(self, conn: HttpConnection, session_id: str | None) -> str:
        status, raw = await conn.request(
            "POST",
            f"/daemon/v1/environments/{self.env_id}/tokens",
            headers={"Authorization": f"Bearer {self.credential}"},
            body=json.dumps({"session_id": session_id}).encode(),
        )
        token: str = _ok(status, raw)["token"]
        return token

    async def new_session(self, conn: HttpConnection) -> tuple[str, str]:
        """A new session (created as a client would) and its uplink token."""
        status, raw = await conn.request(
            "POST",
            f"/api/environments/{self.env_id}/sessions",
            headers={"Authorization": f"Bearer {self.device_token}"},
            body=b"{}",
        )
        sid: str = _ok(status, raw)["id"]
        return sid, await self._token(conn, sid)


def _ok(status: int, raw: bytes) -> dict[str, str]:
    if status >= 300:
        raise RuntimeError(f"HTTP {status}: {raw[:300]!r}")
    data: dict[str, str] = json.loads(raw)
    return data


async def _listen(
    daemon: _Daemon, sid: str, last: int, ready: trio.Event, done: list[float]
) -> None:
    conn = await HttpConnection.open(daemon.host, daemon.port)
    try:
        status, reader = await conn.open_stream(
            f"/api/sessions/{sid}/events",
            {
                "Authorization": f"Bearer {daemon.device_token}",
                "Accept": "text/event-stream",
                "Last-Event-ID": "0",
            },
        )
        if status != 200:
            raise RuntimeError(f"listener: HTTP {status}")
        ready.set()
        carry = b""
        marker = f"id: {last}\n".encode()
        while True:
            data = await reader.read()
            if not data:
                raise RuntimeError("the event stream ended early")
            # Only the last event's id is looked for; an id is the first line of a message.
            if marker in carry[-len(marker) :] + data:
                done.append(time.perf_counter())
                return
            carry = data
    finally:
        await conn.aclose()


async def _trial(daemon: _Daemon, listeners: int, events: int, batch: int) -> float:
    """Events per second for one fresh session with ``listeners`` listeners."""
    conn = await HttpConnection.open(daemon.host, daemon.port)
    try:
        sid, token = await daemon.new_session(conn)
        done: list[float] = []
        async with trio.open_nursery() as nursery:
            for _ in range(listeners):
                ready = trio.Event()
                nursery.start_soon(_listen, daemon, sid, events, ready, done)
                await ready.wait()
            headers = {"Authorization": f"Bearer {token}"}
            at = time.time()
            started = time.perf_counter()
            for first in range(1, events + 1, batch):
                body = {
                    "events": [
                        {"seq": seq, "kind": "assistant_text", "at": at, "data": {"text": TEXT}}
                        for seq in range(first, min(events, first + batch - 1) + 1)
                    ]
                }
                status, raw = await conn.request(
                    "POST",
                    f"/daemon/v1/sessions/{sid}/events",
                    headers=headers,
                    body=json.dumps(body).encode(),
                )
                _ok(status, raw)
            if not listeners:
                done.append(time.perf_counter())
        return events / (max(done) - started)
    finally:
        await conn.aclose()


async def measure_throughput(
    trials: int = 7, events: int = 2000, batch: int = 10
) -> ThroughputResult:
    from relay import admin

    counts = (0, 1, 10)
    with tempfile.TemporaryDirectory(prefix="rcd-tp-") as tmp:
        relay = await start_relay_process(Path(tmp))
        try:
            device_token = await trio.to_thread.run_sync(
                admin.create_device_token, relay.data_dir, "bench"
            )
            credential = await trio.to_thread.run_sync(
                admin.create_environment_credential, relay.data_dir, "bench"
            )
            host = relay.url.removeprefix("http://").rsplit(":", 1)[0]
            daemon = _Daemon(
                relay=relay,
                host=host,
                port=relay.port,
                credential=credential,
                device_token=device_token,
            )
            samples: dict[int, list[float]] = {n: [] for n in counts}
            relay_cpu = client_cpu = busy = 0.0
            async with trio.open_nursery() as nursery:
                await daemon.register(nursery)
                with trio.fail_after(120 + 60 * trials):
                    for n in counts:  # warm-up
                        await _trial(daemon, n, events // 4, batch)
                    for trial in range(trials):
                        for k in range(len(counts)):
                            n = counts[(trial + k) % len(counts)]
                            relay_before = cpu_seconds(relay.pid)
                            client_before = time.process_time()
                            started = time.perf_counter()
                            samples[n].append(await _trial(daemon, n, events, batch))
                            if n == max(counts):
                                busy += time.perf_counter() - started
                                relay_cpu += cpu_seconds(relay.pid) - relay_before
                                client_cpu += time.process_time() - client_before
                nursery.cancel_scope.cancel()
        except BaseException:
            keep_logs(Path(tmp), "throughput")
            raise
        finally:
            await relay.stop()
    names = {0: "baseline: append only, no listener", 1: "baseline: 1 listener"}
    return ThroughputResult(
        events=events,
        batch=batch,
        figures={
            n: Figure(
                name=names.get(n, f"{n} listeners, all delivered"), unit="ev/s", samples=tuple(s)
            )
            for n, s in samples.items()
        },
        relay_cpu_percent=relay_cpu / busy * 100,
        client_cpu_percent=client_cpu / busy * 100,
    )


def checks(result: ThroughputResult) -> list[Check]:
    ten = result.figures[max(result.figures)]
    one = result.figures[1]
    return [
        Check(
            name=f"event throughput, one session, {max(result.figures)} SSE listeners",
            target="none (1 listener as baseline)",
            measured=f"{ten.median:.0f} events/s ({one.median:.0f} with 1 listener)",
            ok=None,
        )
    ]


def section(result: ThroughputResult) -> list[str]:
    figures = result.figures
    ten, one = figures[max(figures)], figures[1]
    return [
        f"## Event throughput into one session ({result.events} events per trial, "
        f"{result.batch} per uplink request)",
        "",
        "| figure | median | p99 (the slow end: 1st percentile of events/s) | trials |",
        "|---|---|---|---|",
        *(
            f"| {f.name} | {f.median:.0f} ev/s | {percentile(f.samples, 1):.0f} ev/s "
            f"| {len(f.samples)} |"
            for f in (figures[n] for n in sorted(figures))
        ),
        "",
        f"- {max(figures)} listeners: **{ten.median:.0f} events/s** delivered to every "
        f"listener ({ten.median / one.median:.2f}x the 1-listener figure); no fixed target",
        f"- during the {max(figures)}-listener trials the relay process used "
        f"{result.relay_cpu_percent:.0f} % of one core, this process (writer and listeners) "
        f"{result.client_cpu_percent:.0f} %",
        "",
        "Each uplink request is one transaction; what it stored goes into the session's",
        "tail, encoded once, and every listener's stream sends it from there as one chunk",
        "per batch, without a read or an encoding of its own. What a listener still costs",
        "is its share of the relay's writes (hypercorn and the socket) and, here, its",
        "parsing in the benchmark's process.",
        "",
    ]
