"""Phones for the round-trip benchmark: each an HTTP client of its own that follows its
session's live stream and posts messages, timing each until the answer shows on the stream.

They run in the benchmark's process (beside the relay) or, for the queue of 32 round trips
at once, in a process of their own (``python -m bench.phones``): a phone is another
device, and 32 phones' HTTP clients in the relay's one process make the relay's process
pay for them — the measure of the phones, not of the relay. That process still shares the
machine's cores with the relay, the daemon and the agents.

The process of phones speaks JSON lines: it reads its orders (the relay's address, the
headers that authenticate it, the sessions, the round trips per phone), times
``baseline`` authenticated GETs, opens every phone's stream, says ``ready`` (with the GETs),
waits for ``go``, then runs the queue, says ``last`` with its CPU from the first post to
the last answer, and ``done`` with the samples.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import trio

from testkit.sse import SSEReader, sse

__all__ = ["json_lines", "phone", "queue", "round_trips", "timed_gets", "watching"]


@contextlib.asynccontextmanager
async def phone(
    url: str, headers: httpx.Headers | dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """A phone's own HTTP client (its stream and its posts on connections of its own): 32
    phones are 32 devices, not one client whose pool holds all their connections (httpx
    scans its whole pool on every request, which is the benchmark's cost, not the
    relay's)."""
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        yield client


@contextlib.asynccontextmanager
async def watching(client: httpx.AsyncClient, sid: str) -> AsyncIterator[SSEReader]:
    """A client following the session's live stream from its newest event, as a phone with
    the session open does."""
    r = await client.get(f"/api/sessions/{sid}/events")
    r.raise_for_status()
    newest = r.json()["events"][-1]["seq"]
    async with sse(client, f"/api/sessions/{sid}/events", {"Last-Event-ID": str(newest)}) as (
        _,
        reader,
    ):
        yield reader


async def timed_gets(client: httpx.AsyncClient, count: int) -> list[float]:
    """``count`` authenticated GETs one after another, each timed (ms): the baseline."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        (await client.get("/api/environments")).raise_for_status()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def round_trips(
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


async def queue(
    url: str,
    headers: httpx.Headers | dict[str, str],
    sids: list[str],
    per_session: int,
    go: trio.Event,
    ready: trio.Event,
    last: trio.Event,
    tag: str = "queue",
) -> list[float]:
    """Every phone opens its session's stream (then ``ready`` is set); once ``go`` is set
    each posts, and again as soon as its answer arrives, ``per_session`` times (its
    messages' ids begin ``tag``). ``last`` is set as the last answer arrives, before the
    phones hang up."""
    samples: list[float] = []

    async def drive(sid: str, k: int, task_status: trio.TaskStatus[None]) -> None:
        # Every phone has its session open before the first post: the phase is round
        # trips, not streams opening.
        async with phone(url, headers) as client, watching(client, sid) as reader:
            task_status.started()
            await go.wait()
            samples.extend(await round_trips(client, sid, reader, per_session, f"{tag}{k}"))
            if len(samples) == len(sids) * per_session:
                last.set()

    async with trio.open_nursery() as nursery:
        for k, sid in enumerate(sids):
            await nursery.start(drive, sid, k)
        ready.set()
    return samples


async def json_lines(stream: trio.abc.ReceiveStream) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON objects ``stream`` sends, a line each."""
    buffered = b""
    while chunk := await stream.receive_some():
        buffered += chunk
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            yield json.loads(line)


async def _say(out: trio.abc.SendStream, **message: Any) -> None:
    await out.send_all(json.dumps(message).encode() + b"\n")


async def _serve() -> None:
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    stdout = trio.lowlevel.FdStream(sys.stdout.fileno())
    async with aclosing(json_lines(stdin)) as orders:
        spec = await anext(orders)
        url, headers = spec["url"], spec["headers"]
        async with phone(url, headers) as client:
            baseline = await timed_gets(client, spec["baseline"])
        go, ready, last = trio.Event(), trio.Event(), trio.Event()
        samples: list[float] = []

        async def run() -> None:
            sids, per_session = spec["sids"], spec["per_session"]
            samples.extend(await queue(url, headers, sids, per_session, go, ready, last, "apart"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await ready.wait()
            await _say(stdout, ready=True, baseline=baseline)
            if not (await anext(orders)).get("go"):
                nursery.cancel_scope.cancel()
            go.set()
            cpu = time.process_time()
            await last.wait()
            # The phones' CPU from the first post to the last answer (not their hanging up).
            await _say(stdout, last=True, cpu=time.process_time() - cpu)
    await _say(stdout, done=True, samples=samples)


if __name__ == "__main__":
    trio.run(_serve)
