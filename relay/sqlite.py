"""The SQLite backend's synchronous core: environments, directives, sessions and their logs.

:class:`SqliteDatabase` is not thread-safe; callers serialise access. The relay reaches it
only through :class:`relay.storage.SqliteStorage` (which runs each call whole on the event
loop, and never waits there for a lock or a sync to disk); the admin commands use it
directly. See
:mod:`relay.sqlite_base` for the file, the schema and how several processes share it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, cast

import attrs

from wire import (
    DecidePermission,
    Directive,
    Event,
    OpenSession,
    RegisterRequest,
    RegisterResponse,
    ResumeSession,
    SendMessage,
    StartSession,
    StopSession,
    decode_json,
    encode_json,
)

from .errors import (
    ApiError,
    AtCapacity,
    Conflict,
    CredentialRevoked,
    EnvironmentOffline,
    NotFound,
    NotResumable,
    SessionEnded,
)
from .ids import new_id
from .indexing import index_events
from .records import (
    REVOKED_CREDENTIAL,
    Appended,
    ClientProof,
    DownlinkRead,
    Enqueued,
    EnvironmentRecord,
    NewSession,
    QueuedDirective,
    SessionInput,
    SessionRecord,
    owned_environment,
)
from .sqlite_base import DATABASE_FILENAME, database_path
from .sqlite_credentials import SqliteCredentials

__all__ = ["DATABASE_FILENAME", "SqliteDatabase", "database_path"]


# An environment's ``updated_at`` is also when its link last opened or closed, so while it
# has no link it says since when it has been offline.
_OFFLINE_SINCE = "CASE WHEN e.link_id IS NULL THEN e.updated_at END"
_SESSION_COLUMNS = (
    "id, environment_id, title, state, spawn, cwd, branch, agent_session_id,"
    " created_at, updated_at, last_seq,"
    f" (SELECT {_OFFLINE_SINCE} FROM environments e WHERE e.id = sessions.environment_id)"
)
_ENVIRONMENT_QUERY = f"""
SELECT e.id, e.credential_id, e.name, e.machine, e.directory, e.spawn, e.capacity, e.agent,
       e.link_id IS NOT NULL,
       (SELECT COUNT(*) FROM sessions s WHERE s.environment_id = e.id AND s.state != 'ended'),
       {_OFFLINE_SINCE}, e.hostname
