"""The sides of the real-CLI benchmark, each one warm CLI driven the same two ways.

Every side runs the pinned CLI with rcd's adapter's arguments and answers to:

* :meth:`turn`: a user line in → the CLI's answer visible to whoever sent it (ms);
* :meth:`permission`: a prompt that makes the CLI ask to write a file in → the request
  visible (ms), then "allow" in → the agent's final reply visible (ms).

The sides: ``bare`` (the CLI's stdin and stdout, no network), ``rcd`` (a client of
``rcd relay`` in its own process, a real ``rcd start`` beside the CLI), ``embedded`` (the
README's default: the relay in the daemon's process), ``transport`` (:mod:`bench.bare_relay`,
a relay and forwarder that only move bytes: the floor) and ``durable`` (the same, checking
tokens and storing each hop), the relayed ones driven by :mod:`bench.relayhttp`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

import attrs
import trio

from relay import admin

from . import bare_relay
from .bare_cli import JSON, BareCli
from .relayhttp import (
    REPO,
    EventFeed,
    HttpConnection,
    LoggedProcess,
    SseMessage,
    wait_for_line,
)

#: Seconds to wait for an event that normally follows within milliseconds. Past it, the
#: daemon has held the event back: counted as a stall.
STALL_S = 5.0

#: Seconds between a permission prompt becoming visible and "allow" going in: a person
#: reads the prompt first (a quick tap takes longer than this). Without it the answer
#: would come while the prompt's own upload is still settling, which no user sees.
THINK_S = 0.5

__all__ = [
    "STALL_S",
    "THINK_S",
    "BareSide",
    "Embedded",
    "RcdSide",
    "Side",
    "Split",
    "TransportSide",
    "start_embedded",
    "start_transport",
]


@attrs.frozen
class Split:
    """One rcd turn split by the daemon's own event timestamps (ms): POST → the daemon
    writes the line to the CLI; → the daemon reads the CLI's answer; → the client sees it."""

    inbound: float
    agent: float
    outbound: float


class Side(Protocol):
    name: str

    async def turn(self, text: str) -> tuple[float, Split | None]: ...

    async def permission(self, path: Path) -> tuple[float, float]: ...


def _write_prompt(path: Path) -> str:
    # The fake Messages API answers "write FILE CONTENT" with a Write tool_use, and the
    # tool's result with "done: ...".
    return f"write {path} written by the benchmark"


def _allow(request_id: str, tool_input: JSON) -> JSON:
    """The control response rcd's adapter writes for "allow" (spawn/claude.py)."""
    return {
        "type": "control_response",
        "response": {
            "subtype": "success",
            "request_id": request_id,
            "response": {"behavior": "allow", "updatedInput": tool_input},
        },
    }


def _user(text: str) -> JSON:
    return {"type": "user", "message": {"role": "user", "content": text}}


@attrs.define(eq=False)
class BareSide:
    cli: BareCli
    name: str = "bare"

    async def turn(self, text: str) -> tuple[float, Split | None]:
        started = time.perf_counter()
        await self.cli.say(text)
        await self.cli.until("assistant", f"echo: {text}")
        elapsed = (time.perf_counter() - started) * 1000
        await self.cli.until("result")
        return elapsed, None

    async def permission(self, path: Path) -> tuple[float, float]:
        started = time.perf_counter()
        await self.cli.say(_write_prompt(path))
        request = await self.cli.until_control("can_use_tool")
        raised = (time.perf_counter() - started) * 1000
        await trio.sleep(THINK_S)  # the user reads the prompt, then taps
        started = time.perf_counter()
        await self.cli.send(_allow(request["request_id"], request["request"]["input"]))
        await self.cli.until("assistant", "done:")
        allowed = (time.perf_counter() - started) * 1000
        await self.cli.until("result")
        return raised, allowed


