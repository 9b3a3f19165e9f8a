"""Daemons' credentials: pair codes, the environment credentials they are redeemed for, and
what minting an access token checks. Only hashes are stored (see :mod:`relay.auth`)."""

from __future__ import annotations

from typing import cast

from ..errors import CredentialRevoked, NotFound
from ..ids import new_id
from ..records import owned_environment
from .connection import SqliteConnection
from .environments import get_environment
from .hashed import add_code, record_use, use_code
from .sessions import get_session

__all__ = [
    "add_environment_credential",
    "add_pair_code",
    "authenticate_environment_credential",
    "authorize_token",
    "redeem_pair_code",
]


def add_pair_code(db: SqliteConnection, code_hash: str, ttl: float) -> None:
    add_code(db, "pair_codes", code_hash, ttl)


def redeem_pair_code(
    db: SqliteConnection, code_hash: str, machine: str, credential_hash: str
) -> str | None:
    """Use up a pair code and store a new environment credential; its id, or None."""
    with db.write():
        if use_code(db, "pair_codes", code_hash):
            return _insert_credential(db, machine, credential_hash)
        return None


def add_environment_credential(db: SqliteConnection, machine: str, credential_hash: str) -> str:
    with db.write():
        return _insert_credential(db, machine, credential_hash)


def _insert_credential(db: SqliteConnection, machine: str, secret_hash: str) -> str:
    credential_id = new_id("cred")
    db.execute(
        "INSERT INTO environment_credentials (id, machine, secret_hash, created_at)"
        " VALUES (?, ?, ?, ?)",
        (credential_id, machine, secret_hash, db.now()),
    )
    return credential_id


def authenticate_environment_credential(db: SqliteConnection, credential_hash: str) -> str | None:
    """The credential's id (its use is recorded, to the minute), or None."""
    row = db.execute(
        "SELECT id, last_used_at FROM environment_credentials WHERE secret_hash = ?",
        (credential_hash,),
    ).fetchone()
    if row is None:
        return None
    record_use(db, "environment_credentials", row[0], row[1])
    return cast(str, row[0])


def authorize_token(
    db: SqliteConnection, credential_hash: str, environment_id: str, session_id: str | None
) -> str:
    """What minting an access token checks, in one call: the credential is known, it
    registered the environment (CredentialRevoked when the environment was revoked for it,
    NotFound otherwise) and the session, when given, is one of the environment's
    (NotFound). Returns the credential's id."""
    credential_id = authenticate_environment_credential(db, credential_hash)
    if credential_id is None:
        raise CredentialRevoked()
    owned_environment(get_environment(db, environment_id), environment_id, credential_id)
    if session_id is not None:
        session = get_session(db, session_id)
        if session is None or session.environment_id != environment_id:
            raise NotFound(f"no session {session_id}")
    return credential_id
