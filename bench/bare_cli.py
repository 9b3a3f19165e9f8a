"""The real ``claude`` CLI driven bare, as rcd's adapter drives it (stream-json on stdin and
stdout, the same arguments), and the fake Messages API it talks to in its own process: the
baseline side of the benchmarks of the real CLI (``real_cli``, ``fleet``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
import trio

from spawn import ClaudeCode

from .relayhttp import REPO, wait_for_line

__all__ = ["JSON", "BareCli", "bare_first_reply", "start_bare", "start_fake_api"]

JSON = dict[str, Any]


async def start_fake_api(root: Path) -> tuple[trio.Process, str]:
    """``python -m testkit.fakes.messages_api --port 0`` in its own process; (process, URL)."""
    log_path = root / "fake-api.log"
    with log_path.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "testkit.fakes.messages_api", "--port", "0"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
        )
    try:
        match = await wait_for_line(log_path, process, r"(?m)^ANTHROPIC_BASE_URL=(\S+)")
    except BaseException:
        with trio.CancelScope(shield=True):
            process.kill()
            await process.wait()
        raise
    return process, match.group(1)


@attrs.define(eq=False)
class BareCli:
    """One CLI process driven over stdin/stdout stream-json, as rcd's adapter does."""

    process: trio.Process
    lines: trio.MemoryReceiveChannel[JSON]

    async def say(self, text: str) -> None:
        await self.send({"type": "user", "message": {"role": "user", "content": text}})

    async def send(self, line: JSON) -> None:
        """Write one stream-json line to the CLI's stdin."""
        assert self.process.stdin is not None
        await self.process.stdin.send_all(json.dumps(line).encode() + b"\n")

    async def until_control(self, subtype: str) -> JSON:
        """The CLI's next ``control_request`` of ``subtype`` (``can_use_tool``: it asks to
        use a tool)."""
        async for line in self.lines:
            if line.get("type") == "control_request" and line["request"].get("subtype") == subtype:
                return line
        raise RuntimeError("the CLI's stdout closed")

    async def until(self, kind: str, text: str | None = None) -> JSON:
        async for line in self.lines:
            if line.get("type") != kind:
                continue
            if text is None or text in json.dumps(line["message"]["content"]):
                return line
        raise RuntimeError("the CLI's stdout closed")

    async def control(self, subtype: str) -> None:
        """Send a control request (``interrupt``: end the turn now), as rcd's adapter does."""
        assert self.process.stdin is not None
        line = {
            "type": "control_request",
            "request_id": f"bench-{uuid.uuid4().hex}",
            "request": {"subtype": subtype},
        }
        await self.process.stdin.send_all(json.dumps(line).encode() + b"\n")

    async def close(self) -> None:
        with trio.CancelScope(shield=True):
            if self.process.stdin is not None:
                await self.process.stdin.aclose()
            with trio.move_on_after(10):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()


async def read_lines(stream: trio.abc.ReceiveStream, send: trio.MemorySendChannel[JSON]) -> None:
    async with send:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                if raw.strip():
                    await send.send(json.loads(raw))


async def start_bare(nursery: trio.Nursery, claude: str, cwd: Path, env: dict[str, str]) -> BareCli:
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
    nursery.start_soon(read_lines, process.stdout, send)
    return BareCli(process=process, lines=receive)


async def bare_first_reply(claude: str, cwd: Path, env: dict[str, str], n: int) -> float:
    text = f"fresh bare {n}"
    async with trio.open_nursery() as nursery:
        started = time.perf_counter()
        cli = await start_bare(nursery, claude, cwd, env)
        try:
            await cli.say(text)
            await cli.until("assistant", f"echo: {text}")
            elapsed = (time.perf_counter() - started) * 1000
            await cli.until("result")
        finally:
            await cli.close()
    return elapsed
