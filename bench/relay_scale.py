"""Relay scale: how many idle environment links one relay process holds, and its memory
(RSS) per link.

The relay runs as its own process (``python -m daemon relay --port 0``). A second process
(``python -m bench.relay_scale --client ...``, started by :func:`measure_relay_scale`) plays
N daemons with raw trio sockets speaking minimal HTTP/1.1, since an httpx client per link
would cost more than the link: for each environment it mints a credential (straight into
the relay's database, as ``rcd relay`` admin commands do), registers
(``POST /daemon/v1/register``), mints a link token (``POST .../tokens``) and opens the
downlink (``GET .../downlink``, SSE), then keeps reading it. Every ``step`` links it stops
until the benchmark has sampled the relay's RSS and open files. Once all are open, the
relay gets one keep-alive interval (plus a margin) of pure idleness, whose CPU is measured;
then every link must still be open and have received a keep-alive.

The relay process and the HTTP client are :mod:`bench.relayhttp`'s, shared with the other
benchmarks.

(Just over 400 lines: the measurement and the client process that plays N daemons are one
module, so the two are run and read together.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from .relayhttp import (
    MIB,
    REPO,
    BodyReader,
    HttpConnection,
    json_body,
    start_relay_process,
)
from .stats import (
    Check,
    Figure,
    cpu_seconds,
    keep_logs,
    open_fds,
    raise_nofile,
    rss_kib,
    verdict,
)

__all__ = ["RelayScaleResult", "measure_relay_scale"]


# -- the client process: N fake daemons, each holding an idle downlink --------------------


@attrs.define(eq=False)
class _Links:
    open: int = 0
    closed: int = 0
    keepalives: dict[int, int] = attrs.Factory(dict)
    open_ms: list[float] = attrs.Factory(list)


async def _hold(index: int, reader: BodyReader, links: _Links) -> None:
    links.keepalives[index] = 0
    try:
        while data := await reader.read():
            links.keepalives[index] += data.count(b": keep-alive")
    except (trio.BrokenResourceError, OSError):
        pass
    links.open -= 1
    links.closed += 1


def _credentials(data_dir: Path, count: int) -> list[str]:
    # What ``relay.admin.create_environment_credential`` does, on one connection instead of
    # one per credential (the relay is running: SQLite WAL lets both write).
    from relay.auth import hash_secret, new_environment_credential
    from relay.sqlite import SqliteDatabase, database_path

    db = SqliteDatabase(database_path(data_dir))
    try:
        out = []
        for i in range(count):
            credential = new_environment_credential()
            db.add_environment_credential(f"bench-machine-{i}", hash_secret(credential))
            out.append(credential)
        return out
    finally:
        db.close()


async def _client_main(url: str, data_dir: Path, count: int, step: int, workers: int) -> None:
    raise_nofile()
    host, port = url.removeprefix("http://").rsplit(":", 1)
    stdin = trio.wrap_file(sys.stdin)

    def say(obj: dict[str, Any]) -> None:
        try:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            os._exit(1)  # the benchmark that reads us is gone: so are we

    credentials = await trio.to_thread.run_sync(_credentials, data_dir, count)
    links = _Links()
    next_index = 0
    failures: list[str] = []

    async def open_link(conn: HttpConnection, i: int) -> BodyReader:
        credential = {"Authorization": f"Bearer {credentials[i]}"}
        body = json.dumps(
            {
                "name": f"bench-{i}",
                "machine": f"bench-machine-{i}",
                "directory": f"/bench/project-{i}",
                "spawn": "same-dir",
                "capacity": 4,
                "agent": "claude",
                "protocol": 1,
            }
        ).encode()
        status, raw = await conn.request(
            "POST", "/daemon/v1/register", headers=credential, body=body
        )
        env_id = json_body(status, raw, "register")["environment_id"]
        status, raw = await conn.request(
            "POST",
            f"/daemon/v1/environments/{env_id}/tokens",
            headers=credential,
            body=b'{"session_id": null}',
        )
        token = json_body(status, raw, "token")["token"]
        link = await HttpConnection.open(host, int(port))
        status, reader = await link.open_stream(
            f"/daemon/v1/environments/{env_id}/downlink",
            {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        )
        if status != 200:
            await link.aclose()
            raise RuntimeError(f"downlink {i}: HTTP {status}")
        return reader

    async def worker(nursery: trio.Nursery, limit: int) -> None:
        nonlocal next_index
        try:
            conn = await HttpConnection.open(host, int(port))
        except OSError as exc:
            failures.append(f"connect: {exc}")
            return
        try:
            while next_index < limit and not failures:
                i = next_index
                next_index += 1
                started = time.perf_counter()
                try:
                    reader = await open_link(conn, i)
                except (OSError, EOFError, RuntimeError, trio.BrokenResourceError) as exc:
                    failures.append(f"link {i}: {type(exc).__name__}: {exc}")
                    return
                links.open_ms.append((time.perf_counter() - started) * 1000)
                links.open += 1
                nursery.start_soon(_hold, i, reader, links)
        finally:
            await conn.aclose()

    async with trio.open_nursery() as nursery:
        for target in range(step, count + step, step):
            target = min(target, count)
            async with trio.open_nursery() as batch:
                for _ in range(workers):
                    batch.start_soon(worker, nursery, target)
            say({"links": links.open, "failures": failures[-3:]})
            if (await stdin.readline()).strip() != "go" or failures:
                break
        say({"links": links.open, "failures": failures[-3:], "done": True})
        while (await stdin.readline()).strip() == "status":
            fresh = [n for n in links.keepalives.values() if n == 0]
            say(
                {
                    "open": links.open,
                    "closed": links.closed,
                    "without_keepalive": len(fresh),
                    "open_ms": links.open_ms,
                }
            )
        nursery.cancel_scope.cancel()


# -- the benchmark -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RelayScaleResult:
    target: int
    held: int
    nofile: tuple[int, int]
    relay_nofile: str
    #: (links, RSS KiB, open files) at each step, the first at 0 links.
    steps: tuple[tuple[int, int, int], ...]
    #: (RSS KiB, open files) after the idle window.
    after_idle: tuple[int, int]
    open_link: Figure
    get_idle: Figure
    get_loaded: Figure
    idle_seconds: float
    idle_cpu_percent: float
    without_keepalive: int
    closed: int
    failures: tuple[str, ...]

    @property
    def rss_per_link_kib(self) -> float:
        (n0, rss0, _), (n1, rss1, _) = self.steps[0], self.steps[-1]
        return (rss1 - rss0) / max(1, n1 - n0)

    @property
    def rss_mib(self) -> float:
        return self.steps[-1][1] / MIB


def _limits_line(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return f"{soft} soft / {hard} hard"
    return "?"


async def _gets(url: str, token: str, count: int) -> list[float]:
    samples = []
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        for _ in range(count):
            started = time.perf_counter()
            (await client.get("/api/sessions")).raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
    return samples


async def measure_relay_scale(links: int = 5000, step: int = 1000) -> RelayScaleResult:
    from relay import admin

    nofile = raise_nofile()  # inherited by both processes started below
    with tempfile.TemporaryDirectory(prefix="rcd-scale-") as tmp:
        root = Path(tmp)
        relay = await start_relay_process(root)
        client: trio.Process | None = None
        try:
            token = await trio.to_thread.run_sync(
                admin.create_device_token, relay.data_dir, "bench"
            )
            await _gets(relay.url, token, 10)  # warm-up
            get_idle = await _gets(relay.url, token, 40)
            steps = [(0, rss_kib(relay.pid), open_fds(relay.pid))]
            client = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    "-m",
                    "bench.relay_scale",
                    "--client",
                    relay.url,
                    str(relay.data_dir),
                    str(links),
                    "--step",
                    str(step),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=str(REPO),
            )
            assert client.stdin is not None and client.stdout is not None
            lines = _LineReader(client.stdout)

            async def tell(text: str) -> dict[str, Any]:
                assert client is not None and client.stdin is not None
                await client.stdin.send_all(text.encode() + b"\n")
                return await lines.nextjson_body()

            report = await lines.nextjson_body(timeout=600)
            while not report.get("done"):
                await trio.sleep(0.5)  # let the relay settle before sampling
                steps.append((report["links"], rss_kib(relay.pid), open_fds(relay.pid)))
                report = await tell("go")
            failures = tuple(report["failures"])
            held = int(report["links"])
            # Idle: one keep-alive interval of the relay (15 s) and a margin, nothing else.
            idle_seconds = 17.0
            cpu_before = cpu_seconds(relay.pid)
            await trio.sleep(idle_seconds)
            idle_cpu = (cpu_seconds(relay.pid) - cpu_before) / idle_seconds * 100
            status = await tell("status")
            get_loaded = await _gets(relay.url, token, 40)
            after_idle = (rss_kib(relay.pid), open_fds(relay.pid))
            relay_nofile = _limits_line(relay.pid)
        except BaseException:
            keep_logs(root, "relay-scale")
            raise
        finally:
            await relay.stop()
            if client is not None:
                with trio.CancelScope(shield=True):
                    if client.returncode is None:
                        client.kill()
                    await client.wait()
    return RelayScaleResult(
        target=links,
        held=held,
        nofile=nofile,
        relay_nofile=relay_nofile,
        steps=tuple(steps),
        after_idle=after_idle,
        open_link=Figure(
            name="open one link (register + token + downlink 200)",
            unit="ms",
            samples=tuple(status["open_ms"]),
        ),
        get_idle=Figure(
            name="baseline: GET /api/sessions, 0 links", unit="ms", samples=tuple(get_idle)
        ),
        get_loaded=Figure(
            name=f"GET /api/sessions, {held} idle links", unit="ms", samples=tuple(get_loaded)
        ),
        idle_seconds=idle_seconds,
        idle_cpu_percent=idle_cpu,
        without_keepalive=int(status["without_keepalive"]),
        closed=int(status["closed"]),
        failures=failures,
    )


@attrs.define(eq=False)
class _LineReader:
    stream: trio.abc.ReceiveStream
    _buffer: bytearray = attrs.Factory(bytearray)

    async def nextjson_body(self, timeout: float = 120) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while (end := self._buffer.find(b"\n")) < 0:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise RuntimeError("the link client exited")
                self._buffer += data
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        result: dict[str, Any] = json.loads(line)
        return result


def _ok(result: RelayScaleResult) -> bool:
    return result.held >= 5000 and result.rss_mib <= 1024 and not result.closed


def checks(result: RelayScaleResult) -> list[Check]:
    return [
        Check(
            name="relay scale: idle environment links",
            target="5,000 links in ≤ 1 GiB",
            measured=f"{result.held} links held in {result.rss_mib:.0f} MiB "
            f"({result.rss_per_link_kib:.1f} KiB per link)",
            ok=_ok(result),
            limit=(
                f"only {result.target} links were asked for (--links)"
                if result.target < 5000
                else "; ".join(result.failures) or "see Relay scale"
            ),
        )
    ]


def section(result: RelayScaleResult) -> list[str]:
    ok = _ok(result)
    per_link = result.rss_per_link_kib
    lines = [
        f"## Relay scale ({result.target} idle environment links, relay in its own process)",
        "",
        "| links | relay RSS | open files |",
        "|---|---|---|",
        *(f"| {n} | {rss / MIB:.1f} MiB | {fds} |" for n, rss, fds in result.steps),
        f"| {result.held}, after {result.idle_seconds:.0f} s idle | "
        f"{result.after_idle[0] / MIB:.1f} MiB | {result.after_idle[1]} |",
        "",
        "| figure | median | p99 | samples |",
        "|---|---|---|---|",
        result.get_idle.row(),
        result.get_loaded.row(),
        result.open_link.row(),
        "",
        f"- links held: **{result.held}** of {result.target}; after {result.idle_seconds:.0f} s "
        f"idle, {result.closed} had closed and {result.without_keepalive} had no keep-alive yet",
        f"- memory: **{result.rss_mib:.0f} MiB** RSS with {result.held} links, "
        f"**{per_link:.1f} KiB per link** over the 0-link baseline "
        f"({result.steps[0][1] / MIB:.0f} MiB) — target 5,000 links in ≤ 1 GiB: " + verdict(ok),
        f"- relay CPU while all links idle: **{result.idle_cpu_percent:.1f} %** of one core "
        f"(keep-alive every 15 s per link)",
        f"- open-file limit: {result.nofile[0]} soft / {result.nofile[1]} hard in the "
        f"benchmark and the link client; relay: {result.relay_nofile}",
    ]
    if result.failures:
        lines.append("- failures: " + "; ".join(result.failures))
    if per_link > 0:
        room = (1024 * MIB - result.steps[0][1]) / per_link
        lines.append(f"- at this slope 1 GiB would hold about {room:,.0f} links (if files allow)")
    return [
        *lines,
        "",
        "Memory grows linearly with the links (hypercorn's connection and h11 state, the ASGI",
        "task and its `EventStreamResponse` tasks). The idle CPU grows linearly too: every 15 s",
        "each link costs a keep-alive write and one storage call (on the event loop):",
        "`still_allowed` reads the environment, so that a credential revoked by",
        "`rcd relay environment revoke` (another process) ends the link within one interval.",
        "",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_scale")
    parser.add_argument("--client", nargs=3, metavar=("URL", "DATA_DIR", "LINKS"), required=True)
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    url, data_dir, count = args.client
    # SIGPIPE stays ignored (Python's default): a link the relay drops is an error on that
    # link's socket, counted, not a signal that kills the client.
    trio.run(_client_main, url, Path(data_dir), int(count), args.step, args.workers)


if __name__ == "__main__":
    main()