@attrs.define(eq=False)
class TransportSide:
    """:mod:`bench.bare_relay`'s relay and forwarder (which runs its own CLI), a client."""

    relay: trio.Process
    forwarder: trio.Process
    url: str
    feed: EventFeed | None = None
    conn: HttpConnection | None = None
    name: str = "transport"
    #: The durable relay's bearer token (None: the transport-only relay, which asks none).
    token: str | None = None

    def headers(self) -> dict[str, str]:
        return {} if self.token is None else {"authorization": f"Bearer {self.token}"}

    async def send(self, line: JSON) -> None:
        assert self.conn is not None
        body = json.dumps(line).encode()
        status, _ = await self.conn.request("POST", "/in", headers=self.headers(), body=body)
        if status != 202:
            raise RuntimeError(f"bare relay: POST /in answered {status}")

    async def until(self, kind: str, text: str | None = None) -> JSON:
        assert self.feed is not None
        while True:
            message = await self.feed.next()
            data = message.data or ""
            if f'"type":"{kind}"' in data.replace(" ", "") and (text is None or text in data):
                line: JSON = json.loads(data)
                return line

    async def turn(self, text: str) -> tuple[float, Split | None]:
        started = time.perf_counter()
        await self.send(_user(text))
        await self.until("assistant", f"echo: {text}")
        elapsed = (time.perf_counter() - started) * 1000
        await self.until("result")
        return elapsed, None

    async def permission(self, path: Path) -> tuple[float, float]:
        started = time.perf_counter()
        await self.send(_user(_write_prompt(path)))
        request = await self.until("control_request", "can_use_tool")
        raised = (time.perf_counter() - started) * 1000
        await trio.sleep(THINK_S)  # the user reads the prompt, then taps
        started = time.perf_counter()
        await self.send(_allow(request["request_id"], request["request"]["input"]))
        await self.until("assistant", "done:")
        allowed = (time.perf_counter() - started) * 1000
        await self.until("result")
        return raised, allowed

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            for part in (self.feed, self.conn):
                if part is not None:
                    await part.aclose()
            for process in (self.forwarder, self.relay):
                if process.returncode is None:
                    process.kill()
                await process.wait()


async def start_transport(
    root: Path, argv: list[str], cwd: Path, env: dict[str, str], *, durable: bool = False
) -> TransportSide:
    """The transport-only relay and forwarder (``durable``: the durable floor's), started."""
    name = "durable" if durable else "transport"
    mode = ["--durable"] if durable else []
    relay_log, forwarder_log = root / f"{name}-relay.log", root / f"{name}-forwarder.log"
    with relay_log.open("wb") as log_file:
        relay = await trio.lowlevel.open_process(
            [sys.executable, "-m", "bench.bare_relay", "relay", *mode]
            + ([str(root / "durable-relay")] if durable else []),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
        )
    transport = TransportSide(
        relay=relay, forwarder=relay, url="", name=name, token=bare_relay.TOKEN if durable else None
    )
    try:
        match = await wait_for_line(relay_log, relay, r"bare relay: serving (\S+)")
        transport.url = match.group(1)
        with forwarder_log.open("wb") as log_file:
            forward = [sys.executable, "-m", "bench.bare_relay", "forward", *mode, transport.url]
            transport.forwarder = await trio.lowlevel.open_process(
                [*forward, "--", *argv],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=str(cwd),
                env={**env, "PYTHONPATH": str(REPO)},
            )
        await wait_for_line(forwarder_log, transport.forwarder, "bare relay: forwarding")
        transport.feed = await EventFeed.open_path(transport.url, "/out", transport.headers())
        host, port = transport.url.removeprefix("http://").rsplit(":", 1)
        transport.conn = await HttpConnection.open(host, int(port))
    except BaseException:
        await transport.aclose()
        raise
    return transport


