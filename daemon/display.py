"""The terminal display of ``rcd start`` when stdout is a TTY.

It shows where to sign in, the connection state, the spawn mode and what every session is
doing, and reads single keys: space shows a QR code of the sign-in link (or the relay URL),
``w`` toggles the spawn mode for new sessions, ``q`` stops gracefully. Without a terminal
there is no display: the daemon logs JSON lines instead.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import termios
import tty
from collections.abc import Callable, Iterator
from typing import TextIO

import attrs
import segno
import trio

import wire
from common.visible import visible

from .transport import is_loopback_url

__all__ = ["DisplayState", "SessionLine", "TerminalDisplay", "qr_code", "render"]

CLEAR = "\x1b[H\x1b[2J"
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
GREEN, RED, DIM, BOLD, RESET = "\x1b[32m", "\x1b[31m", "\x1b[2m", "\x1b[1m", "\x1b[0m"


@attrs.frozen(kw_only=True)
class SessionLine:
    id: str
    title: str | None
    state: wire.SessionState
    activity: str | None
    url: str


@attrs.frozen(kw_only=True)
class DisplayState:
    name: str
    relay: str
    connected: bool
    spawn: wire.Spawn
    capacity: int
    sign_in: str | None
    sessions: tuple[SessionLine, ...]
    stopping: bool = False
    #: SHA-256 of the relay's own certificate (``--expose lan``), shown beside the QR code.
    fingerprint: str | None = None


def qr_code(text: str) -> str:
    """``text`` as a QR code drawn with block characters, for a terminal."""
    buf = io.StringIO()
    segno.make(text, error="l").terminal(out=buf, compact=True, border=2)
    return buf.getvalue()


def render(state: DisplayState, *, show_qr: bool, width: int = 100) -> str:
    """The whole screen as text (ANSI colours included). Pure, for tests.

    Every string in ``state`` is shown through :func:`common.visible.visible` (titles and
    activity come from the network and the agent): only this function's own colours reach
    the terminal as escape sequences.
    """
    dot = f"{GREEN}● connected{RESET}" if state.connected else f"{RED}○ reconnecting…{RESET}"
    lines = [
        f"{BOLD}rcd{RESET} {visible(state.name)}  {dot} to {visible(state.relay)}",
        f"spawn: {BOLD}{visible(state.spawn)}{RESET}   "
        f"sessions: {len(state.sessions)}/{state.capacity}",
    ]
    target = state.sign_in or state.relay
    shown = visible(target)
    lines.append(f"sign in: {shown}" if state.sign_in else f"open: {shown}")
    if state.sign_in and is_loopback_url(state.sign_in):
        lines.append(
            f"{DIM}this link works on this machine only; from your phone: --expose tailscale,"
            f" --expose lan, --public-url or a hosted relay (docs/phone.md){RESET}"
        )
    if show_qr:
        qr = qr_code(target).rstrip("\n").splitlines()
        if state.fingerprint:
            # Beside the code: what the phone's browser must show before going on.
            pairs = state.fingerprint.split(":")
            note = [
                "certificate SHA-256",
                *(":".join(pairs[i : i + 8]) for i in range(0, len(pairs), 8)),
                "your browser warns once:",
                "go on only if it shows this",
            ]
            top = max(0, (len(qr) - len(note)) // 2)
            qr = [
                line + (f"  {DIM}{note[i - top]}{RESET}" if 0 <= i - top < len(note) else "")
                for i, line in enumerate(qr)
            ]
        lines.extend(qr)
    elif state.fingerprint:
        lines.append(f"{DIM}certificate SHA-256 {visible(state.fingerprint)}{RESET}")
    lines.append("")
    if not state.sessions:
        lines.append(f"{DIM}no sessions yet — start one from the app{RESET}")
    for s in state.sessions:
        title = _clip(visible(s.title or "(untitled)"), 40)
        activity = f"  {DIM}{visible(s.activity)}{RESET}" if s.activity else ""
        lines.append(f"  {visible(s.state):<19} {title}{activity}")
        lines.append(f"  {DIM}{visible(s.url)}{RESET}")
    lines.append("")
    if state.stopping:
        lines.append(f"{BOLD}stopping: ending every session…{RESET} (press q again to force)")
    else:
        lines.append(f"{DIM}space: QR code · w: toggle spawn mode · q: stop{RESET}")
    clipped = [line if len(line) < width + 40 else line[: width + 40] for line in lines]
    return "\n".join(clipped) + "\n"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@contextlib.contextmanager
def _cbreak(fd: int) -> Iterator[None]:
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


@attrs.define(eq=False)
class TerminalDisplay:
    """Draws :func:`render` on ``out`` and turns keys on ``stdin_fd`` into callbacks."""

    out: TextIO
    stdin_fd: int
    state: Callable[[], DisplayState]
    toggle_spawn: Callable[[], None]
    quit: Callable[[], None]
    refresh_interval: float = 0.5
    show_qr: bool = False
    _poke: trio.Event = attrs.Factory(trio.Event)

    def poke(self) -> None:
        """Redraw soon (something changed)."""
        self._poke.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Draw until cancelled; the terminal is restored on the way out, even on error."""
        with _cbreak(self.stdin_fd):
            self.out.write(HIDE_CURSOR)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read_keys)
                    task_status.started()
                    await self._draw_loop()
            finally:
                self.out.write(SHOW_CURSOR + "\n")
                self.out.flush()

    async def _draw_loop(self) -> None:
        last = ""
        while True:
            width = shutil.get_terminal_size((100, 40)).columns
            screen = render(self.state(), show_qr=self.show_qr, width=width)
            if screen != last:
                self.out.write(CLEAR + screen)
                self.out.flush()
                last = screen
            with trio.move_on_after(self.refresh_interval):
                await self._poke.wait()
            self._poke = trio.Event()

    async def _read_keys(self) -> None:
        stream = trio.lowlevel.FdStream(os.dup(self.stdin_fd))
        async with stream:
            while True:
                data = await stream.receive_some(64)
                if not data:
                    return
                for key in data.decode(errors="ignore"):
                    self._on_key(key)

    def _on_key(self, key: str) -> None:
        if key == " ":
            self.show_qr = not self.show_qr
        elif key in ("w", "W"):
            self.toggle_spawn()
        elif key in ("q", "Q"):
            self.quit()
        else:
            return
        self.poke()
