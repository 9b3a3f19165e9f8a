"""Idle cost: what a registered daemon with no sessions costs over a minute.

The relay runs in this process; the daemon is a real ``rcd start`` process that reaches the
relay through a counting HTTP proxy (also in this process), which parses the requests on
each connection (HTTP/1.1 heads and Content-Length or chunked bodies, so requests on a
kept-alive connection count one by one) and the ``: keep-alive`` comments coming back. The
open downlink is one request made before the window; its keep-alives are not requests.

Over the window (60 s by default) the daemon's CPU time is read from ``/proc/<pid>/stat``
(utime + stime, plus cutime + cstime and any live descendants: it has none when idle), at
the start, every 15 s and at the end. The baseline, measured over the same window, is a
Python process that imported the daemon's code and sleeps in ``trio.run`` — the floor any
idle Python daemon pays on this machine.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import tempfile
from pathlib import Path

import attrs
import trio

from testkit.harness import start_daemon, start_relay

from .relayhttp import Chunked
from .stats import (
    Check,
    Figure,
    cpu_ns_between,
    cpu_seconds,
    keep_logs,
    thread_cpu_ns,
    verdict,
)

__all__ = ["CountingProxy", "IdleResult", "measure_idle"]

REPO = Path(__file__).resolve().parents[1]
SLICE = 15.0


class _RequestCounter:
    """Counts HTTP/1.1 requests in one connection's client → server bytes."""

    def __init__(self, seen: list[tuple[float, str]]) -> None:
        self._seen = seen
        self._buffer = bytearray()
        self._body_left = 0
        self._chunked: Chunked | None = None

    def feed(self, data: bytes | bytearray) -> None:
        self._buffer += data
        while self._buffer:
            if self._chunked is not None:
                self._chunked.feed(bytes(self._buffer))
                self._buffer.clear()
                if self._chunked.done:
                    self._chunked = None  # (trailers are not expected from httpx)
                continue
            if self._body_left:
                take = min(self._body_left, len(self._buffer))
                del self._buffer[:take]
                self._body_left -= take
                continue
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            del self._buffer[: end + 4]
            self._seen.append((trio.current_time(), head[0]))
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    self._body_left = int(value)
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    self._chunked = Chunked()


@attrs.define(eq=False)
class CountingProxy:
    """A loopback HTTP proxy (plain TCP forwarding) that counts what passes."""

    target: tuple[str, int]
    #: (trio time, request line) of every request seen.
    requests: list[tuple[float, str]] = attrs.Factory(list)
    connections: int = 0
    keepalives: int = 0
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._serve, listeners)
            task_status.started(self.port)

    async def _serve(self, client: trio.SocketStream) -> None:
        self.connections += 1
        counter = _RequestCounter(self.requests)
        try:
            upstream = await trio.open_tcp_stream(*self.target)
        except OSError:
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as nursery:

            async def up() -> None:
                try:
                    async for data in client:
                        counter.feed(data)
                        await upstream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            async def down() -> None:
                try:
                    async for data in upstream:
                        self.keepalives += data.count(b": keep-alive")
                        await client.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(up)
            nursery.start_soon(down)


@attrs.frozen(kw_only=True)
class IdleResult:
    seconds: float
    daemon_cpu: float
    #: The same from the scheduler's per-thread nanosecond counters.
    daemon_ns: int
    baseline_cpu: float
    daemon_slices: Figure
    baseline_slices: Figure
    requests: tuple[str, ...]
    keepalives: int
    connections: int


_BASELINE = (
    "import sys, trio, daemon.run, relay, httpx\n"
    "print('ready', flush=True)\n"
    "trio.run(trio.sleep_forever)\n"
)