@attrs.define(eq=False)
class RcdSide:
    """One session of rcd, driven as the web app does: POSTs to the relay, its SSE stream."""

    name: str
    session_id: str
    token: str
    conn: HttpConnection
    feed: EventFeed
    #: Turns whose last event the daemon did not send within :data:`STALL_S`.
    stalls: int = 0
    #: Each permission round's "allow" split like a turn (POST → the daemon answered the
    #: CLI, its ``permission_resolved``; → the daemon read the reply; → the client saw it).
    allow_splits: list[Split] = attrs.Factory(list)
    _count: int = 0

    @classmethod
    async def open(
        cls, name: str, url: str, token: str, session_id: str, after: int, *, partials: bool = False
    ) -> RcdSide:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        feed = await EventFeed.open(url, token, session_id, after, partials=partials)
        try:
            conn = await HttpConnection.open(host, int(port))
        except BaseException:
            await feed.aclose()
            raise
        return cls(name=name, session_id=session_id, token=token, conn=conn, feed=feed)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.feed.aclose()
            await self.conn.aclose()

    async def post(self, path: str, body: JSON) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        status, answer = await self.conn.request(
            "POST", path, headers=headers, body=json.dumps(body).encode()
        )
        if status != 202:
            raise RuntimeError(f"POST {path}: HTTP {status}: {answer!r}")

    async def until(self, kind: str, text: str | None = None) -> tuple[SseMessage, JSON]:
        """The next ``kind`` event (whose data holds ``text``, if given), and the event
        (``seq``, ``kind``, ``data``, ``at``) decoded."""
        while True:
            message, event = await self.until_any((kind,))
            if text is None or text in (message.data or ""):
                return message, event

    async def until_any(self, kinds: tuple[str, ...]) -> tuple[SseMessage, JSON]:
        """The next event of one of ``kinds``, and the event decoded."""
        while True:
            message = await self.feed.next()
            if message.event == "error":
                raise RuntimeError(f"the session reported an error: {message.data}")
            if message.event in kinds:
                event: JSON = json.loads(message.data or "{}")
                return message, event

    async def say(self, text: str) -> str:
        self._count += 1
        message_id = f"{self.name}-{self._count}"
        await self.post(
            f"/api/sessions/{self.session_id}/messages", {"id": message_id, "text": text}
        )
        return message_id

    async def turn(self, text: str) -> tuple[float, Split | None]:
        started, posted_at = time.perf_counter(), time.time()
        message_id = await self.say(text)
        applied_at = 0.0
        while True:
            message = await self.feed.next()
            data = message.data or ""
            if message.event == "user_message" and f'"{message_id}"' in data:
                applied_at = json.loads(data)["at"]
            if message.event == "assistant_text" and f"echo: {text}" in data:
                break
        elapsed, seen_at = (time.perf_counter() - started) * 1000, time.time()
        answered_at = json.loads(message.data or "{}")["at"]
        with trio.move_on_after(STALL_S) as waiting:
            await self.until("turn_result")
        if waiting.cancelled_caught:
            self.stalls += 1  # the daemon held it back; the next turn's events send it
        split = Split(
            inbound=(applied_at - posted_at) * 1000,
            agent=(answered_at - applied_at) * 1000,
            outbound=(seen_at - answered_at) * 1000,
        )
        return elapsed, split

    async def permission(self, path: Path) -> tuple[float, float]:
        started = time.perf_counter()
        await self.say(_write_prompt(path))
        _, event = await self.until("permission_request")
        request = event["data"]
        raised = (time.perf_counter() - started) * 1000
        await trio.sleep(THINK_S)  # the user reads the prompt, then taps
        started, posted_at = time.perf_counter(), time.time()
        await self.post(
            f"/api/sessions/{self.session_id}/permissions/{request['request_id']}",
            {"decision": "allow"},
        )
        resolved_at = 0.0
        while True:
            _, event = await self.until_any(("permission_resolved", "assistant_text"))
            if event["kind"] == "permission_resolved":
                resolved_at = event["at"]
            elif "done:" in event["data"].get("text", ""):
                break
        allowed, seen_at = (time.perf_counter() - started) * 1000, time.time()
        self.allow_splits.append(
            Split(
                inbound=(resolved_at - posted_at) * 1000,
                agent=(event["at"] - resolved_at) * 1000,
                outbound=(seen_at - event["at"]) * 1000,
            )
        )
        await self.until("turn_result")
        return raised, allowed


@attrs.define(eq=False, kw_only=True)
class Embedded(LoggedProcess):
    """``rcd start`` with its relay in its own process, as the README's first command."""

    url: str
    token: str

    async def stop(self) -> int:
        with trio.CancelScope(shield=True):
            if self.process.returncode is None:
                self.process.terminate()
            with trio.move_on_after(15):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
            code = await self.process.wait()
        return code


async def start_embedded(
    root: Path,
    project: Path,
    claude: str,
    env: dict[str, str],
    *extra: str,
    name: str = "embedded",
) -> Embedded:
    """``rcd start PROJECT --relay-port 0 EXTRA...`` (relay data in ``root/NAME-relay``),
    and a device token of its relay for the benchmark's client."""
    relay_dir, log_path = root / f"{name}-relay", root / f"{name}.log"
    with log_path.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "daemon",
                "start",
                str(project),
                "--relay-port",
                "0",
                "--relay-data-dir",
                str(relay_dir),
                "--agent-bin",
                claude,
                "--capacity",
                "4",
                *extra,
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
        )
    try:
        match = await wait_for_line(log_path, process, r"relay running at (http://\S+)")
        await wait_for_line(log_path, process, "registered with")
        token = await trio.to_thread.run_sync(admin.create_device_token, relay_dir, "bench")
    except BaseException:
        with trio.CancelScope(shield=True):
            process.kill()
            await process.wait()
        raise
    return Embedded(process=process, url=match.group(1), token=token, log_path=log_path)
