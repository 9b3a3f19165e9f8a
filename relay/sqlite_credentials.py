"""The SQLite backend's credential tables: device tokens, web sessions, login codes, pair
codes and environment credentials. Only hashes are stored (see :mod:`relay.auth`)."""

from __future__ import annotations

import sqlite3
from typing import cast

from .errors import AdminError, CsrfMissing, Unauthenticated
from .ids import new_id
from .records import WEB_ORIGIN, ClientPrincipal, ClientProof, DeviceTokenInfo, SignInRecord
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

    def redeem_login_code(
        self,
        code_hash: str,
        session_hash: str,
        session_ttl: float,
        *,
        user_agent: str | None = None,
        address: str | None = None,
    ) -> bool:
        now = self._clock()
        with self._write() as db:
            db.execute("DELETE FROM login_codes WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (now,))
            used = db.execute("DELETE FROM login_codes WHERE code_hash = ?", (code_hash,))
            if used.rowcount == 0:
                return False
            db.execute(
                "INSERT INTO web_sessions (session_hash, id, created_at, expires_at, user_agent,"
                " address, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session_hash, new_id("signin"), now, now + session_ttl, user_agent, address, now),
            )
            return True

    def web_session_valid(self, session_hash: str) -> bool:
        """Whether the web session is current; its use is recorded (to the minute)."""
        now = self._clock()
        row = self._conn.execute(
            "SELECT last_used_at FROM web_sessions WHERE session_hash = ? AND expires_at > ?",
            (session_hash, now),
        ).fetchone()
        if row is None:
            return False
        if row[0] is None or now - row[0] >= _LAST_USED_RESOLUTION:
            self._conn.execute(
                "UPDATE web_sessions SET last_used_at = ? WHERE session_hash = ?",
                (now, session_hash),
            )
        return True

    def delete_web_session(self, session_hash: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM web_sessions WHERE session_hash = ?", (session_hash,))

    def list_sign_ins(self) -> list[SignInRecord]:
        """Browsers signed in now (unexpired web sessions), the most recently used first."""
        with self._write() as db:
            # A relay older than schema 2 may still be running on this file: give its
            # sign-ins an id, so they can be revoked like the others.
            for (session_hash,) in db.execute(
                "SELECT session_hash FROM web_sessions WHERE id IS NULL"
            ).fetchall():
                db.execute(
                    "UPDATE web_sessions SET id = ? WHERE session_hash = ?",
                    (new_id("signin"), session_hash),
                )
            rows = db.execute(
                "SELECT id, session_hash, created_at, last_used_at, expires_at, user_agent,"
                " address FROM web_sessions WHERE expires_at > ?"
                " ORDER BY COALESCE(last_used_at, created_at) DESC, created_at DESC, id",
                (self._clock(),),
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

    def revoke_sign_in(self, sign_in_id: str) -> str | None:
        """End one browser's sign-in at once; returns its session hash, or None if there
        is no such (current) one."""
        with self._write() as db:
            row = db.execute(
                "DELETE FROM web_sessions WHERE id = ? AND expires_at > ? RETURNING session_hash",
                (sign_in_id, self._clock()),
            ).fetchone()
            return None if row is None else cast(str, row[0])

    def revoke_all_sign_ins(self) -> int:
        """End every browser's sign-in at once; how many were current."""
        with self._write() as db:
            db.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (self._clock(),))
            return db.execute("DELETE FROM web_sessions").rowcount

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
