"""Round trip: a client posts a message, the stand-in agent answers, the client sees the
answer on its SSE stream — with 1 session, and with 32 sessions busy at once. The baseline
is one authenticated GET to the same relay, measured in the same run.

The relay runs in this process; the daemon is a real ``rcd start`` process.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import attrs
import trio

from tests.harness import Relay, start_daemon, start_relay
from tests.sse import sse

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


async def _round_trips(relay: Relay, sid: str, count: int, tag: str) -> list[float]:
    """Post ``count`` messages one after another; time each until its answer arrives."""
    samples = []
    events = await relay.events(sid)
    last = events[-1]["seq"]
    async with sse(relay.client, f"/api/sessions/{sid}/events", {"Last-Event-ID": str(last)}) as (
        _,
        reader,
    ):
        for i in range(count):
            text = f"{tag} {i}"
            started = time.perf_counter()
            (await relay.post_message(sid, text, f"{tag}-{i}")).raise_for_status()
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
                one = await _round_trips(relay, await _session(relay, env_id), count, "one")
                sids = [await _session(relay, env_id) for _ in range(busy)]
                per_session = max(3, count // busy)
                many: list[float] = []

                async def drive(sid: str, k: int) -> None:
                    many.extend(await _round_trips(relay, sid, per_session, f"busy{k}"))

                pid = daemon.process.pid
                daemon_cpu, all_cpu = cpu_seconds(pid, children=False), cpu_seconds(pid)
                relay_cpu, started = time.process_time(), time.perf_counter()
                async with trio.open_nursery() as all_busy:
                    for k, sid in enumerate(sids):
                        all_busy.start_soon(drive, sid, k)
                busy_seconds = time.perf_counter() - started
                relay_cpu = time.process_time() - relay_cpu
                daemon_cpu = cpu_seconds(pid, children=False) - daemon_cpu
                agents_cpu = cpu_seconds(pid) - all_cpu - daemon_cpu
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
