"""Telling one process apart from a later one that gets the same pid: its start time, field
22 of ``/proc/<pid>/stat`` (clock ticks after boot). Without ``/proc`` (macOS) nothing is
known, and callers fall back to what they can check otherwise."""

from __future__ import annotations

from pathlib import Path

import attrs

__all__ = ["ProcessId", "Stat", "process_id", "stat_of"]


@attrs.frozen(kw_only=True)
class ProcessId:
    """One process, told apart from any later one that gets the same pid."""

    pid: int
    #: Clock ticks after boot when it started (field 22 of ``/proc/<pid>/stat``).
    start: int


@attrs.frozen
class Stat:
    """What ``/proc/<pid>/stat`` says of a live process."""

    pid: int
    state: str
    session: int
    start: int


def stat_of(pid: int) -> Stat | None:
    """``/proc/<pid>/stat`` of a live process (a zombie counts as gone); None without it."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text.rsplit(")", 1)[-1].split()
    try:
        stat = Stat(pid=pid, state=fields[0], session=int(fields[3]), start=int(fields[19]))
    except (IndexError, ValueError):
        return None
    return None if stat.state in ("Z", "X", "x") else stat


def process_id(pid: int) -> ProcessId | None:
    """The live process ``pid`` as a :class:`ProcessId`; None if it is gone (or unknowable:
    no ``/proc``)."""
    stat = stat_of(pid)
    return None if stat is None else ProcessId(pid=pid, start=stat.start)
