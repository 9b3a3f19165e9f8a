"""Round trip: a client posts a message, the stand-in agent answers, the client sees the
answer on its SSE stream — with 1 session, and with 32 sessions busy at once. The baseline
is one authenticated GET to the same relay, measured in the same run.

The relay runs in this process; the daemon is a real ``rcd start`` process.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import httpx
import trio

from tests.harness import Relay, start_daemon, start_relay
from tests.sse import SSEReader, sse

from .stats import Figure, cpu_seconds

__all__ = ["RoundTrips", "measure_round_trips"]


@attrs.frozen(kw_only=True)
class RoundTrips:
    baseline: Figure
    one: Figure
    busy: Figure
    #: The busy phase: its wall time, and the CPU time the relay's process (relay and the
    #: benchmark's clients), the daemon (without its agents) and the agents used in it.
    busy_seconds: float
    busy_relay_cpu: float
    busy_daemon_cpu: float
    busy_agents_cpu: float


async def _session(relay: Relay, env_id: str) -> str:
    r = await relay.create_session(env_id, prompt="warm up")
    r.raise_for_status()
    sid: str = r.json()["id"]
    await relay.wait_kind(sid, "turn_result")
    return sid


@contextlib.asynccontextmanager
async def _watching(client: httpx.AsyncClient, relay: Relay, sid: str) -> AsyncIterator[SSEReader]:
    """A client following the session's live stream from its newest event, as a phone with
    the session open does."""
    events = await relay.events(sid)
    headers = {"Last-Event-ID": str(events[-1]["seq"])}
    async with sse(client, f"/api/sessions/{sid}/events", headers) as (_, reader):
        yield reader


async def _round_trips(
    client: httpx.AsyncClient, sid: str, reader: SSEReader, count: int, tag: str
) -> list[float]:
    """Post ``count`` messages one after another; time each until its answer arrives."""
    samples = []
    for i in range(count):
        text = f"{tag} {i}"
        started = time.perf_counter()
        response = await client.post(
            f"/api/sessions/{sid}/messages", json={"id": f"{tag}-{i}", "text": text}
        )
        response.raise_for_status()
        while True:
            message = await reader.next()
            if message.event == "assistant_text" and f'"echo: {text}"' in (message.data or ""):
                break
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def measure_round_trips(count: int = 60, busy: int = 32) -> RoundTrips:
    with tempfile.TemporaryDirectory(prefix="rcd-rt-") as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        async with trio.open_nursery() as nursery:
            relay = await start_relay(nursery, root / "relay")
            try:
                daemon = await start_daemon(
                    relay, root / "home", project, "--capacity", str(busy + 1)
                )
                env_id = daemon.environment_id
                baseline = []
                for _ in range(count):
                    started = time.perf_counter()
                    (await relay.client.get("/api/environments")).raise_for_status()
                    baseline.append((time.perf_counter() - started) * 1000)
                sid = await _session(relay, env_id)
                async with _watching(relay.client, relay, sid) as reader:
                    one = await _round_trips(relay.client, sid, reader, count, "one")
                sids = [await _session(relay, env_id) for _ in range(busy)]
                per_session = max(3, count // busy)
                many: list[float] = []
                # One connection per phone, kept: httpx's default pool keeps 20 idle, and
                # 32 streams plus 32 posts would reconnect on every post.
                phones = httpx.AsyncClient(
                    base_url=relay.url,
                    headers=relay.client.headers,
                    timeout=30,
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
                )
                go = trio.Event()
                pid = daemon.process.pid
                at_start: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
                at_end: list[tuple[float, float, float, float]] = []

                def cpu_now() -> tuple[float, float, float, float]:
                    # (wall, this process, the daemon, the daemon with its agents)
                    return (
                        time.perf_counter(),
                        time.process_time(),
                        cpu_seconds(pid, children=False),
                        cpu_seconds(pid),
                    )

                async def drive(sid: str, k: int, task_status: trio.TaskStatus[None]) -> None:
                    # Every phone has its session open before the first post: the phase
                    # is round trips, not streams opening.
                    async with _watching(phones, relay, sid) as reader:
                        task_status.started()
                        await go.wait()
                        many.extend(
                            await _round_trips(phones, sid, reader, per_session, f"busy{k}")
                        )
                        if len(many) == busy * per_session:
                            at_end.append(cpu_now())

                async with phones, trio.open_nursery() as all_busy:
                    for k, sid in enumerate(sids):
                        await all_busy.start(drive, sid, k)
                    at_start = cpu_now()
                    go.set()
                [end] = at_end
                busy_seconds, relay_cpu, daemon_cpu, all_cpu = (
                    b - a for a, b in zip(at_start, end, strict=True)
                )
                agents_cpu = all_cpu - daemon_cpu
                await daemon.stop()
            finally:
                await relay.aclose()
                nursery.cancel_scope.cancel()
    return RoundTrips(
        baseline=Figure(name="baseline: one authenticated GET", unit="ms", samples=tuple(baseline)),
        one=Figure(name="round trip, 1 session", unit="ms", samples=tuple(one)),
        busy=Figure(
            name=f"round trip, {busy} sessions busy at once", unit="ms", samples=tuple(many)
        ),
        busy_seconds=busy_seconds,
        busy_relay_cpu=relay_cpu,
        busy_daemon_cpu=daemon_cpu,
        busy_agents_cpu=agents_cpu,
    )
