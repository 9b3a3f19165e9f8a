"""A session's overflow of unsent events, on disk: a FIFO of JSON lines.

While the relay is away the daemon keeps every session running; its events wait in memory
up to a bound, then here, in the state directory. The file survives a crash: a restarted
daemon sends what it holds before it closes the session (see :func:`recover`).

Appends are small, sequential writes to a local file; they happen only during an outage.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import structlog

import wire

__all__ = ["Spool", "spooled_sessions"]

log = structlog.get_logger("daemon.spool")


class Spool:
    """Append at the tail, read from the head; the file is removed once read to the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self.count = 0
        if path.exists():
            self.count = sum(1 for _ in self._lines(0))

    def _lines(self, offset: int) -> Iterator[tuple[int, bytes]]:
        with self.path.open("rb") as f:
            f.seek(offset)
            for line in f:
                offset += len(line)
                if line.strip():
                    yield offset, line

    def append(self, event: wire.Event) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as f:
            f.write(wire.encode_json(event).encode() + b"\n")
        self.count += 1

    def first(self) -> wire.Event | None:
        """The oldest event in the spool (without taking it)."""
        for _, line in self._lines(self._offset):
            try:
                return wire.decode_json(wire.Event, line)
            except wire.DecodeError:
                continue
        return None

    def discard(self) -> None:
        """Forget everything spooled."""
        self.path.unlink(missing_ok=True)
        self.count = 0
        self._offset = 0

    def last(self) -> wire.Event | None:
        """The newest event in the spool (without taking anything)."""
        newest: wire.Event | None = None
        for _, line in self._lines(self._offset):
            try:
                newest = wire.decode_json(wire.Event, line)
            except wire.DecodeError:
                continue
        return newest

    def read(self, limit: int) -> list[wire.Event]:
        """Take up to ``limit`` of the oldest events (a damaged line is logged and skipped)."""
        if not self.count:
            return []
        events: list[wire.Event] = []
        for offset, line in self._lines(self._offset):
            self._offset = offset
            self.count -= 1
            try:
                events.append(wire.decode_json(wire.Event, line))
            except wire.DecodeError as exc:
                log.error("spool_line_unreadable", path=str(self.path), problem=str(exc))
            if len(events) >= limit:
                break
        if self.count <= 0:
            self.count = 0
            self.path.unlink(missing_ok=True)
            self._offset = 0
        return events


def spooled_sessions(directory: Path) -> list[str]:
    """Session ids with a spool file left in ``directory`` (by an earlier run)."""
    try:
        return sorted(p.stem for p in directory.glob("*.jsonl"))
    except OSError:
        return []
