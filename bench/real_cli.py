"""The real ``claude`` CLI through rcd, against the same CLI driven bare, in the same run.

Both talk to the scripted fake Messages API (``tests/fakes/messages_api.py``), which runs in
its own process so that neither side's event loop serves the model too. The pinned CLI is
``node_modules/.bin/claude`` (``tests.fakes.find_claude``); both sides run it with exactly
the arguments rcd's adapter uses (``spawn.ClaudeCode.argv``) and the same kind of
environment (``claude_env`` inside a throwaway home).

* Per turn, warm process: bare = write the user line on the CLI's stdin → read its
  ``assistant`` line on stdout; through rcd = a client posts the message to the relay → sees
  the ``assistant_text`` event on its SSE stream (relay in this process, daemon a real
  ``rcd start`` process). Turns alternate bare / rcd so both see the same machine noise;
  each turn runs to its result before the next. rcd's added latency = the difference of the
  medians (and of the p99s).
* First reply of a new session: bare = start a fresh CLI process and write the prompt at
  once → its first ``assistant`` line; through rcd = ``POST .../sessions`` with the prompt →
  ``assistant_text`` on the session's SSE stream (the client subscribes as soon as the POST
  answers, from seq 0, so nothing is missed). Each trial's process / session is stopped
  before the next trial starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
import trio

from spawn import ClaudeCode
from tests.fakes import claude_env, find_claude
from tests.harness import Relay, home_env, start_daemon, start_relay

from .relay_scale import EventFeed, SseMessage
from .stats import STALL_NOTE, Check, Figure, cpu_seconds, keep_logs, stall_check, verdict

__all__ = ["RealCliResult", "measure_real_cli"]

REPO = Path(__file__).resolve().parents[1]
JSON = dict[str, Any]


@attrs.frozen(kw_only=True)
class RealCliResult:
    #: One authenticated GET to the relay: a client request's worth of Python.
    get: Figure
    bare_turn: Figure
    rcd_turn: Figure
    inbound: Figure
    agent: Figure
    outbound: Figure
    bare_fresh: Figure
    rcd_fresh: Figure
    version: str
    #: CPU ms per rcd turn: the daemon process (without the CLI), and this process
    #: (relay, client; also the bare CLI's driver, which costs little).
    daemon_cpu_ms: float
    relay_cpu_ms: float
    #: Events the daemon held back (see :func:`_wait_for`), over all sessions.
    stalls: int


async def _start_fake_api(root: Path) -> tuple[trio.Process, str]:
    """``python -m tests.fakes.messages_api --port 0`` in its own process; (process, URL)."""
    log_path = root / "fake-api.log"
    with log_path.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tests.fakes.messages_api", "--port", "0"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
        )
    with trio.fail_after(20):
        while True:
            for line in log_path.read_text(errors="replace").splitlines():
                if line.startswith("ANTHROPIC_BASE_URL="):
                    return process, line.split("=", 1)[1].strip()
            if process.returncode is not None:
                raise RuntimeError(f"fake Messages API exited: {log_path.read_text()}")
            await trio.sleep(0.02)


@attrs.define(eq=False)
class _BareCli:
    """One CLI process driven over stdin/stdout stream-json, as rcd's adapter does."""

    process: trio.Process
    lines: trio.MemoryReceiveChannel[JSON]

    async def say(self, text: str) -> None:
        assert self.process.stdin is not None
        line = {"type": "user", "message": {"role": "user", "content": text}}
        await self.process.stdin.send_all(json.dumps(line).encode() + b"\n")

    async def until(self, kind: str, text: str | None = None) -> JSON:
        async for line in self.lines:
            if line.get("type") != kind:
                continue
            if text is None or text in json.dumps(line["message"]["content"]):
                return line
        raise RuntimeError("the CLI's stdout closed")

    async def close(self) -> None:
        with trio.CancelScope(shield=True):
            if self.process.stdin is not None:
                await self.process.stdin.aclose()
            with trio.move_on_after(10):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()


async def _read_lines(stream: trio.abc.ReceiveStream, send: trio.MemorySendChannel[JSON]) -> None:
    async with send:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                if raw.strip():
                    await send.send(json.loads(raw))


