"""The terminal of ``rcd attach``: lines above, one prompt line at the bottom.

On a terminal (stdin and stdout both TTYs) the tty goes into cbreak mode without signals
(:func:`cbreak`), keys go through a small :class:`LineEditor`, and every printed line first
clears the prompt line and then redraws it with what is being typed, so live output never
garbles the input. Anywhere else (pipes, files) input is read line by line and no prompt is
drawn, so the output is plain lines.

Standard input is read in a worker thread, never with a non-blocking fd: stdin and stdout of
a terminal usually share one open file description, and ``O_NONBLOCK`` on it would make
ordinary writes to stdout fail with ``EAGAIN`` when the terminal is slow.
"""

from __future__ import annotations

import codecs
import os
import re
import shutil
import termios
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO

import attrs
import trio

_SGR = re.compile(r"\x1b\[[0-9;]*m")

__all__ = ["Console", "CtrlC", "EndOfInput", "Key", "LineEditor", "Submit", "cbreak", "keys"]


@attrs.frozen
class Submit:
    """Enter was pressed on ``text`` (or a line was read, off a terminal)."""

    text: str


@attrs.frozen
class CtrlC:
    """Ctrl-C; ``discarded`` is the typed text it cleared (empty if there was none)."""

    discarded: str = ""


@attrs.frozen
class EndOfInput:
    """Ctrl-D on an empty line, or the end of standard input."""


Key = Submit | CtrlC | EndOfInput


@attrs.define
class LineEditor:
    """Turns the bytes of a terminal in cbreak mode into :data:`Key` actions.

    Knows Enter, Backspace, Ctrl-U (clear), Ctrl-W (delete a word), Ctrl-C and Ctrl-D;
    skips escape sequences (arrow keys and the like) and other control keys.
    """

    text: str = ""
    _escape: str = ""  # "" | "esc" (after ESC) | "csi" (inside ESC [ ...) | "ss3" (ESC O)
    _decoder: codecs.IncrementalDecoder = attrs.Factory(
        lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )

    def feed(self, data: bytes) -> list[Key]:
        keys: list[Key] = []
        for char in self._decoder.decode(data):
            key = self._char(char)
            if key is not None:
                keys.append(key)
        return keys

    def _char(self, char: str) -> Key | None:
        if self._escape == "esc":
            self._escape = {"[": "csi", "O": "ss3"}.get(char, "")
            return None
        if self._escape == "csi":
            if "@" <= char <= "~":
                self._escape = ""
            return None
        if self._escape == "ss3":
            self._escape = ""
            return None
        if char in "\r\n":
            line, self.text = self.text, ""
            return Submit(line)
        if char == "\x03":
            line, self.text = self.text, ""
            return CtrlC(line)
        if char == "\x04":
            return EndOfInput() if not self.text else None
        if char in "\x7f\x08":
            self.text = self.text[:-1]
        elif char == "\x15":
            self.text = ""
        elif char == "\x17":
            self.text = self.text.rstrip()
            self.text = self.text[: self.text.rfind(" ") + 1]
        elif char == "\x1b":
            self._escape = "esc"
        elif char == "\t":
            self.text += " "
        elif char.isprintable():
            self.text += char
        return None


@attrs.define(eq=False)
class Console:
    """Where output goes. With ``interactive`` it keeps a prompt line at the bottom."""

    out: TextIO
    interactive: bool
    editor: LineEditor = attrs.Factory(LineEditor)
    prompt: str = ""
    #: A fixed width; None asks the terminal each time (it may have been resized).
    columns: int | None = None

    def width(self) -> int:
        return self.columns or shutil.get_terminal_size((100, 24)).columns

    def print(self, lines: Iterable[str]) -> None:
        """Print ``lines`` above the prompt line."""
        text = "".join(f"{line}\n" for line in lines)
        if self.interactive:
            self.out.write("\r\x1b[K" + text + self._prompt_line())
        else:
            self.out.write(text)
        self.out.flush()

    def set_prompt(self, prompt: str) -> None:
        if prompt != self.prompt:
            self.prompt = prompt
            self.redraw()

    def redraw(self) -> None:
        if self.interactive:
            self.out.write("\r\x1b[K" + self._prompt_line())
            self.out.flush()

    def _prompt_line(self) -> str:
        # Only what fits on one row: a wrapped prompt could not be cleared with \r\x1b[K.
        room = max(8, self.width() - len(_SGR.sub("", self.prompt)) - 1)
        typed = self.editor.text
        return self.prompt + (typed if len(typed) <= room else "…" + typed[-(room - 1) :])

    def close(self) -> None:
        """Leave the terminal on a fresh line, without the prompt."""
        if self.interactive:
            self.out.write("\r\x1b[K")
            self.out.flush()


@contextmanager
def cbreak(fd: int) -> Iterator[None]:
    """Characters one by one, no echo, no signals from keys (Ctrl-C arrives as a byte);
    output processing stays on. The previous mode is restored on exit, whatever happens."""
    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG | termios.IEXTEN)
    mode[6][termios.VMIN] = 1
    mode[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, mode)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def _read(fd: int) -> bytes:
    # Abandoned on cancel: the thread stays blocked in read() until the process exits
    # (trio's worker threads are daemon threads), which only happens when attach quits.
    return await trio.to_thread.run_sync(os.read, fd, 4096, abandon_on_cancel=True)


async def keys(fd: int, console: Console) -> AsyncIterator[Key]:
    """The keys (on a terminal) or lines (elsewhere) read from ``fd``, then EndOfInput."""
    if console.interactive:
        while data := await _read(fd):
            for key in console.editor.feed(data):
                yield key
            # Echo what was typed (this is also what Ctrl-L does: draw the line anew).
            console.redraw()
        yield EndOfInput()
        return
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    while data := await _read(fd):
        pending += decoder.decode(data)
        *lines, pending = pending.split("\n")
        for line in lines:
            yield Submit(line.rstrip("\r"))
    pending += decoder.decode(b"", final=True)
    if pending:
        yield Submit(pending)
    yield EndOfInput()
