"""A bounded soak: sessions come and go for a few minutes through a flaky network, and
the daemon and the relay must end holding what they held at the start.

The relay runs in this process (its figures are this process's); the daemon is a real
``rcd start`` process reached through a proxy that cuts every connection now and then. The
stand-in agent answers instantly, so a few minutes are thousands of events.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import attrs
import trio

from daemon.procstats import ProcessStats, process_stats
from relay.config import RelayConfig
from testkit.fakes.flaky_proxy import FlakyProxy
from testkit.harness import Relay, start_daemon, start_relay

__all__ = ["SoakResult", "soak", "soak_section"]

#: Both samples are taken this long after a cut: past the relay's keep-alive timeout, so
#: pooled connections that went idle (an ack sent just after the cut, say) are closed and
#: only what must stay open is counted.
SETTLE = RelayConfig(data_dir=Path()).keep_alive_timeout + 1.0


@attrs.frozen(kw_only=True)
class SoakResult:
    seconds: float
    cycles: int
    events: int
    cuts: int
    daemon_start: ProcessStats
    daemon_end: ProcessStats
    relay_start: ProcessStats
    relay_end: ProcessStats

    def grew(self) -> list[str]:
        """What grew: counts must come back exactly; memory may wobble by 10 % + 4 MiB."""
        problems = []
        for who, a, b in (
            ("daemon", self.daemon_start, self.daemon_end),
            ("relay", self.relay_start, self.relay_end),
        ):
            for name in ("open_files", "tasks", "children"):
                if getattr(b, name) > getattr(a, name):
                    problems.append(f"{who} {name}: {getattr(a, name)} → {getattr(b, name)}")
            if b.rss_kib > a.rss_kib * 1.10 + 4096:
                problems.append(f"{who} memory: {a.rss_kib} → {b.rss_kib} KiB")
        return problems


async def _cycle(relay: Relay, env_id: str, project: Path, n: int) -> int:
    with trio.fail_after(60):
        while True:
            r = await relay.create_session(env_id, prompt=f"hello {n}")
            if r.status_code != 409 or r.json()["error"]["code"] != "environment_offline":
                break
            await trio.sleep(0.1)  # the daemon is reconnecting after a cut
    r.raise_for_status()
    sid = r.json()["id"]
    await relay.wait_kind(sid, "turn_result", timeout=60)
    for k in range(3):
        (await relay.post_message(sid, f"message {k}", f"c{n}-{k}")).raise_for_status()
    events = await relay.wait_kind(sid, "turn_result", 4, timeout=60)
    (
        await relay.post_message(sid, f"write {project / f'f{n % 5}.txt'} x", f"w{n}")
    ).raise_for_status()
    events = await relay.wait_kind(sid, "permission_request", timeout=60)
    request = next(e for e in events if e["kind"] == "permission_request")["data"]
    (await relay.decide(sid, request["request_id"], "allow")).raise_for_status()
    await relay.wait_kind(sid, "turn_result", 5, timeout=60)
    (await relay.client.post(f"/api/sessions/{sid}/stop")).raise_for_status()
    events = await relay.wait_kind(sid, "session_ended", timeout=60)
    return len(events)


async def _daemon_stats(daemon: object) -> ProcessStats:
    status = await daemon.status()  # type: ignore[attr-defined]
    return ProcessStats(**status["process"])


async def soak(seconds: float = 120.0) -> SoakResult:
    with tempfile.TemporaryDirectory(prefix="rcd-soak-") as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        async with trio.open_nursery() as nursery:
            relay = await start_relay(nursery, root / "relay")
            proxy = FlakyProxy(target=("127.0.0.1", relay.port))
            await nursery.start(proxy.run)
            try:
                daemon = await start_daemon(
                    relay, root / "home", project, "--capacity", "8", via=proxy.url
                )
                env_id = daemon.environment_id
                counts: list[int] = []

                async def round_of_four(first: int) -> None:
                    async def one(n: int) -> None:
                        counts.append(await _cycle(relay, env_id, project, n))

                    async with trio.open_nursery() as side:  # four sessions side by side
                        for k in range(4):
                            side.start_soon(one, first + k)

                # Warm-up in the same pattern (pools, caches, reconnects), then measure.
                for r in range(3):
                    await round_of_four(r * 4)
                    proxy.cut_all()
                await trio.sleep(SETTLE)
                daemon_start, relay_start = await _daemon_stats(daemon), process_stats()
                started = trio.current_time()
                rounds = 0
                while trio.current_time() - started < seconds:
                    await round_of_four(100 + rounds * 4)
                    rounds += 1
                    if rounds % 5 == 0:
                        proxy.cut_all()
                proxy.cut_all()  # end as the warm-up ended, so both samples follow a cut
                elapsed = trio.current_time() - started
                await trio.sleep(SETTLE)  # the last acks and reconnects settle
                daemon_end, relay_end = await _daemon_stats(daemon), process_stats()
                if await daemon.stop() != 0:
                    raise RuntimeError(f"daemon did not stop cleanly: {daemon.log()}")
                return SoakResult(
                    seconds=elapsed,
                    cycles=rounds * 4,
                    events=sum(counts),
                    cuts=proxy.statistics().cut,
                    daemon_start=daemon_start,
                    daemon_end=daemon_end,
                    relay_start=relay_start,
                    relay_end=relay_end,
                )
            finally:
                await relay.aclose()
                nursery.cancel_scope.cancel()


def soak_section(result: SoakResult) -> list[str]:
    def row(who: str, a: object, b: object) -> list[str]:
        return [
            f"| {who} {name} | {getattr(a, name)} | {getattr(b, name)} |"
            for name in ("rss_kib", "open_files", "tasks", "children")
        ]

    problems = result.grew()
    return [
        f"## Soak ({result.seconds:.0f} s: {result.cycles} sessions, 4 at a time, "
        f"{result.events} events, {result.cuts} connections cut)",
        "",
        "| figure | start | end |",
        "|---|---|---|",
        *row("daemon", result.daemon_start, result.daemon_end),
        *row("relay", result.relay_start, result.relay_end),
        "",
        "Nothing grows: **yes**." if not problems else "Grew: **" + "; ".join(problems) + "**.",
        "",
    ]
