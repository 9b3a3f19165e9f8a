"""Environments: registration, whether a downlink holds them online, goodbye and revocation,
and whether one has room for a session or can be reached at all."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from wire import OpenSession, RegisterRequest, RegisterResponse

from ..errors import AtCapacity, Conflict, CredentialRevoked, EnvironmentOffline, NotFound
from ..ids import new_id
from ..records import REVOKED_CREDENTIAL, EnvironmentRecord
from .connection import SqliteConnection

__all__ = [
    "OFFLINE_SINCE",
    "check_reachable",
    "check_room",
    "close_downlink",
    "get_environment",
    "list_environments",
    "mark_all_offline",
    "open_downlink",
    "register_environment",
    "registered_by",
    "revoke_environment",
    "say_goodbye",
]

#: An environment's ``updated_at`` is also when its link last opened or closed, so while it
#: has no link it says since when it has been offline (SQL over ``environments e``).
OFFLINE_SINCE = "CASE WHEN e.link_id IS NULL THEN e.updated_at END"
_ENVIRONMENT_QUERY = f"""
SELECT e.id, e.credential_id, e.name, e.machine, e.directory, e.spawn, e.capacity, e.agent,
       e.link_id IS NOT NULL,
       (SELECT COUNT(*) FROM sessions s WHERE s.environment_id = e.id AND s.state != 'ended'),
       {OFFLINE_SINCE}, e.hostname
FROM environments e
"""


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


def register_environment(
    db: SqliteConnection, credential_id: str, request: RegisterRequest
) -> RegisterResponse:
    """Same credential + machine + directory + name → the same environment id."""
    now = db.now()
    with db.write():
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


def get_environment(db: SqliteConnection, environment_id: str) -> EnvironmentRecord | None:
    found = db.execute(_ENVIRONMENT_QUERY + " WHERE e.id = ?", (environment_id,)).fetchone()
    return None if found is None else _environment(found)


def list_environments(db: SqliteConnection) -> list[EnvironmentRecord]:
    rows = db.execute(_ENVIRONMENT_QUERY + " ORDER BY e.name, e.created_at")
    return [_environment(r) for r in rows.fetchall()]


def mark_all_offline(db: SqliteConnection) -> None:
    """Forget every downlink (a restarted relay holds none)."""
    with db.write():
        db.execute(
            "UPDATE environments SET link_id = NULL, updated_at = ? WHERE link_id IS NOT NULL",
            (db.now(),),
        )


def open_downlink(db: SqliteConnection, environment_id: str, link_id: str) -> None:
    """Make ``link_id`` the environment's one live downlink, replacing any other."""
    with db.write():
        db.execute(
            "UPDATE environments SET link_id = ?, updated_at = ? WHERE id = ?",
            (link_id, db.now(), environment_id),
        )


def close_downlink(db: SqliteConnection, environment_id: str, link_id: str) -> bool:
    """Go offline if ``link_id`` is still the live downlink; False if it was replaced."""
    with db.write():
        closed = db.execute(
            "UPDATE environments SET link_id = NULL, updated_at = ? WHERE id = ? AND link_id = ?",
            (db.now(), environment_id, link_id),
        )
        return closed.rowcount > 0


def say_goodbye(db: SqliteConnection, environment_id: str) -> list[str]:
    """Go offline and end every session not ended; returns the sessions it ended."""
    now = db.now()
    with db.write():
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


def revoke_environment(db: SqliteConnection, environment_id: str) -> list[str]:
    """Revoke the credential that registered ``environment_id``: it, and every access token
    minted with it, stops working at once. Every environment it registered goes offline for
    good and their live sessions end. Returns those environments' ids (empty if
    ``environment_id`` is unknown or already revoked)."""
    now = db.now()
    with db.write():
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


def registered_by(db: SqliteConnection, environment_id: str, credential_id: str) -> bool:
    """Whether ``credential_id`` registered the environment; CredentialRevoked when the
    environment's credential was revoked. (Inside a transaction.)"""
    owner = db.execute(
        "SELECT credential_id FROM environments WHERE id = ?", (environment_id,)
    ).fetchone()
    if owner is not None and owner[0].startswith(REVOKED_CREDENTIAL):
        raise CredentialRevoked()
    return owner is not None and owner[0] == credential_id


def check_room(db: SqliteConnection, environment_id: str) -> str:
    """Raise unless the environment is online with a free slot (NotFound,
    EnvironmentOffline, AtCapacity); return its spawn mode. (Inside a write transaction:
    the check and the write it guards are one.)"""
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


def check_reachable(db: SqliteConnection, environment_id: str, offline_grace: float) -> None:
    """Raise Conflict ``environment_offline`` when the environment has been offline for more
    than ``offline_grace`` seconds: nothing queued for it now would reach its daemon in
    time, maybe ever. (A shorter gap is a link being renewed or reconnecting: what is queued
    then is delivered when it is back.)"""
    name, link_id, since = db.execute(
        "SELECT name, link_id, updated_at FROM environments WHERE id = ?", (environment_id,)
    ).fetchone()
    offline_for = db.now() - since
    if link_id is None and offline_for > offline_grace:
        raise Conflict(
            "environment_offline",
            f"environment '{name}' has been offline for {_duration(offline_for)}: its"
            " daemon is not connected, so nothing can reach the session; nothing was"
            " queued. Try again once the environment is back online",
        )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"
