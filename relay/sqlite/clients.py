"""Clients' credentials: device tokens, and browsers' sign-ins (login codes and the web
sessions they start). Only hashes are stored (see :mod:`relay.auth`); expired codes and web
sessions are purged as new ones are redeemed."""

from __future__ import annotations

from typing import cast

from ..errors import AdminError, CsrfMissing, Unauthenticated
from ..ids import new_id
from ..records import WEB_ORIGIN, ClientPrincipal, ClientProof, DeviceTokenInfo, SignInRecord
from .connection import SqliteConnection
from .hashed import add_code, record_use, use_code
from .schema import name_unnamed_sign_ins

__all__ = [
    "add_device_token",
    "add_login_code",
    "authenticate_client",
    "delete_web_session",
    "list_device_tokens",
    "list_sign_ins",
    "redeem_login_code",
    "revoke_all_sign_ins",
    "revoke_device_token",
    "revoke_sign_in",
]


def add_device_token(db: SqliteConnection, name: str, token_hash: str) -> None:
    with db.write():
        if db.execute("SELECT 1 FROM device_tokens WHERE name = ?", (name,)).fetchone():
            raise AdminError(f"a device token named {name!r} already exists")
        db.execute(
            "INSERT INTO device_tokens (name, token_hash, created_at) VALUES (?, ?, ?)",
            (name, token_hash, db.now()),
        )


def list_device_tokens(db: SqliteConnection) -> list[DeviceTokenInfo]:
    rows = db.execute(
        "SELECT name, created_at, last_used_at FROM device_tokens ORDER BY created_at, name"
    ).fetchall()
    return [DeviceTokenInfo(name=r[0], created_at=r[1], last_used_at=r[2]) for r in rows]


def revoke_device_token(db: SqliteConnection, name: str) -> bool:
    with db.write():
        return db.execute("DELETE FROM device_tokens WHERE name = ?", (name,)).rowcount > 0


def _device_token_name(db: SqliteConnection, token_hash: str) -> str | None:
    """The device token's name (its use is recorded, to the minute), or None."""
    row = db.execute(
        "SELECT name, last_used_at FROM device_tokens WHERE token_hash = ?", (token_hash,)
    ).fetchone()
    if row is None:
        return None
    record_use(db, "device_tokens", token_hash, row[1])
    return cast(str, row[0])


def _web_session_valid(db: SqliteConnection, session_hash: str) -> bool:
    """Whether the web session is current; its use is recorded (to the minute)."""
    row = db.execute(
        "SELECT last_used_at FROM web_sessions WHERE session_hash = ? AND expires_at > ?",
        (session_hash, db.now()),
    ).fetchone()
    if row is None:
        return False
    record_use(db, "web_sessions", session_hash, row[0])
    return True


def authenticate_client(db: SqliteConnection, proof: ClientProof) -> ClientPrincipal:
    """Who presents ``proof``; raises Unauthenticated, or Forbidden (``csrf``) for a
    cookie-signed write without the CSRF header."""
    if proof.via == "token":
        name = _device_token_name(db, proof.secret_hash)
        if name is None:
            raise Unauthenticated("unknown or revoked device token")
        return ClientPrincipal(name=name, via="token")
    if not _web_session_valid(db, proof.secret_hash):
        raise Unauthenticated("your sign-in has expired; open a new login link")
    if not proof.csrf_ok:
        raise CsrfMissing()
    return ClientPrincipal(name=WEB_ORIGIN, via="cookie", session_hash=proof.secret_hash)


def add_login_code(db: SqliteConnection, code_hash: str, ttl: float) -> None:
    add_code(db, "login_codes", code_hash, ttl)


def redeem_login_code(
    db: SqliteConnection,
    code_hash: str,
    session_hash: str,
    session_ttl: float,
    *,
    user_agent: str | None = None,
    address: str | None = None,
) -> bool:
    """Use up a login code and start a web session; False if the code is unknown, used or
    expired."""
    now = db.now()
    with db.write():
        db.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (now,))
        if not use_code(db, "login_codes", code_hash):
            return False
        db.execute(
            "INSERT INTO web_sessions (session_hash, id, created_at, expires_at, user_agent,"
            " address, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (session_hash, new_id("signin"), now, now + session_ttl, user_agent, address, now),
        )
        return True


def delete_web_session(db: SqliteConnection, session_hash: str) -> None:
    with db.write():
        db.execute("DELETE FROM web_sessions WHERE session_hash = ?", (session_hash,))


def list_sign_ins(db: SqliteConnection) -> list[SignInRecord]:
    """Browsers signed in now (unexpired web sessions), the most recently used first."""
    with db.write():
        # A relay older than schema 2 may still be running on this file: give its sign-ins
        # an id, so they can be revoked like the others.
        name_unnamed_sign_ins(db)
        rows = db.execute(
            "SELECT id, session_hash, created_at, last_used_at, expires_at, user_agent,"
            " address FROM web_sessions WHERE expires_at > ?"
            " ORDER BY COALESCE(last_used_at, created_at) DESC, created_at DESC, id",
            (db.now(),),
        ).fetchall()
    return [
        SignInRecord(
            id=r[0],
            session_hash=r[1],
            created_at=r[2],
            last_used_at=r[3],
            expires_at=r[4],
            user_agent=r[5],
            address=r[6],
        )
        for r in rows
    ]


def revoke_sign_in(db: SqliteConnection, sign_in_id: str) -> str | None:
    """End one browser's sign-in at once; returns its session hash, or None if there is no
    such (current) one."""
    with db.write():
        row = db.execute(
            "DELETE FROM web_sessions WHERE id = ? AND expires_at > ? RETURNING session_hash",
            (sign_in_id, db.now()),
        ).fetchone()
        return None if row is None else cast(str, row[0])


def revoke_all_sign_ins(db: SqliteConnection) -> int:
    """End every browser's sign-in at once; how many were current."""
    with db.write():
        db.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (db.now(),))
        return db.execute("DELETE FROM web_sessions").rowcount