FROM environments e
"""


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
    )


def _environment(row: Sequence[Any]) -> EnvironmentRecord:
    return EnvironmentRecord(
        id=row[0],
        credential_id=row[1],
        name=row[2],
        machine=row[3],
        directory=row[4],
        spawn=row[5],
        capacity=row[6],
        agent=row[7],
        online=bool(row[8]),
        active_sessions=row[9],
        offline_since=row[10],
        hostname=row[11],
    )


class SqliteDatabase(SqliteCredentials):
    """The relay's state in one SQLite file. Each public method is one transaction.

    Conflicts are raised as the :mod:`relay.errors` API errors from inside the
    transaction (which then rolls back), so a check and the write it guards are atomic.
    """

    # -- environments ------------------------------------------------------------------------

    def register_environment(
        self, credential_id: str, request: RegisterRequest
    ) -> RegisterResponse:
        now = self._clock()
        with self._write() as db:
            row = db.execute(
                "SELECT id FROM environments"
                " WHERE credential_id = ? AND machine = ? AND directory = ? AND name = ?",
                (credential_id, request.machine, request.directory, request.name),
            ).fetchone()
            if row is None:
                environment_id = new_id("env")
                db.execute(
                    "INSERT INTO environments (id, credential_id, name, machine, directory,"
                    " spawn, capacity, agent, hostname, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        environment_id,
                        credential_id,
                        request.name,
                        request.machine,
                        request.directory,
                        request.spawn,
                        request.capacity,
                        request.agent,
                        request.hostname,
                        now,
                        now,
                    ),
                )
            else:
                environment_id = row[0]
                db.execute(
                    "UPDATE environments SET spawn = ?, capacity = ?, agent = ?,"
                    " hostname = COALESCE(?, hostname), updated_at = ? WHERE id = ?",
                    (
                        request.spawn,
                        request.capacity,
                        request.agent,
                        request.hostname,
                        now,
                        environment_id,
                    ),
                )
            open_sessions = [
                OpenSession(session_id=r[0], last_seq=r[1], cwd=r[2], branch=r[3])
                for r in db.execute(
                    "SELECT id, last_seq, cwd, branch FROM sessions"
                    " WHERE environment_id = ? AND state != 'ended' ORDER BY created_at, rowid",
                    (environment_id,),
                )
            ]
        return RegisterResponse(environment_id=environment_id, open_sessions=open_sessions)

    def get_environment(self, environment_id: str) -> EnvironmentRecord | None:
        row = self._conn.execute(_ENVIRONMENT_QUERY + " WHERE e.id = ?", (environment_id,))
        found = row.fetchone()
        return None if found is None else _environment(found)

    def authorize_token(
        self, credential_hash: str, environment_id: str, session_id: str | None
    ) -> str:
        """What minting an access token checks, in one call: the credential is known, it
        registered the environment (CredentialRevoked when the environment was revoked for
        it, NotFound otherwise) and the session, when given, is one of the environment's
        (NotFound). Returns the credential's id."""
        credential_id = self.authenticate_environment_credential(credential_hash)
        if credential_id is None:
            raise CredentialRevoked()
        owned_environment(self.get_environment(environment_id), environment_id, credential_id)
        if session_id is not None:
            session = self.get_session(session_id)
            if session is None or session.environment_id != environment_id:
                raise NotFound(f"no session {session_id}")
        return credential_id

    def list_environments(self) -> list[EnvironmentRecord]:
        rows = self._conn.execute(_ENVIRONMENT_QUERY + " ORDER BY e.name, e.created_at")
        return [_environment(r) for r in rows.fetchall()]

    def mark_all_offline(self) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE environments SET link_id = NULL, updated_at = ? WHERE link_id IS NOT NULL",
                (self._clock(),),
            )

    def open_downlink(self, environment_id: str, link_id: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE environments SET link_id = ?, updated_at = ? WHERE id = ?",
                (link_id, self._clock(), environment_id),
            )

    def close_downlink(self, environment_id: str, link_id: str) -> bool:
        with self._write() as db:
            closed = db.execute(
                "UPDATE environments SET link_id = NULL, updated_at = ?"
                " WHERE id = ? AND link_id = ?",
                (self._clock(), environment_id, link_id),
            )
            return closed.rowcount > 0

    def read_downlink(
        self, environment_id: str, link_id: str, after: int, limit: int
    ) -> DownlinkRead:
        with self._read() as db:
            row = db.execute(
                "SELECT link_id FROM environments WHERE id = ?", (environment_id,)
            ).fetchone()
            if row is None or row[0] != link_id:
                return DownlinkRead(current=False, directives=[])
            rows = db.execute(
                "SELECT dseq, body FROM directives WHERE environment_id = ? AND dseq > ?"
                " ORDER BY dseq LIMIT ?",
                (environment_id, after, limit),
            ).fetchall()
        directives = [
            QueuedDirective(dseq=r[0], directive=decode_json(Directive, r[1])) for r in rows
        ]
        return DownlinkRead(current=True, directives=directives)

    def acknowledge_directives(self, environment_id: str, through: int) -> None:
        with self._write() as db:
            self._acknowledge(db, environment_id, through)

    def _acknowledge(self, db: sqlite3.Connection, environment_id: str, through: int) -> None:
        db.execute(
            "UPDATE environments SET acked_dseq = MAX(acked_dseq, MIN(?, last_dseq)) WHERE id = ?",
            (through, environment_id),
        )
        # Applied directives are never needed again: the daemon resumes after them.
        db.execute(
            "DELETE FROM directives WHERE environment_id = ?"
            " AND dseq <= (SELECT acked_dseq FROM environments WHERE id = ?)",
            (environment_id, environment_id),
        )

    def say_goodbye(self, environment_id: str) -> list[str]:
        now = self._clock()
        with self._write() as db:
            db.execute(
                "UPDATE environments SET link_id = NULL, updated_at = ? WHERE id = ?",
                (now, environment_id),
            )
            ended = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM sessions WHERE environment_id = ? AND state != 'ended'",
                    (environment_id,),
                ).fetchall()
            ]
            db.execute(
                "UPDATE sessions SET state = 'ended', updated_at = ?"
                " WHERE environment_id = ? AND state != 'ended'",
                (now, environment_id),
            )
        return ended

    def revoke_environment(self, environment_id: str) -> list[str]:
        """Revoke the credential that registered ``environment_id``: it, and every access
        token minted with it, stops working at once. Every environment it registered goes
        offline for good and their live sessions end. Returns those environments' ids
        (empty if ``environment_id`` is unknown or already revoked)."""
        now = self._clock()
        with self._write() as db:
            row = db.execute(
                "SELECT credential_id FROM environments WHERE id = ?", (environment_id,)
            ).fetchone()
            if row is None or row[0].startswith(REVOKED_CREDENTIAL):
                return []
            (credential_id,) = row
            revoked = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM environments WHERE credential_id = ?", (credential_id,)
                ).fetchall()
            ]
            db.execute("DELETE FROM environment_credentials WHERE id = ?", (credential_id,))
            db.execute(
                "UPDATE environments SET credential_id = ?, link_id = NULL, updated_at = ?"
                " WHERE credential_id = ?",
                (REVOKED_CREDENTIAL + credential_id, now, credential_id),
            )
            db.executemany(
                "UPDATE sessions SET state = 'ended', updated_at = ?"
                " WHERE environment_id = ? AND state != 'ended'",
                [(now, env_id) for env_id in revoked],
            )
        return revoked

    def _enqueue(self, db: sqlite3.Connection, environment_id: str, directive: Directive) -> int:
        (dseq,) = db.execute(
            "UPDATE environments SET last_dseq = last_dseq + 1 WHERE id = ? RETURNING last_dseq",
            (environment_id,),
        ).fetchall()[0]
        db.execute(
            "INSERT INTO directives (environment_id, dseq, body, created_at) VALUES (?, ?, ?, ?)",
            (environment_id, dseq, encode_json(directive, Directive), self._clock()),
        )
        return cast(int, dseq)

    def _check_room(self, db: sqlite3.Connection, environment_id: str) -> str:
        """Raise unless the environment is online with a free slot; return its spawn mode."""
        env = db.execute(
            "SELECT name, capacity, link_id, spawn FROM environments WHERE id = ?",
            (environment_id,),
        ).fetchone()
        if env is None:
            raise NotFound(f"no environment {environment_id}")
        name, capacity, link_id, spawn = env
        if link_id is None:
            raise EnvironmentOffline(name)
        (running,) = db.execute(
            "SELECT COUNT(*) FROM sessions WHERE environment_id = ? AND state != 'ended'",
            (environment_id,),
        ).fetchone()
        if running >= capacity:
            raise AtCapacity(name, running, capacity)
        return cast(str, spawn)

    def _check_reachable(
        self, db: sqlite3.Connection, environment_id: str, offline_grace: float
    ) -> None:
        """Raise ``409 environment_offline`` when the environment has been offline for more
        than ``offline_grace`` seconds: nothing queued for it now would reach its daemon in
        time, maybe ever. (A shorter gap is a link being renewed or reconnecting: what is
        queued then is delivered when it is back.)"""
        name, link_id, since = db.execute(
            "SELECT name, link_id, updated_at FROM environments WHERE id = ?", (environment_id,)
        ).fetchone()
        offline_for = self._clock() - since
        if link_id is None and offline_for > offline_grace:
            raise Conflict(
                "environment_offline",
                f"environment '{name}' has been offline for {_duration(offline_for)}: its"
                " daemon is not connected, so nothing can reach the session; nothing was"
                " queued. Try again once the environment is back online",
            )

    # -- sessions ----------------------------------------------------------------------------

    def create_session(self, new: NewSession, start: StartSession) -> SessionRecord:
        now = self._clock()
        with self._write() as db:
            # Capacity check, insert and enqueue share this one transaction, so concurrent
            # creates can never exceed the environment's capacity.
            default_spawn = self._check_room(db, new.environment_id)
            db.execute(
                "INSERT INTO sessions (id, environment_id, title, state, spawn,"
                " created_at, updated_at) VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                (new.id, new.environment_id, new.title, new.spawn or default_spawn, now, now),
            )
            self._enqueue(db, new.environment_id, start)
            return self._get_session(db, new.id)

    def _get_session(self, db: sqlite3.Connection, session_id: str) -> SessionRecord:
        row = db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no session {session_id}")
        return _session(row)

    def get_session(self, session_id: str) -> SessionRecord | None:
        try:
            return self._get_session(self._conn, session_id)
        except NotFound:
            return None

    def list_sessions(self) -> list[SessionRecord]:
        rows = self._conn.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions ORDER BY created_at DESC, rowid DESC"
        ).fetchall()
        return [_session(r) for r in rows]

    def rename_session(self, session_id: str, title: str) -> SessionRecord:
        with self._write() as db:
            db.execute(
                "UPDATE sessions SET title = ?, updated_at = ? WHERE id = ?",
                (title, self._clock(), session_id),
            )
            return self._get_session(db, session_id)

    def submit_input(
        self,
        session_id: str,
        directive: SessionInput,
        client: ClientProof | None = None,
        *,
        offline_grace: float | None = None,
    ) -> Enqueued | None:
        with self._write() as db:
            if client is not None:
                principal = self.authenticate_client(client)
                directive = attrs.evolve(directive, origin=principal.name)
            session = self._get_session(db, session_id)
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
                self._check_reachable(db, session.environment_id, offline_grace)
            if isinstance(directive, DecidePermission):
                row = db.execute(
                    "SELECT resolved FROM permission_requests"
                    " WHERE session_id = ? AND request_id = ?",
                    (session_id, directive.request_id),
                ).fetchone()
                if row is None:
                    raise NotFound(
                        f"session {session_id} has no permission request {directive.request_id!r}",
                        code="unknown_permission_request",
                    )
                if row[0]:
                    raise Conflict(
                        "permission_already_resolved",
                        f"permission request {directive.request_id!r} is already resolved",
                    )
            dseq = self._enqueue(db, session.environment_id, directive)
            return Enqueued(environment_id=session.environment_id, dseq=dseq, directive=directive)

    def resume_session(self, session_id: str) -> SessionRecord:
        with self._write() as db:
            session = self._get_session(db, session_id)
            if session.state != "ended":
                raise NotResumable(session_id, f"it is {session.state}, not ended")
            if session.agent_session_id is None or session.cwd is None or session.spawn is None:
                raise NotResumable(session_id, "its agent reported no session id to resume")
            self._check_room(db, session.environment_id)
            db.execute(
                "UPDATE sessions SET state = 'queued', updated_at = ? WHERE id = ?",
                (self._clock(), session_id),
            )
            self._enqueue(
                db,
                session.environment_id,
                ResumeSession(
                    session_id=session_id,
                    agent_session_id=session.agent_session_id,
                    cwd=session.cwd,
                    spawn=session.spawn,
                    branch=session.branch,
                    last_seq=session.last_seq,
                ),
            )
            return self._get_session(db, session_id)

    def append_events(
        self, session_id: str, events: Sequence[Event], *, credential_id: str | None = None
    ) -> int:
        with self._write() as db:
            return self._append(db, session_id, events, credential_id).acked

    def append_many(
        self,
        batches: Sequence[tuple[str, Sequence[Event]]],
        *,
        credential_id: str,
        ack: tuple[str, int] | None = None,
    ) -> list[Appended | ApiError]:
        """:meth:`append_events` for several sessions in one transaction; each session's
        outcome (what it stored, or the error its events alone got) in order. ``ack``
        (environment id, dseq) is :meth:`acknowledge_directives` in the same transaction."""
        results: list[Appended | ApiError] = []
        with self._write() as db:
            if ack is not None:
                environment_id, through = ack
                # The link token was checked when the request opened, maybe seconds ago.
                if not self._owner(db, environment_id, credential_id):
                    raise NotFound(f"no environment {environment_id}")
                self._acknowledge(db, environment_id, through)
            for i, (session_id, events) in enumerate(batches):
                db.execute(f"SAVEPOINT s{i}")
                try:
                    results.append(self._append(db, session_id, events, credential_id))
                except ApiError as exc:
                    db.execute(f"ROLLBACK TO s{i}")
                    results.append(exc)
                db.execute(f"RELEASE s{i}")
        return results

    def _owner(self, db: sqlite3.Connection, environment_id: str, credential_id: str) -> bool:
        """Whether ``credential_id`` registered the environment; CredentialRevoked when the
        environment's credential was revoked."""
        owner = db.execute(
            "SELECT credential_id FROM environments WHERE id = ?", (environment_id,)
        ).fetchone()
        if owner is not None and owner[0].startswith(REVOKED_CREDENTIAL):
            raise CredentialRevoked()
        return owner is not None and owner[0] == credential_id

    def _append(
        self,
        db: sqlite3.Connection,
        session_id: str,
        events: Sequence[Event],
        credential_id: str | None,
    ) -> Appended:
        session = self._get_session(db, session_id)
        # The uplink's ownership check shares the write's transaction (one storage call
        # per batch instead of three).
        if credential_id is not None and not self._owner(db, session.environment_id, credential_id):
            raise NotFound(f"no session {session_id}")
        held = session.last_seq
        accepted: list[Event] = []
        # Only a contiguous run is stored: the log stays dense, and the answer tells
        # the daemon exactly where to resume.
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
        self._bytes_written += sum(len(row[4]) for row in rows)
        update = index_events(session, accepted, self._clock())
        s = update.session
        db.execute(
            "UPDATE sessions SET title = ?, state = ?, spawn = ?, cwd = ?, branch = ?,"
            " agent_session_id = ?, last_seq = ?, updated_at = ? WHERE id = ?",
            (
                s.title,
                s.state,
                s.spawn,
                s.cwd,
                s.branch,
                s.agent_session_id,
                s.last_seq,
                s.updated_at,
                session_id,
            ),
        )
        db.executemany(
            "INSERT OR IGNORE INTO permission_requests (session_id, request_id) VALUES (?, ?)",
            [(session_id, r) for r in update.permission_requests],
        )
        db.executemany(
            "INSERT INTO permission_requests (session_id, request_id, resolved)"
            " VALUES (?, ?, 1) ON CONFLICT (session_id, request_id) DO UPDATE SET resolved = 1",
            [(session_id, r) for r in update.permission_resolutions],
        )
        return Appended(acked=held, first_new=first_new)

    def read_events(self, session_id: str, after: int, limit: int) -> list[Event]:
        rows = self._conn.execute(
            "SELECT seq, kind, at, data FROM events WHERE session_id = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (session_id, after, limit),
        ).fetchall()
        return [Event(seq=r[0], kind=r[1], at=r[2], data=json.loads(r[3])) for r in rows]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"
