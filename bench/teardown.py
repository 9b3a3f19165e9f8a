"""Teardown: SIGTERM to exit of a daemon with 1 and with N live, busy sessions.

Each trial starts a relay on loopback and a real ``rcd start`` process with the stand-in
agent (``testkit/fakes/tiny_agent.py``, which answers instantly and honours interrupts, so
this measures rcd and not a model), starts the sessions, waits until every one is busy,
then times SIGTERM → exit and checks that the relay shows every session ended.
The 1-session teardown measured in the same run is the baseline.
"""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path

import trio

from testkit.harness import processes_in, start_daemon, start_relay

from .stats import Figure

__all__ = ["measure_teardown"]


async def _one_trial(sessions: int) -> float:
    with tempfile.TemporaryDirectory(prefix="rcd-bench-") as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        async with trio.open_nursery() as nursery:
            relay = await start_relay(nursery, root / "relay")
            try:
                daemon = await start_daemon(
                    relay,
                    root / "home",
                    project,
                    "--capacity",
                    str(sessions),
                    "--stop-timeout",
                    "20",
                )
                ids = []
                for _ in range(sessions):
                    r = await relay.create_session(daemon.environment_id, prompt="sleep 300")
                    r.raise_for_status()
                    ids.append(r.json()["id"])
                with trio.fail_after(60):
                    for sid in ids:
                        while not any(
                            e["kind"] == "status" and e["data"]["state"] == "busy"
                            for e in await relay.events(sid)
                        ):
                            await trio.sleep(0.02)
                running = processes_in(project)
                if len(running) < sessions:
                    raise RuntimeError(f"only {len(running)} of {sessions} agents are running")
                started = trio.current_time()
                daemon.process.send_signal(signal.SIGTERM)
                with trio.fail_after(60):
                    code = await daemon.process.wait()
                elapsed = trio.current_time() - started
                if code != 0:
                    raise RuntimeError(f"daemon exited {code}: {daemon.log()}")
                for sid in ids:
                    if (await relay.session(sid))["state"] != "ended":
                        raise RuntimeError(f"session {sid} not ended after teardown")
                if processes_in(project):
                    raise RuntimeError(f"agents left behind: {processes_in(project)}")
                return elapsed * 1000
            finally:
                await relay.aclose()
                nursery.cancel_scope.cancel()


async def measure_teardown(many: int = 32, trials: int = 5) -> tuple[Figure, Figure]:
    """Teardown time of 1 session (baseline) and of ``many``, interleaved trial by trial so
    both see the same machine noise."""
    one: list[float] = []
    lots: list[float] = []
    await _one_trial(1)  # warm-up: imports, page cache, first relay start
    for trial in range(trials):
        # Alternate the order so neither figure always follows the other's cleanup.
        pair = ((1, one), (many, lots)) if trial % 2 == 0 else ((many, lots), (1, one))
        for count, samples in pair:
            samples.append(await _one_trial(count))
    return (
        Figure(name="teardown, 1 live session (baseline)", unit="ms", samples=tuple(one)),
        Figure(name=f"teardown, {many} live sessions", unit="ms", samples=tuple(lots)),
    )
