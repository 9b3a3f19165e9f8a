"""Session events: the append-only log every client reads.

The log has one writer, the daemon. Each :class:`Event` carries a dense ``seq`` from 1 per
session, a ``kind`` and a ``data`` object. The relay treats ``data`` as opaque except the few
fields it indexes (state, title, cwd, branch), so clients and daemon could later encrypt it.
The typed payload classes below are what the daemon writes and what clients may decode with
:func:`decode_event_data`.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from .converter import decode, encode

__all__ = [
    "EVENT_KINDS",
    "AssistantText",
    "Error",
    "Event",
    "EventData",
    "GitAction",
    "PermissionRequest",
    "PermissionResolved",
    "SessionEnded",
    "SessionStarted",
    "SessionState",
    "Spawn",
    "Status",
    "ToolResult",
    "ToolUse",
    "TurnResult",
    "UserMessage",
    "decode_event_data",
    "event_kind",
    "make_event",
]

Spawn = Literal["same-dir", "worktree"]
SessionState = Literal[
    "queued", "starting", "idle", "busy", "awaiting_permission", "ending", "ended"
]
Decision = Literal["allow", "deny"]


@attrs.frozen(kw_only=True)
class SessionStarted:
    cwd: str
    spawn: Spawn
    branch: str | None
    agent: str
    agent_session_id: str | None


@attrs.frozen(kw_only=True)
class UserMessage:
    text: str
    input_id: str
    origin: str


@attrs.frozen(kw_only=True)
class AssistantText:
    text: str


@attrs.frozen(kw_only=True)
class ToolUse:
    id: str
    name: str
    input: dict[str, Any]


@attrs.frozen(kw_only=True)
class ToolResult:
    tool_use_id: str
    content: str
    is_error: bool


@attrs.frozen(kw_only=True)
class PermissionRequest:
    request_id: str
    tool: str
    input: dict[str, Any]
    description: str


@attrs.frozen(kw_only=True)
class PermissionResolved:
    request_id: str
    decision: Decision
    #: Who answered: a client's name, ``grant`` (then :attr:`grant` names it),
    #: ``turn_ended``, ``agent_cancelled``...
    origin: str
    #: The approval grant that answered it (:mod:`wire.grants`); left out when None.
    grant: str | None = None


@attrs.frozen(kw_only=True)
class TurnResult:
    ok: bool
    duration_ms: int
    cost_usd: float | None


@attrs.frozen(kw_only=True)
class Status:
    state: SessionState


@attrs.frozen(kw_only=True)
class Error:
    code: str
    message: str


@attrs.frozen(kw_only=True)
class SessionEnded:
    reason: str
    worktree_kept: bool
    branch: str | None
    #: Why the worktree or its branch was kept ("uncommitted changes", "2 commits not in
    #: its base"); empty when nothing was kept.
    kept_reasons: list[str] = attrs.Factory(list)


@attrs.frozen(kw_only=True)
class GitAction:
    """Work landed or thrown away from a client: ``action`` is commit, merge, push or
    discard; ``summary`` says what happened ("merged rcd/fix into main (merge commit …)")."""

    action: str
    origin: str
    summary: str
    commit: str | None = None


EventData = (
    SessionStarted
    | UserMessage
    | AssistantText
    | ToolUse
    | ToolResult
    | PermissionRequest
    | PermissionResolved
    | TurnResult
    | Status
    | Error
    | SessionEnded
    | GitAction
)

_KINDS: dict[type[Any], str] = {
    SessionStarted: "session_started",
    UserMessage: "user_message",
    AssistantText: "assistant_text",
    ToolUse: "tool_use",
    ToolResult: "tool_result",
    PermissionRequest: "permission_request",
    PermissionResolved: "permission_resolved",
    TurnResult: "turn_result",
    Status: "status",
    Error: "error",
    SessionEnded: "session_ended",
    GitAction: "git_action",
}
_TYPES: dict[str, type[Any]] = {kind: cls for cls, kind in _KINDS.items()}

#: Every event kind, in the order DESIGN.md lists them.
EVENT_KINDS: tuple[str, ...] = tuple(_KINDS.values())


@attrs.frozen(kw_only=True)
class Event:
    """One entry of a session log.

    ``at`` is the daemon's wall clock in seconds since the epoch; ``data`` is the payload
    as plain JSON (see the payload classes for each ``kind``).
    """

    seq: int = attrs.field(validator=attrs.validators.ge(1))
    kind: str = attrs.field(validator=attrs.validators.in_(EVENT_KINDS))
    at: float
    data: dict[str, Any]


def event_kind(payload: EventData) -> str:
    """The ``kind`` string of a payload instance."""
    return _KINDS[type(payload)]


def make_event(seq: int, at: float, payload: EventData) -> Event:
    """Wrap a typed payload into an :class:`Event`."""
    return Event(seq=seq, kind=event_kind(payload), at=at, data=encode(payload))


def decode_event_data(event: Event) -> EventData:
    """Decode an event's ``data`` into its typed payload (raises ``DecodeError``)."""
    payload: EventData = decode(_TYPES[event.kind], event.data)
    return payload
