"""``rcd attach`` as a real process under a real pseudo-terminal (stdlib ``os.openpty``).

The attach process gets the pty's slave side as stdin, stdout and stderr (so it sees a
terminal: cbreak mode, prompt line, colours); the test reads and writes the master side
through a trio ``FdStream``. :meth:`AttachTerminal.expect` waits (under a deadline) for text
in what was printed, escape sequences and carriage returns removed.
"""

from __future__ import annotations

import codecs
import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from testkit.harness import REPO

__all__ = [
    "AttachTerminal",
    "attach_argv",
    "open_attach",
    "plain",
    "run_attach_plain",
    "screen_lines",
]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: Every wait on the attach process is guarded by this.
GUARD = 10.0


def plain(raw: str) -> str:
    """What was printed, without escape sequences and carriage returns."""
    return _ANSI.sub("", raw).replace("\r", "")


def screen_lines(raw: str) -> list[str]:
    """The lines as a terminal would leave them: each prompt redraw (``\\r\\x1b[K``)
    overwrites what was on the line before it."""
    lines = []
    for segment in raw.replace("\r\n", "\n").split("\n"):
        lines.append(_ANSI.sub("", segment.rsplit("\r", 1)[-1]))
    return lines


def attach_argv(session_id: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "attach", session_id, *args]


@attrs.define(eq=False)
class AttachTerminal:
    process: trio.Process
    master: trio.lowlevel.FdStream
    raw: str = ""
    #: Where the next :meth:`expect` starts looking.
    cursor: int = 0
    _changed: trio.Event = attrs.Factory(trio.Event)
    _closed: bool = False

    @property
    def text(self) -> str:
        return plain(self.raw)

    def lines(self) -> list[str]:
        return screen_lines(self.raw)

    async def pump(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            while chunk := await self.master.receive_some(65536):
                self.raw += decoder.decode(chunk)
                self._changed.set()
                self._changed = trio.Event()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # EIO: the slave side is closed (the process exited)
        self._closed = True
        self._changed.set()

    async def expect(self, pattern: str, timeout: float = GUARD, regex: bool = False) -> str:
        """Wait for ``pattern`` after the cursor; moves the cursor past it. Returns the match."""
        compiled = re.compile(pattern if regex else re.escape(pattern))
        try:
            with trio.fail_after(timeout):
                while True:
                    text = self.text
                    found = compiled.search(text, self.cursor)
                    if found:
                        self.cursor = found.end()
                        return found.group()
                    if self._closed:
                        raise EOFError
                    await self._changed.wait()
        except (trio.TooSlowError, EOFError):
            tail = self.text[self.cursor :][-3000:]
            raise AssertionError(
                f"no {pattern!r} in attach's output (exit {self.process.returncode}); "
                f"after the cursor:\n{tail}"
            ) from None

    def local_modes(self) -> int:
        """The pty's ``c_lflag`` (ICANON, ECHO, ISIG...): read through the master side."""
        lflag: int = termios.tcgetattr(self.master.fileno())[3]
        return lflag

    async def send(self, keys: str) -> None:
        await self.master.send_all(keys.encode())

    async def type_line(self, text: str) -> None:
        await self.send(text + "\r")

    async def wait(self, timeout: float = GUARD) -> int:
        with trio.fail_after(timeout):
            code = await self.process.wait()
            while not self._closed:
                await self._changed.wait()
            return code


@asynccontextmanager
async def open_attach(
    argv: list[str], env: dict[str, str], rows: int = 40, cols: int = 120
) -> AsyncIterator[AttachTerminal]:
    """Start ``argv`` on a fresh pty; on leaving, kill it if it is still running."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    try:
        process = await trio.lowlevel.open_process(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**env, "TERM": "xterm-256color"},
            cwd=str(REPO),
            start_new_session=True,
        )
    finally:
        os.close(slave)
    terminal = AttachTerminal(process=process, master=trio.lowlevel.FdStream(master))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(terminal.pump)
        try:
            yield terminal
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
            with trio.move_on_after(GUARD):
                await process.wait()
            nursery.cancel_scope.cancel()
    await terminal.master.aclose()


async def run_attach_plain(
    argv: list[str], env: dict[str, str], timeout: float = GUARD
) -> subprocess.CompletedProcess[bytes]:
    """Run attach without a terminal (stdin closed at once) and capture its output."""
    with trio.fail_after(timeout):
        return await trio.run_process(
            argv,
            env=env,
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=str(REPO),
        )
