"""Sessions: creating and resuming them (with the directive that starts them, atomically),
looking them up, renaming them, and queueing clients' inputs toward them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from wire import DecidePermission, ResumeSession, SendMessage, StartSession, StopSession

from ..errors import Conflict, NotFound, NotResumable, SessionEnded
from ..records import ClientProof, Enqueued, NewSession, SessionInput, SessionRecord
from .clients import authenticate_client
from .connection import SqliteConnection
from .directives import enqueue
from .environments import OFFLINE_SINCE, check_reachable, check_room

__all__ = [
    "create_session",
    "find_session",
    "get_session",
    "list_sessions",
    "rename_session",
    "resume_session",
    "submit_input",
]

_SESSION_COLUMNS = (
    "id, environment_id, title, state, spawn, cwd, branch, agent_session_id,"
    " created_at, updated_at, last_seq,"
    f" (SELECT {OFFLINE_SINCE} FROM environments e WHERE e.id = sessions.environment_id),"
    " sandbox, agent,"
    " (SELECT agent FROM environments e WHERE e.id = sessions.environment_id)"
)


def _session(row: Sequence[Any]) -> SessionRecord:
    return SessionRecord(
        id=row[0],
        environment_id=row[1],
        title=row[2],
        state=row[3],
        spawn=row[4],
        cwd=row[5],
        branch=row[6],
        agent_session_id=row[7],
        created_at=row[8],
        updated_at=row[9],
        last_seq=row[10],
        environment_offline_since=row[11],
        sandbox=bool(row[12]),
        agent=row[13],
        environment_agent=row[14],
    )


def find_session(db: SqliteConnection, session_id: str) -> SessionRecord:
    """The session; NotFound if there is none."""
    row = db.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,))
    found = row.fetchone()
    if found is None:
        raise NotFound(f"no session {session_id}")
    return _session(found)


def get_session(db: SqliteConnection, session_id: str) -> SessionRecord | None:
    try:
        return find_session(db, session_id)
    except NotFound:
        return None


def list_sessions(db: SqliteConnection) -> list[SessionRecord]:
    """Newest first."""
    rows = db.execute(
        f"SELECT {_SESSION_COLUMNS} FROM sessions ORDER BY created_at DESC, rowid DESC"
    ).fetchall()
    return [_session(r) for r in rows]


def create_session(db: SqliteConnection, new: NewSession, start: StartSession) -> SessionRecord:
    """Store a queued session and enqueue ``start``, atomically. Raises NotFound,
    EnvironmentOffline or AtCapacity."""
    now = db.now()
    with db.write():
        # Capacity check, insert and enqueue share this one transaction, so concurrent
        # creates can never exceed the environment's capacity.
        default_spawn = check_room(db, new.environment_id)
        db.execute(
            "INSERT INTO sessions (id, environment_id, title, state, spawn, sandbox, agent,"
            " created_at, updated_at) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
            (
                new.id,
                new.environment_id,
                new.title,
                new.spawn or default_spawn,
                int(start.sandbox),
                start.agent,
                now,
                now,
            ),
        )
        enqueue(db, new.environment_id, start)
        return find_session(db, new.id)


def rename_session(db: SqliteConnection, session_id: str, title: str) -> SessionRecord:
    """Raises NotFound."""
    with db.write():
        db.execute(
            "UPDATE sessions SET title = ?, updated_at = ? WHERE id = ?",
            (title, db.now(), session_id),
        )
        return find_session(db, session_id)


def submit_input(
    db: SqliteConnection,
    session_id: str,
    directive: SessionInput,
    client: ClientProof | None = None,
    *,
    offline_grace: float | None = None,
) -> Enqueued | None:
    """Enqueue an input for the session's daemon; see :meth:`relay.storage.Storage.submit_input`."""
    with db.write():
        if client is not None:
            principal = authenticate_client(db, client)
            directive = attrs.evolve(directive, origin=principal.name)
        session = find_session(db, session_id)
        if isinstance(directive, SendMessage):
            # A client retrying the same message id gets the same answer, once.
            seen = db.execute(
                "INSERT OR IGNORE INTO message_inputs (session_id, input_id) VALUES (?, ?)",
                (session_id, directive.input_id),
            )
            if seen.rowcount == 0:
                return None
        if session.state == "ended":
            raise SessionEnded(session_id)
        if offline_grace is not None and not isinstance(directive, StopSession):
            check_reachable(db, session.environment_id, offline_grace)
        if isinstance(directive, DecidePermission):
            _check_undecided(db, session_id, directive.request_id)
        dseq = enqueue(db, session.environment_id, directive)
        return Enqueued(environment_id=session.environment_id, dseq=dseq, directive=directive)


def _check_undecided(db: SqliteConnection, session_id: str, request_id: str) -> None:
    """Raise unless the session has asked ``request_id`` and it is not resolved yet."""
    row = db.execute(
        "SELECT resolved FROM permission_requests WHERE session_id = ? AND request_id = ?",
        (session_id, request_id),
    ).fetchone()
    if row is None:
        raise NotFound(
            f"session {session_id} has no permission request {request_id!r}",
            code="unknown_permission_request",
        )
    if row[0]:
        raise Conflict(
            "permission_already_resolved", f"permission request {request_id!r} is already resolved"
        )


def resume_session(db: SqliteConnection, session_id: str) -> SessionRecord:
    """Queue an ended session again and enqueue its ResumeSession. Raises NotFound,
    NotResumable, EnvironmentOffline or AtCapacity."""
    with db.write():
        session = find_session(db, session_id)
        if session.state != "ended":
            raise NotResumable(session_id, f"it is {session.state}, not ended")
        if session.agent_session_id is None or session.cwd is None or session.spawn is None:
            raise NotResumable(session_id, "its agent reported no session id to resume")
        check_room(db, session.environment_id)
        db.execute(
            "UPDATE sessions SET state = 'queued', updated_at = ? WHERE id = ?",
            (db.now(), session_id),
        )
        # Its agent goes along when it is not the daemon's default (the client API checked
        # that this daemon runs it).
        agent = session.agent if session.agent != session.environment_agent else None
        enqueue(
            db,
            session.environment_id,
            ResumeSession(
                session_id=session_id,
                agent_session_id=session.agent_session_id,
                cwd=session.cwd,
                spawn=session.spawn,
                branch=session.branch,
                last_seq=session.last_seq,
                sandbox=session.sandbox,
                agent=agent,
            ),
        )
        return find_session(db, session_id)
