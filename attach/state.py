"""What ``rcd attach`` knows about its session, derived from the event log alone.

Everything shown comes from the log, so several clients on one session agree: a message
typed here is *pending* until its ``user_message`` echo arrives, and a permission request
is open until a ``permission_resolved`` event closes it, whoever answered it.
"""

from __future__ import annotations

import attrs

import wire

from .api import LogEntry

__all__ = ["Gap", "SessionView"]


class Gap(Exception):
    """An event arrived out of order (some were missed): re-read from the last one shown."""


@attrs.define(eq=False)
class SessionView:
    state: str = "queued"
    #: The highest seq shown; every event with a seq at or below it is a duplicate.
    last_seq: int = 0
    ended: bool = False
    #: Messages this client posted whose echo has not arrived: input id → text.
    pending_messages: dict[str, str] = attrs.Factory(dict)
    #: Open permission requests, oldest first.
    open_requests: dict[str, wire.PermissionRequest] = attrs.Factory(dict)
    #: Requests this client has answered, until the log says they are resolved.
    answered: set[str] = attrs.Factory(set)
    #: Every request and tool call seen, to name them in later lines.
    requests: dict[str, wire.PermissionRequest] = attrs.Factory(dict)
    tools: dict[str, wire.ToolUse] = attrs.Factory(dict)
    #: The reply being written, until a later event (see :mod:`wire.partial`).
    writing: wire.Shown | None = None

    def accept(self, entry: LogEntry) -> bool:
        """Apply ``entry``; False if it was already shown (a duplicate after a reconnect).

        Raises :class:`Gap` if events before it are missing.
        """
        if entry.seq <= self.last_seq:
            return False
        if entry.seq != self.last_seq + 1:
            raise Gap(f"expected event {self.last_seq + 1}, got {entry.seq}")
        self.last_seq = entry.seq
        if self.writing is not None and entry.seq > self.writing.after_seq:
            self.writing = None
        self._apply(entry.payload)
        return True

    def partial(self, partial: wire.AssistantPartial) -> bool:
        """Apply a piece of the reply being written; whether what is shown changed."""
        writing = wire.apply_partial(self.writing, partial, self.last_seq)
        changed = writing != self.writing
        self.writing = writing
        return changed

    def _apply(self, payload: wire.EventData | None) -> None:
        match payload:
            case wire.Status(state=state):
                self.state = state
                self.ended = state == "ended"
            case wire.SessionStarted():
                self.ended = False
            case wire.UserMessage(input_id=input_id):
                self.pending_messages.pop(input_id, None)
            case wire.ToolUse(id=tool_id):
                self.tools[tool_id] = payload
            case wire.PermissionRequest(request_id=request_id):
                self.requests[request_id] = payload
                self.open_requests[request_id] = payload
            case wire.PermissionResolved(request_id=request_id):
                self.open_requests.pop(request_id, None)
                self.answered.discard(request_id)
            case wire.SessionEnded():
                self.state = "ended"
                self.ended = True
                self.open_requests.clear()
                self.answered.clear()
            case _:
                pass

    def next_request(self) -> wire.PermissionRequest | None:
        """The oldest open request this client has not answered yet: what ``y``/``n`` answer."""
        for request_id, request in self.open_requests.items():
            if request_id not in self.answered:
                return request
        return None

    @property
    def working(self) -> bool:
        """Whether the agent is in a turn (so there is something to interrupt)."""
        return self.state in ("busy", "awaiting_permission")