async def _bare(nursery: trio.Nursery, claude: str, cwd: Path, env: dict[str, str]) -> _BareCli:
    argv = ClaudeCode(binary=claude).argv(str(uuid.uuid4()), None)
    process = await trio.lowlevel.open_process(
        argv,
        cwd=str(cwd),
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert process.stdout is not None
    send, receive = trio.open_memory_channel[JSON](1000)
    nursery.start_soon(_read_lines, process.stdout, send)
    return _BareCli(process=process, lines=receive)


#: Seconds to wait for an event that normally follows within milliseconds. Past it, the
#: daemon has held the event back (see :func:`_wait_for`): counted as a stall.
STALL_S = 5.0


async def _wait_for(
    feed: EventFeed, kind: str, text: str | None, seconds: float
) -> SseMessage | None:
    """The next ``kind`` event (whose data holds ``text``, if given), or None after
    ``seconds``: the daemon has not sent it (an uplink stall; the next event of the session
    sends it along)."""
    with trio.move_on_after(seconds):
        while True:
            message = await feed.next()
            if message.event == kind and (text is None or text in (message.data or "")):
                return message
            if message.event == "error":
                raise RuntimeError(f"the session reported an error: {message.data}")
    return None


@attrs.define
class _Turns:
    bare: list[float] = attrs.Factory(list)
    rcd: list[float] = attrs.Factory(list)
    #: Through rcd, split by the daemon's own event timestamps (``at``, wall clock):
    #: POST → the daemon writes the message to the CLI (its ``user_message``) ...
    inbound: list[float] = attrs.Factory(list)
    #: ... → the daemon has read the CLI's answer (``assistant_text``) ...
    agent: list[float] = attrs.Factory(list)
    #: ... → the client sees it on SSE.
    outbound: list[float] = attrs.Factory(list)
    #: Turns whose last events (``turn_result``, ``status``) the daemon did not send.
    stalls: int = 0


async def _rcd_turns(relay: Relay, sid: str, bare: _BareCli, count: int) -> _Turns:
    """``count`` turns on each side, alternating."""
    turns = _Turns()
    last = (await relay.events(sid))[-1]["seq"]
    feed = await EventFeed.open(relay.url, relay.token, sid, last)
    try:
        for i in range(count):
            for side in ("bare", "rcd") if i % 2 == 0 else ("rcd", "bare"):
                text = f"turn {side} {i}"
                started = time.perf_counter()
                if side == "bare":
                    await bare.say(text)
                    await bare.until("assistant", f"echo: {text}")
                    turns.bare.append((time.perf_counter() - started) * 1000)
                    await bare.until("result")
                    continue
                posted_at = time.time()
                (await relay.post_message(sid, text, f"t{i}")).raise_for_status()
                applied_at = 0.0
                while True:
                    message = await feed.next()
                    if message.event == "user_message" and f'"t{i}"' in (message.data or ""):
                        applied_at = json.loads(message.data or "{}")["at"]
                    if message.event == "assistant_text" and f"echo: {text}" in (
                        message.data or ""
                    ):
                        break
                seen = time.perf_counter()
                seen_at = time.time()
                answered_at = json.loads(message.data or "{}")["at"]
                turns.rcd.append((seen - started) * 1000)
                turns.inbound.append((applied_at - posted_at) * 1000)
                turns.agent.append((answered_at - applied_at) * 1000)
                turns.outbound.append((seen_at - answered_at) * 1000)
                if await _wait_for(feed, "turn_result", None, STALL_S) is None:
                    turns.stalls += 1  # the next message sends it along
    finally:
        await feed.aclose()
    return turns


async def _rcd_fresh(relay: Relay, env_id: str, n: int) -> tuple[float | None, int]:
    """(POST → first answer ms, or None when it stalled; stalls seen)."""
    text = f"fresh rcd {n}"
    started = time.perf_counter()
    r = await relay.create_session(env_id, prompt=text)
    r.raise_for_status()
    sid = r.json()["id"]
    elapsed: float | None = None
    stalls = 0
    feed = await EventFeed.open(relay.url, relay.token, sid, 0)
    try:
        if await _wait_for(feed, "assistant_text", f"echo: {text}", 20) is not None:
            elapsed = (time.perf_counter() - started) * 1000
        else:
            stalls += 1
        (await relay.client.post(f"/api/sessions/{sid}/stop")).raise_for_status()
        if await _wait_for(feed, "session_ended", None, STALL_S) is None:
            stalls += 1
    finally:
        await feed.aclose()
    return elapsed, stalls


async def _bare_fresh(claude: str, cwd: Path, env: dict[str, str], n: int) -> float:
    text = f"fresh bare {n}"
    async with trio.open_nursery() as nursery:
        started = time.perf_counter()
        cli = await _bare(nursery, claude, cwd, env)
        try:
            await cli.say(text)
            await cli.until("assistant", f"echo: {text}")
            elapsed = (time.perf_counter() - started) * 1000
            await cli.until("result")
        finally:
            await cli.close()
    return elapsed


async def measure_real_cli(turns: int = 60, fresh: int = 7) -> RealCliResult:
    claude = find_claude()
    done = await trio.run_process([claude, "--version"], capture_stdout=True, check=False)
    version = done.stdout.decode(errors="replace").strip()
    with tempfile.TemporaryDirectory(prefix="rcd-cli-") as tmp:
        root = Path(tmp)
        api, base_url = await _start_fake_api(root)
        try:
            async with trio.open_nursery() as nursery:
                relay = await start_relay(nursery, root / "relay")
                try:
                    result = await _measure(
                        nursery, relay, root, claude, base_url, turns, fresh, version
                    )
                except BaseException:
                    keep_logs(root, "real-cli")
                    raise
                finally:
                    await relay.aclose()
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                api.kill()
                await api.wait()
    return result


async def _measure(
    nursery: trio.Nursery,
    relay: Relay,
    root: Path,
    claude: str,
    base_url: str,
    turns: int,
    fresh: int,
    version: str,
) -> RealCliResult:
    project, bare_project = root / "project", root / "bare-project"
    project.mkdir()
    bare_project.mkdir()
    home, bare_home = root / "home", root / "bare-home"
    daemon = await start_daemon(
        relay,
        home,
        project,
        "--capacity",
        "4",
        agent_bin=claude,
        extra_env=claude_env(home, base_url),
    )
    env_id = daemon.environment_id
    # The agent's environment under rcd is the daemon's: the same recipe for the bare CLI.
    bare_env = home_env(bare_home, claude_env(bare_home, base_url))
    # Per turn: one warm session on each side.
    r = await relay.create_session(env_id, prompt="warm up")
    r.raise_for_status()
    sid = r.json()["id"]
    async with trio.open_nursery() as side:
        bare = await _bare(side, claude, bare_project, bare_env)
        try:
            await bare.say("warm up")
            await bare.until("result")
            await relay.wait_kind(sid, "turn_result", timeout=60)
            gets = []
            for _ in range(turns):
                started = time.perf_counter()
                (await relay.client.get("/api/environments")).raise_for_status()
                gets.append((time.perf_counter() - started) * 1000)
            daemon_cpu = cpu_seconds(daemon.process.pid, children=False)
            own_cpu = time.process_time()
            with trio.fail_after(300):
                measured = await _rcd_turns(relay, sid, bare, turns)
            daemon_cpu = cpu_seconds(daemon.process.pid, children=False) - daemon_cpu
            own_cpu = time.process_time() - own_cpu
        finally:
            await bare.close()
    (await relay.client.post(f"/api/sessions/{sid}/stop")).raise_for_status()
    with trio.move_on_after(STALL_S):
        await relay.wait_kind(sid, "session_ended", timeout=2 * STALL_S)
    # First reply of a fresh process / new session; one unmeasured warm-up each.
    await _bare_fresh(claude, bare_project, bare_env, -1)
    await _rcd_fresh(relay, env_id, -1)
    bare_fresh: list[float] = []
    rcd_fresh: list[float] = []
    stalls = measured.stalls

    async def rcd_once(n: int) -> None:
        nonlocal stalls
        elapsed, stalled = await _rcd_fresh(relay, env_id, n)
        stalls += stalled
        if elapsed is not None:
            rcd_fresh.append(elapsed)

    with trio.fail_after(120 + 60 * fresh):
        for n in range(fresh):
            if n % 2 == 0:
                bare_fresh.append(await _bare_fresh(claude, bare_project, bare_env, n))
                await rcd_once(n)
            else:
                await rcd_once(n)
                bare_fresh.append(await _bare_fresh(claude, bare_project, bare_env, n))
    if await daemon.stop() != 0:
        raise RuntimeError(f"daemon did not stop cleanly: {daemon.log()}")
    return RealCliResult(
        get=Figure(name="baseline: one authenticated GET", unit="ms", samples=tuple(gets)),
        bare_turn=Figure(
            name="baseline: bare CLI turn (stdin → assistant line)",
            unit="ms",
            samples=tuple(measured.bare),
        ),
        rcd_turn=Figure(
            name="turn through rcd (POST → assistant_text on SSE)",
            unit="ms",
            samples=tuple(measured.rcd),
        ),
        inbound=Figure(
            name="… of which POST → daemon writes it to the CLI",
            unit="ms",
            samples=tuple(measured.inbound),
        ),
        agent=Figure(
            name="… of which the CLI's turn, as the daemon sees it",
            unit="ms",
            samples=tuple(measured.agent),
        ),
        outbound=Figure(
            name="… of which daemon reads the answer → client sees it",
            unit="ms",
            samples=tuple(measured.outbound),
        ),
        bare_fresh=Figure(
            name="baseline: bare CLI fresh process → first reply",
            unit="ms",
            samples=tuple(bare_fresh),
        ),
        rcd_fresh=Figure(
            name="new session through rcd: POST → first assistant_text",
            unit="ms",
            samples=tuple(rcd_fresh),
        ),
        version=version,
        stalls=stalls,
        daemon_cpu_ms=daemon_cpu / turns * 1000,
        relay_cpu_ms=own_cpu / turns * 1000,
    )


def checks(result: RealCliResult) -> list[Check]:
    added = result.rcd_turn.median - result.bare_turn.median
    first = result.rcd_fresh.median - result.bare_fresh.median
    slower = result.agent.median - result.bare_turn.median
    return [
        Check(
            name="real CLI: rcd's added latency per turn",
            target="≤ 3 ms median",
            measured=f"{added:.1f} ms ({result.rcd_turn.median:.1f} vs "
            f"{result.bare_turn.median:.1f} ms bare)",
            ok=added <= 3,
            limit=f"the two trips through the relay: POST → the daemon writes the line "
            f"{result.inbound.median:.1f} ms, the daemon reads the answer → the client sees "
            f"it {result.outbound.median:.1f} ms (the CLI's own turn: {slower:+.1f} ms against "
            "bare); see Real CLI",
        ),
        Check(
            name="real CLI: new session's first reply",
            target="≤ 100 ms more than a fresh bare CLI",
            measured=f"{first:+.0f} ms ({result.rcd_fresh.median:.0f} vs "
            f"{result.bare_fresh.median:.0f} ms bare)",
            ok=first <= 100,
            limit="see Real CLI",
        ),
        stall_check("real CLI", result.stalls),
    ]


def section(result: RealCliResult) -> list[str]:
    added = result.rcd_turn.median - result.bare_turn.median
    first = result.rcd_fresh.median - result.bare_fresh.median
    slower = result.agent.median - result.bare_turn.median
    lines = [
        f"## Real Claude Code CLI ({result.version}) against the fake Messages API",
        "",
        "| figure | median | p99 | samples |",
        "|---|---|---|---|",
        result.get.row(),
        result.bare_turn.row(),
        result.rcd_turn.row(),
        result.inbound.row(),
        result.agent.row(),
        result.outbound.row(),
        result.bare_fresh.row(),
        result.rcd_fresh.row(),
        "",
        f"- rcd's added latency per turn: **{added:.1f} ms** median (p99: "
        f"{result.rcd_turn.p99:.1f} ms through rcd, {result.bare_turn.p99:.1f} ms bare) — "
        f"target ≤ 3 ms median: {verdict(added <= 3)}",
        f"- a new session's first reply through rcd: **{first:+.0f} ms** median over a fresh "
        f"bare CLI (p99: {result.rcd_fresh.p99:.0f} vs {result.bare_fresh.p99:.0f} ms) — "
        f"target ≤ 100 ms more: {verdict(first <= 100)}",
        f"- stalls (a session's new events not on the relay {STALL_S:.0f} s after the event "
        f"before them): **{result.stalls}**" + (" — see below" if result.stalls else ""),
        f"- CPU per turn through rcd: daemon {result.daemon_cpu_ms:.1f} ms (without the CLI), "
        f"relay and clients (the benchmark's process) {result.relay_cpu_ms:.1f} ms",
        "",
        "Both sides run the same pinned CLI with rcd's adapter's arguments against the fake",
        "Messages API, which runs in its own process; turns alternate bare / rcd, and fresh",
        'starts alternate too. The "… of which" rows split the rcd turn by the daemon\'s own',
        "event timestamps: `user_message` is written just before the line goes to the CLI's",
        "stdin, `assistant_text` as soon as the CLI's answer line is read.",
        "",
    ]
    if result.stalls:
        lines += [STALL_NOTE, ""]
    if added > 3:
        lines += [
            "What limits the per-turn figure is the two trips through the relay, not the CLI.",
            "Inbound, the client's POST (a request's worth of Python in the client's httpx",
            "and in hypercorn + Starlette, about one GET) authenticates and queues the input",
            "in one storage call, and the relay hands the directive to the open downlink from",
            "memory; the daemon decodes it and writes the line. Outbound, the answer (with the",
            "echo of the message and the busy state, which waited for it) goes on an uplink",
            "request the daemon opened before the turn, so only its body is left to send; the",
            "relay stores it (one storage call) and the session's stream sends it from",
            "memory. The client's POST alone costs about one GET on this machine",
            f"({result.get.median:.1f} ms in this run), more than the 3 ms target by itself.",
            f"The CLI's own turn, as the daemon sees it, differs from a bare one by {slower:+.1f}",
            "ms: because the echo waits for the answer (at most 0.1 s), rcd sends nothing while",
            "the CLI works, and does not compete with it (and the fake API, which answers at",
            "once, making the turn all CPU) for the 2 cores.",
            "",
        ]
    return lines
