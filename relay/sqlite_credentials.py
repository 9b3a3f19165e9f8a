"""The SQLite backend's credential tables: device tokens, web sessions, login codes, pair
codes and environment credentials. Only hashes are stored (see :mod:`relay.auth`)."""

from __future__ import annotations

import sqlite3
from typing import cast

from .errors import AdminError, CsrfMissing, Unauthenticated
from .ids import new_id
from .records import WEB_ORIGIN, ClientPrincipal, ClientProof, DeviceTokenInfo
from .sqlite_base import SqliteConnection

__all__ = ["SqliteCredentials"]

#: ``last_used_at`` is refreshed at most this often, so authenticating stays a read.
_LAST_USED_RESOLUTION = 60.0


class SqliteCredentials(SqliteConnection):
    """Secrets, by hash. Expired codes and web sessions are purged as new ones are redeemed."""

    # -- client credentials ----------------------------------------------------------------

    def add_device_token(self, name: str, token_hash: str) -> None:
        with self._write() as db:
            if db.execute("SELECT 1 FROM device_tokens WHERE name = ?", (name,)).fetchone():
                raise AdminError(f"a device token named {name!r} already exists")
            db.execute(
                "INSERT INTO device_tokens (name, token_hash, created_at) VALUES (?, ?, ?)",
                (name, token_hash, self._clock()),
            )

    def list_device_tokens(self) -> list[DeviceTokenInfo]:
        rows = self._conn.execute(
            "SELECT name, created_at, last_used_at FROM device_tokens ORDER BY created_at, name"
        ).fetchall()
        return [DeviceTokenInfo(name=r[0], created_at=r[1], last_used_at=r[2]) for r in rows]

    def revoke_device_token(self, name: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM device_tokens WHERE name = ?", (name,)).rowcount > 0

    def authenticate_device_token(self, token_hash: str) -> str | None:
        row = self._conn.execute(
            "SELECT name, last_used_at FROM device_tokens WHERE token_hash = ?", (token_hash,)
        ).fetchone()
        if row is None:
            return None
        now = self._clock()
        if row[1] is None or now - row[1] >= _LAST_USED_RESOLUTION:
            self._conn.execute(
                "UPDATE device_tokens SET last_used_at = ? WHERE token_hash = ?",
                (now, token_hash),
            )
        return cast(str, row[0])

    def authenticate_client(self, proof: ClientProof) -> ClientPrincipal:
        """Who presents ``proof``; raises Unauthenticated (401), or Forbidden (403 ``csrf``)
        for a cookie-signed write without the CSRF header."""
        if proof.via == "token":
            name = self.authenticate_device_token(proof.secret_hash)
            if name is None:
                raise Unauthenticated("unknown or revoked device token")
            return ClientPrincipal(name=name, via="token")
        if not self.web_session_valid(proof.secret_hash):
            raise Unauthenticated("your sign-in has expired; open a new login link")
        if not proof.csrf_ok:
            raise CsrfMissing()
        return ClientPrincipal(name=WEB_ORIGIN, via="cookie", session_hash=proof.secret_hash)

    def add_login_code(self, code_hash: str, ttl: float) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO login_codes (code_hash, expires_at) VALUES (?, ?)",
                (code_hash, self._clock() + ttl),
            )

    def redeem_login_code(self, code_hash: str, session_hash: str, session_ttl: float) -> bool:
        now = self._clock()
        with self._write() as db:
            db.execute("DELETE FROM login_codes WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (now,))
            used = db.execute("DELETE FROM login_codes WHERE code_hash = ?", (code_hash,))
            if used.rowcount == 0:
                return False
            db.execute(
                "INSERT INTO web_sessions (session_hash, created_at, expires_at) VALUES (?, ?, ?)",
                (session_hash, now, now + session_ttl),
            )
            return True

    def web_session_valid(self, session_hash: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM web_sessions WHERE session_hash = ? AND expires_at > ?",
            (session_hash, self._clock()),
        ).fetchone()
        return row is not None

    def delete_web_session(self, session_hash: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM web_sessions WHERE session_hash = ?", (session_hash,))

    # -- daemon credentials ------------------------------------------------------------------

    def add_pair_code(self, code_hash: str, ttl: float) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO pair_codes (code_hash, expires_at) VALUES (?, ?)",
                (code_hash, self._clock() + ttl),
            )

    def redeem_pair_code(self, code_hash: str, machine: str, credential_hash: str) -> str | None:
        now = self._clock()
        with self._write() as db:
            db.execute("DELETE FROM pair_codes WHERE expires_at <= ?", (now,))
            if db.execute("DELETE FROM pair_codes WHERE code_hash = ?", (code_hash,)).rowcount:
                return self._insert_credential(db, machine, credential_hash)
            return None

    def add_environment_credential(self, machine: str, credential_hash: str) -> str:
        with self._write() as db:
            return self._insert_credential(db, machine, credential_hash)

    def _insert_credential(self, db: sqlite3.Connection, machine: str, secret_hash: str) -> str:
        credential_id = new_id("cred")
        db.execute(
            "INSERT INTO environment_credentials (id, machine, secret_hash, created_at)"
            " VALUES (?, ?, ?, ?)",
            (credential_id, machine, secret_hash, self._clock()),
        )
        return credential_id

    def authenticate_environment_credential(self, credential_hash: str) -> str | None:
        row = self._conn.execute(
            "SELECT id, last_used_at FROM environment_credentials WHERE secret_hash = ?",
            (credential_hash,),
        ).fetchone()
        if row is None:
            return None
        now = self._clock()
        if row[1] is None or now - row[1] >= _LAST_USED_RESOLUTION:
            self._conn.execute(
                "UPDATE environment_credentials SET last_used_at = ? WHERE id = ?", (now, row[0])
            )
        return cast(str, row[0])
