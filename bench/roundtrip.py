"""Round trip: a client posts a message, the stand-in agent answers, the client sees the
answer on its SSE stream. The baseline is one authenticated GET to the same relay, measured
in the same run. Three settings:

* 1 session, nothing else going on;
* 32 sessions busy: 32 agents at work (each streaming ``RATE`` messages a second, each
  session followed by a phone), while a client taps on one more session — what a user
  feels with the machine full of work;
* 32 round trips at once: a phone on each of 32 sessions posts at the same moment, and
  each posts again as soon as its answer arrives — a queue, whose median is the time 32
  round trips' CPU takes on the machine. The phones run in a process of their own (they
  are other devices; its baseline is a GET from there), and again in the relay's process,
  the stand-in of earlier runs, reported beside it.

The relay runs in this process, with the benchmark's other clients (each phone an HTTP
client of its own); the daemon is a real ``rcd start`` process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import attrs
import trio

from testkit.harness import Daemon, Relay, start_daemon, start_relay

from .phones import json_lines, phone, queue, round_trips, timed_gets, watching
from .stats import Figure, cpu_seconds

__all__ = ["BUSY_RATE", "Phase", "RoundTrips", "measure_round_trips"]

#: Messages a second each busy agent says (a model streaming its work).
BUSY_RATE = 10


@attrs.frozen(kw_only=True)
class Phase:
    """CPU the relay's process (relay and, unless they run apart, the benchmark's clients),
    the phones' process (when they run apart), the daemon (without its agents) and the
    agents used over ``seconds`` of a phase."""

    seconds: float
    relay_cpu: float
    daemon_cpu: float
    agents_cpu: float
    round_trips: int
    #: Events the phones following the busy sessions received.
    events: int = 0
    #: Uplink batches the daemon sent, and the requests that carried them (with the
    #: phase's warm-up).
    batches: int = 0
    requests: int = 0
    #: None: the phones ran in the relay's process (their CPU is in ``relay_cpu``).
    phones_cpu: float | None = None


@attrs.frozen(kw_only=True)
class RoundTrips:
    baseline: Figure
    one: Figure
    busy: Figure
    #: The queue with the phones in the relay's process (the stand-in of earlier runs).
    burst: Figure
    busy_phase: Phase
    burst_phase: Phase
    #: The queue with the phones in a process of their own, and their GETs from there.
    apart_baseline: Figure
    apart: Figure
    apart_phase: Phase


async def _session(relay: Relay, env_id: str) -> str:
    r = await relay.create_session(env_id, prompt="warm up")
    r.raise_for_status()
    sid: str = r.json()["id"]
    await relay.wait_kind(sid, "turn_result")
    return sid


def _meter(pid: int) -> Callable[[], tuple[float, float, float, float]]:
    def now() -> tuple[float, float, float, float]:
        # (wall, this process, the daemon, the daemon with its agents)
        return (
            time.perf_counter(),
            time.process_time(),
            cpu_seconds(pid, children=False),
            cpu_seconds(pid),
        )

    return now


def _phase(
    start: tuple[float, float, float, float],
    end: tuple[float, float, float, float],
    round_trips: int,
    events: int = 0,
    uplink: tuple[int, int] = (0, 0),
) -> Phase:
    seconds, relay, daemon, everything = (b - a for a, b in zip(start, end, strict=True))
    return Phase(
        seconds=seconds,
        relay_cpu=relay,
        daemon_cpu=daemon,
        # Both read in clock ticks: a difference below one tick is noise, not negative.
        agents_cpu=max(0.0, everything - daemon),
        round_trips=round_trips,
        events=events,
        batches=uplink[0],
        requests=uplink[1],
    )


async def _burst(
    relay: Relay,
    sids: list[str],
    per_session: int,
    meter: Callable[[], tuple[float, float, float, float]],
) -> tuple[list[float], Phase]:
    """Every phone posts at once, and again as soon as its answer arrives; the phones in
    this process, beside the relay (the stand-in of earlier runs)."""
    go, ready, last = trio.Event(), trio.Event(), trio.Event()
    samples: list[float] = []

    async def run() -> None:
        headers = relay.client.headers
        samples.extend(await queue(relay.url, headers, sids, per_session, go, ready, last))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await ready.wait()
        start = meter()
        go.set()
        await last.wait()
        end = meter()  # the phones' hanging up is not the queue's
    return samples, _phase(start, end, len(samples))


async def _burst_apart(
    relay: Relay,
    sids: list[str],
    per_session: int,
    meter: Callable[[], tuple[float, float, float, float]],
    baseline: int,
) -> tuple[list[float], list[float], Phase]:
    """The same queue with the phones in a process of their own (``bench.phones``), as
    they are other devices; returns the phones' GETs (the baseline from where they are),
    the round trips, and the phase (the phones' CPU apart from the relay's)."""
    orders = {
        "url": relay.url,
        "headers": dict(relay.client.headers),
        "sids": sids,
        "per_session": per_session,
        "baseline": baseline,
    }
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "bench.phones"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=str(Path(__file__).parents[1]),
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        async with aclosing(json_lines(process.stdout)) as answers:
            await process.stdin.send_all(json.dumps(orders).encode() + b"\n")
            with trio.fail_after(120):
                ready = await _answer(answers)
            start = meter()
            await process.stdin.send_all(b'{"go": true}\n')
            with trio.fail_after(300):
                last = await _answer(answers)
            end = meter()
            with trio.fail_after(60):
                done = await _answer(answers)
                await process.wait()
        if process.returncode != 0:
            raise RuntimeError(f"the phones' process exited with status {process.returncode}")
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.stdin.aclose()
            await process.stdout.aclose()
    samples: list[float] = done["samples"]
    phase = attrs.evolve(_phase(start, end, len(samples)), phones_cpu=last["cpu"])
    return ready["baseline"], samples, phase


async def _answer(answers: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    try:
        return await anext(answers)
    except StopAsyncIteration:
        raise RuntimeError(
            "the phones' process ended before it answered (its errors are above)"
        ) from None


async def _uplink_counts(daemon: Daemon) -> tuple[int, int]:
    uplink = (await daemon.status())["uplink"]
    return uplink["batches"], uplink["requests"]


async def _taps_while_busy(
    relay: Relay,
    daemon: Daemon,
    busy_sids: list[str],
    sid: str,
    count: int,
    meter: Callable[[], tuple[float, float, float, float]],
) -> tuple[list[float], Phase]:
    """Set every session in ``busy_sids`` to work (followed by a phone each), then time
    ``count`` round trips on ``sid``."""
    received = 0
    working: set[str] = set()
    all_working = trio.Event()

    async def follow(busy_sid: str, task_status: trio.TaskStatus[None]) -> None:
        nonlocal received
        async with (
            phone(relay.url, relay.client.headers) as client,
            watching(client, busy_sid) as reader,
        ):
            task_status.started()
            while True:
                message = await reader.next()
                received += 1
                if message.event == "assistant_text" and "working, step" in (message.data or ""):
                    working.add(busy_sid)
                    if len(working) == len(busy_sids):
                        all_working.set()

    sent_before = await _uplink_counts(daemon)
    async with trio.open_nursery() as nursery:
        for busy_sid in busy_sids:
            await nursery.start(follow, busy_sid)
        for k, busy_sid in enumerate(busy_sids):
            r = await relay.client.post(
                f"/api/sessions/{busy_sid}/messages",
                json={"id": f"work-{k}", "text": f"stream 600 {BUSY_RATE}"},
            )
            r.raise_for_status()
        with trio.fail_after(60):
            await all_working.wait()
        await trio.sleep(1)  # every agent well into its work
        async with watching(relay.client, sid) as reader:
            start, before = meter(), received
            samples = await round_trips(relay.client, sid, reader, count, "tap")
            end, events = meter(), received - before
        sent = await _uplink_counts(daemon)
        for busy_sid in busy_sids:
            (await relay.client.post(f"/api/sessions/{busy_sid}/interrupt")).raise_for_status()
        nursery.cancel_scope.cancel()
    uplink = (sent[0] - sent_before[0], sent[1] - sent_before[1])
    return samples, _phase(start, end, len(samples), events, uplink)


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
                meter = _meter(daemon.process.pid)
                baseline = await timed_gets(relay.client, count)
                sid = await _session(relay, env_id)
                async with watching(relay.client, sid) as reader:
                    one = await round_trips(relay.client, sid, reader, count, "one")
                sids = [await _session(relay, env_id) for _ in range(busy)]
                per_phone = max(10, count // busy)
                apart_base, apart, apart_phase = await _burst_apart(
                    relay, sids, per_phone, meter, count
                )
                burst, burst_phase = await _burst(relay, sids, per_phone, meter)
                taps, busy_phase = await _taps_while_busy(relay, daemon, sids, sid, count, meter)
                await daemon.stop()
            finally:
                await relay.aclose()
                nursery.cancel_scope.cancel()
    return RoundTrips(
        baseline=Figure(name="baseline: one authenticated GET", unit="ms", samples=tuple(baseline)),
        one=Figure(name="round trip, 1 session", unit="ms", samples=tuple(one)),
        busy=Figure(
            name=f"round trip, {busy} sessions busy ({BUSY_RATE} messages/s each, followed)",
            unit="ms",
            samples=tuple(taps),
        ),
        burst=Figure(
            name=f"{busy} round trips at once, the phones in the relay's process",
            unit="ms",
            samples=tuple(burst),
        ),
        busy_phase=busy_phase,
        burst_phase=burst_phase,
        apart_baseline=Figure(
            name="baseline: one authenticated GET from the phones' process",
            unit="ms",
            samples=tuple(apart_base),
        ),
        apart=Figure(
            name=f"{busy} round trips at once, the phones in a process of their own",
            unit="ms",
            samples=tuple(apart),
        ),
        apart_phase=apart_phase,
    )
