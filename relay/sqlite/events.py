"""Session logs: the events a daemon uploads, stored as a dense run per session (``seq`` from
1) and indexed into the session's row (title, state, permission requests) as they land."""

from __future__ import annotations

import json
from collections.abc import Sequence

from wire import Event

from ..errors import ApiError, NotFound
from ..indexing import index_events
from ..records import Appended
from .connection import SqliteConnection
from .directives import acknowledge
from .environments import registered_by
from .sessions import find_session

__all__ = ["append_events", "append_many", "read_events"]


def append_events(
    db: SqliteConnection,
    session_id: str,
    events: Sequence[Event],
    *,
    credential_id: str | None = None,
) -> int:
    """Store the contiguous run of new events and index them; returns the highest
    contiguous seq held. Duplicates are ignored. Raises NotFound, also when
    ``credential_id`` is given and did not register the session's environment."""
    with db.write():
        return _append(db, session_id, events, credential_id).acked


def append_many(
    db: SqliteConnection,
    batches: Sequence[tuple[str, Sequence[Event]]],
    *,
    credential_id: str,
    ack: tuple[str, int] | None = None,
) -> list[Appended | ApiError]:
    """:func:`append_events` for several sessions in one transaction; each session's
    outcome (what it stored, or the error its events alone got) in order. ``ack``
    (environment id, dseq) acknowledges directives in the same transaction."""
    results: list[Appended | ApiError] = []
    with db.write():
        if ack is not None:
            environment_id, through = ack
            # The link token was checked when the request opened, maybe seconds ago.
            if not registered_by(db, environment_id, credential_id):
                raise NotFound(f"no environment {environment_id}")
            acknowledge(db, environment_id, through)
        for session_id, events in batches:
            # A session refused (unknown, not this credential's) is refused before anything
            # of it is written: no savepoint to roll back to.
            try:
                results.append(_append(db, session_id, events, credential_id))
            except ApiError as exc:
                results.append(exc)
    return results


def _append(
    db: SqliteConnection, session_id: str, events: Sequence[Event], credential_id: str | None
) -> Appended:
    session = find_session(db, session_id)
    # The uplink's ownership check shares the write's transaction (one storage call per
    # batch instead of three).
    if credential_id is not None and not registered_by(db, session.environment_id, credential_id):
        raise NotFound(f"no session {session_id}")
    held = session.last_seq
    accepted: list[Event] = []
    # Only a contiguous run is stored: the log stays dense, and the answer tells the daemon
    # exactly where to resume.
    for event in sorted(events, key=lambda e: e.seq):
        if event.seq <= held:
            continue
        if event.seq != held + 1:
            break
        accepted.append(event)
        held = event.seq
    first_new = session.last_seq + 1
    if not accepted:
        return Appended(acked=held, first_new=first_new)
    rows = [
        (session_id, e.seq, e.kind, e.at, json.dumps(e.data, separators=(",", ":")))
        for e in accepted
    ]
    db.executemany(
        "INSERT INTO events (session_id, seq, kind, at, data) VALUES (?, ?, ?, ?, ?)", rows
    )
    db.bytes_written += sum(len(row[4]) for row in rows)
    update = index_events(session, accepted, db.now())
    s = update.session
    db.execute(
        "UPDATE sessions SET title = ?, state = ?, spawn = ?, cwd = ?, branch = ?,"
        " agent_session_id = ?, agent = ?, last_seq = ?, updated_at = ? WHERE id = ?",
        (
            s.title,
            s.state,
            s.spawn,
            s.cwd,
            s.branch,
            s.agent_session_id,
            s.agent,
            s.last_seq,
            s.updated_at,
            session_id,
        ),
    )
    if update.permission_requests:
        db.executemany(
            "INSERT OR IGNORE INTO permission_requests (session_id, request_id) VALUES (?, ?)",
            [(session_id, r) for r in update.permission_requests],
        )
    if update.permission_resolutions:
        db.executemany(
            "INSERT INTO permission_requests (session_id, request_id, resolved)"
            " VALUES (?, ?, 1) ON CONFLICT (session_id, request_id) DO UPDATE SET resolved = 1",
            [(session_id, r) for r in update.permission_resolutions],
        )
    return Appended(acked=held, first_new=first_new)


def read_events(db: SqliteConnection, session_id: str, after: int, limit: int) -> list[Event]:
    """Up to ``limit`` of the session's events after seq ``after``, in order."""
    rows = db.execute(
        "SELECT seq, kind, at, data FROM events WHERE session_id = ? AND seq > ?"
        " ORDER BY seq LIMIT ?",
        (session_id, after, limit),
    ).fetchall()
    return [Event(seq=r[0], kind=r[1], at=r[2], data=json.loads(r[3])) for r in rows]