async def measure_idle(seconds: float = 60.0) -> IdleResult:
    with tempfile.TemporaryDirectory(prefix="rcd-idle-") as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        async with trio.open_nursery() as nursery:
            relay = await start_relay(nursery, root / "relay")
            proxy = CountingProxy(target=("127.0.0.1", relay.port))
            await nursery.start(proxy.run)
            baseline = await trio.lowlevel.open_process(
                [sys.executable, "-c", _BASELINE],
                stdout=subprocess.PIPE,
                cwd=str(REPO),
            )
            try:
                daemon = await start_daemon(relay, root / "home", project, via=proxy.url)
                assert baseline.stdout is not None
                with trio.fail_after(30):
                    await baseline.stdout.receive_some(100)  # "ready"
                await trio.sleep(2.0)  # let start-up work (acks, threads) settle
                pid = daemon.process.pid
                seen = len(proxy.requests)
                connections, keepalives = proxy.connections, proxy.keepalives
                threads_before = thread_cpu_ns(pid)
                started = trio.current_time()
                marks = [(started, cpu_seconds(pid), cpu_seconds(baseline.pid))]
                while (left := started + seconds - trio.current_time()) > 0:
                    await trio.sleep(min(SLICE, left))
                    now = trio.current_time()
                    marks.append((now, cpu_seconds(pid), cpu_seconds(baseline.pid)))
                elapsed = trio.current_time() - started
                daemon_ns = cpu_ns_between(threads_before, thread_cpu_ns(pid))
                requests = tuple(line for _, line in proxy.requests[seen:])
                connections = proxy.connections - connections
                keepalives = proxy.keepalives - keepalives
                if await daemon.stop() != 0:
                    raise RuntimeError(f"daemon did not stop cleanly: {daemon.log()}")
            except BaseException:
                keep_logs(root, "idle")
                raise
            finally:
                with trio.CancelScope(shield=True):
                    baseline.kill()
                    await baseline.wait()
                await relay.aclose()
                nursery.cancel_scope.cancel()

    def percent(who: int) -> tuple[float, ...]:
        return tuple((b[who] - a[who]) / (b[0] - a[0]) * 100 for a, b in itertools.pairwise(marks))

    return IdleResult(
        seconds=elapsed,
        daemon_cpu=marks[-1][1] - marks[0][1],
        daemon_ns=daemon_ns,
        baseline_cpu=marks[-1][2] - marks[0][2],
        daemon_slices=Figure(
            name=f"daemon CPU per {SLICE:.0f} s slice", unit="%", samples=percent(1)
        ),
        baseline_slices=Figure(
            name=f"baseline: idle Python + trio, per {SLICE:.0f} s slice",
            unit="%",
            samples=percent(2),
        ),
        requests=requests,
        keepalives=keepalives,
        connections=connections,
    )


def checks(result: IdleResult) -> list[Check]:
    daemon_pct = result.daemon_cpu / result.seconds * 100
    per_25 = len(result.requests) * 25 / result.seconds
    return [
        Check(
            name="idle daemon: CPU",
            target="≤ 0.2 % of one core",
            measured=f"{daemon_pct:.2f} % ({result.daemon_cpu:.2f} s in {result.seconds:.0f} s)",
            ok=daemon_pct <= 0.2,
            limit="see Idle daemon",
        ),
        Check(
            name="idle daemon: requests to the relay",
            target="≤ 1 per 25 s",
            measured=f"{len(result.requests)} in {result.seconds:.0f} s ({per_25:.2f} per 25 s)",
            ok=per_25 <= 1,
            limit="see Idle daemon for the requests made",
        ),
    ]


def section(result: IdleResult) -> list[str]:
    daemon_pct = result.daemon_cpu / result.seconds * 100
    baseline_pct = result.baseline_cpu / result.seconds * 100
    per_25 = len(result.requests) * 25 / result.seconds
    listed = ", ".join(f"`{r}`" for r in result.requests) or "none"
    return [
        f"## Idle daemon ({result.seconds:.0f} s, registered, no sessions)",
        "",
        "| figure | median | p99 | samples |",
        "|---|---|---|---|",
        result.baseline_slices.row(2),
        result.daemon_slices.row(2),
        "",
        f"- daemon CPU: **{result.daemon_cpu:.2f} s** over {result.seconds:.0f} s = "
        f"**{daemon_pct:.2f} %** of one core (baseline idle process: {baseline_pct:.2f} %) — "
        f"target ≤ 0.2 %: {verdict(daemon_pct <= 0.2)}. By the scheduler's per-thread "
        f"nanosecond counters: {result.daemon_ns / 1e6:.1f} ms "
        f"({result.daemon_ns / 1e7 / result.seconds:.3f} %)",
        f"- requests to the relay: **{len(result.requests)}** in {result.seconds:.0f} s = "
        f"{per_25:.2f} per 25 s ({listed}) — target ≤ 1 per 25 s: {verdict(per_25 <= 1)}",
        f"- over the window the open downlink carried {result.keepalives} keep-alives; "
        f"new connections: {result.connections}",
        "- CPU is read in clock ticks (10 ms), so a slice's figure moves in steps of "
        f"{1 / SLICE:.3f} %.",
        "",
        "An idle daemon only reads the downlink's keep-alive comment every 15 s. Its periodic",
        "requests are the link's renewal: after 80 % of the access token's 15 minutes it",
        "mints a new token and opens a new downlink before dropping the old one — two",
        "requests every 12 minutes, outside this window.",
        "",
    ]
