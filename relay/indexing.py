"""The few fields the relay reads out of a session's events.

Everything else in an event's ``data`` is opaque to the relay (so clients and daemon could
later encrypt it). These kinds are read, and only these fields:

* ``status`` → the session's state;
* ``session_started`` → cwd, spawn, branch, agent_session_id (and ``idle`` if it was still
  queued or starting);
* ``session_ended`` → state ``ended``;
* the first ``user_message`` → the title, if the session has none;
* ``permission_request`` / ``permission_resolved`` → which request ids exist and which are
  answered.

The functions are pure so every storage backend applies exactly the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from wire import (
    DecodeError,
    Event,
    PermissionRequest,
    PermissionResolved,
    SessionEnded,
    SessionStarted,
    Status,
    UserMessage,
    decode_event_data,
)

from .records import SessionRecord

__all__ = [
    "INDEXED_KINDS",
    "IndexUpdate",
    "check_indexed_payloads",
    "index_events",
    "title_from_text",
]

INDEXED_KINDS = frozenset(
    {
        "status",
        "session_started",
        "session_ended",
        "user_message",
        "permission_request",
        "permission_resolved",
    }
)

TITLE_MAX_CHARS = 80


def title_from_text(text: str | None) -> str | None:
    """The first non-blank line of ``text``, trimmed to about 80 characters, or None."""
    if text is None:
        return None
    for line in text.splitlines():
        line = line.strip()
        if line:
            if len(line) > TITLE_MAX_CHARS:
                return line[: TITLE_MAX_CHARS - 1].rstrip() + "…"
            return line
    return None


def check_indexed_payloads(events: Iterable[Event]) -> None:
    """Raise :class:`wire.DecodeError` if an event the relay indexes has malformed ``data``.

    Called before anything is stored, so a bad batch changes nothing.
    """
    for i, event in enumerate(events):
        if event.kind in INDEXED_KINDS:
            try:
                decode_event_data(event)
            except DecodeError as exc:
                problems = [f"events[{i}] ({event.kind} data): {p}" for p in exc.problems]
                raise DecodeError(exc.type_name, problems) from None


@attrs.frozen(kw_only=True)
class IndexUpdate:
    """A session's indexed fields after some events, and the permission ids they touched."""

    session: SessionRecord
    #: request ids seen in ``permission_request`` events, in order.
    permission_requests: list[str]
    #: request ids seen in ``permission_resolved`` events, in order.
    permission_resolutions: list[str]


def index_events(session: SessionRecord, events: Iterable[Event], now: float) -> IndexUpdate:
    """Apply ``events`` (already accepted, in seq order) to ``session``'s indexed fields.

    ``data`` must have passed :func:`check_indexed_payloads`.
    """
    fields = attrs.asdict(session, recurse=False)
    requests: list[str] = []
    resolutions: list[str] = []
    for event in events:
        fields["last_seq"] = max(fields["last_seq"], event.seq)
        if event.kind not in INDEXED_KINDS:
            continue
        payload = decode_event_data(event)
        if isinstance(payload, Status):
            fields["state"] = payload.state
        elif isinstance(payload, SessionStarted):
            fields.update(
                cwd=payload.cwd,
                spawn=payload.spawn,
                branch=payload.branch,
                agent_session_id=payload.agent_session_id,
                agent=payload.agent,
            )
            if fields["state"] in ("queued", "starting"):
                fields["state"] = "idle"
        elif isinstance(payload, SessionEnded):
            fields["state"] = "ended"
        elif isinstance(payload, UserMessage):
            if fields["title"] is None:
                fields["title"] = title_from_text(payload.text)
        elif isinstance(payload, PermissionRequest):
            requests.append(payload.request_id)
        elif isinstance(payload, PermissionResolved):
            resolutions.append(payload.request_id)
    fields["updated_at"] = now
    return IndexUpdate(
        session=SessionRecord(**fields),
        permission_requests=requests,
        permission_resolutions=resolutions,
    )
