"""The daemon's control socket: what ``rcd status`` asks and what the daemon answers.

One JSON object per line each way (``daemon/control.py``). The socket is local (mode 0600),
but its reply is still decoded like anything else from outside the process: with
:func:`wire.decode`, so an older or newer daemon's reply is an error that says what differs,
never a ``KeyError`` in ``rcd status``.
"""

from __future__ import annotations

from typing import Literal

import attrs

from .events import SessionState, Spawn
from .settings import SettingsView

__all__ = [
    "ControlRequest",
    "EnvironmentStatus",
    "KeptWorktreeStatus",
    "LinkStatus",
    "ProcessStatus",
    "SessionStatus",
    "SpareWorktreesStatus",
    "StatusReport",
    "UplinkStatus",
]


@attrs.frozen(kw_only=True)
class ControlRequest:
    """``{"op": "status"}``, or ``{"op": "set_spawn", "spawn": "worktree"}`` (which also
    answers with the status)."""

    op: Literal["status", "set_spawn"] = "status"
    spawn: Spawn | None = None


@attrs.frozen(kw_only=True)
class EnvironmentStatus:
    id: str
    name: str
    relay: str
    connected: bool
    spawn: Spawn
    capacity: int
    directory: str


@attrs.frozen(kw_only=True)
class SessionStatus:
    id: str
    title: str | None
    state: SessionState
    cwd: str | None
    branch: str | None
    pid: int | None
    #: The agent it runs (``claude``, ``codex``...); None from a daemon of before agents.
    agent: str | None = None


@attrs.frozen(kw_only=True)
class LinkStatus:
    """The downlink: how often it (re)connected, and why it last went down."""

    connects: int
    last_error: str | None


@attrs.frozen(kw_only=True)
class UplinkStatus:
    """Events waiting to go up, and how they went so far."""

    buffered_events: int
    batches: int
    requests: int
    batches_on_open_requests: int
    failures: int


@attrs.frozen(kw_only=True)
class ProcessStatus:
    """The daemon process (Linux /proc; zeros elsewhere). None of it may grow over time."""

    rss_kib: int
    open_files: int
    tasks: int
    children: int


@attrs.frozen(kw_only=True)
class KeptWorktreeStatus:
    """A worktree kept because it holds work (rcd never deletes those)."""

    path: str
    branch: str | None
    reasons: list[str]


@attrs.frozen(kw_only=True)
class SpareWorktreesStatus:
    """Worktrees checked out ahead of need (``--spawn worktree``)."""

    ready: int
    size: int
    filling: bool
    taken: int


@attrs.frozen(kw_only=True)
class StatusReport:
    """The daemon's answer to every control request."""

    environment: EnvironmentStatus
    sessions: list[SessionStatus]
    link: LinkStatus
    uplink: UplinkStatus
    process: ProcessStatus
    kept_worktrees: list[KeptWorktreeStatus]
    #: None until the pool runs (same-dir, or not a repository).
    spare_worktrees: SpareWorktreesStatus | None = None
    #: What new sessions start with (see :mod:`wire.settings`).
    settings: SettingsView | None = None
