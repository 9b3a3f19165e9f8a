"""What the tables of hashed secrets share: one-time codes (login codes, pair codes), and
recording when a credential was last used."""

from __future__ import annotations

from typing import Literal

from .connection import SqliteConnection

__all__ = ["LAST_USED_RESOLUTION", "add_code", "record_use", "use_code"]

#: ``last_used_at`` is refreshed at most this often, so authenticating stays a read.
LAST_USED_RESOLUTION = 60.0

CodeTable = Literal["login_codes", "pair_codes"]
#: Each table that records a credential's last use, and the column that names one.
_KEYS = {
    "device_tokens": "token_hash",
    "web_sessions": "session_hash",
    "environment_credentials": "id",
}
UsedTable = Literal["device_tokens", "web_sessions", "environment_credentials"]


def add_code(db: SqliteConnection, table: CodeTable, code_hash: str, ttl: float) -> None:
    """Store a one-time code valid for ``ttl`` seconds."""
    with db.write():
        db.execute(
            f"INSERT INTO {table} (code_hash, expires_at) VALUES (?, ?)",
            (code_hash, db.now() + ttl),
        )


def use_code(db: SqliteConnection, table: CodeTable, code_hash: str) -> bool:
    """Use the code up; False if it is unknown, used or expired; expired codes are purged.
    (Inside a write transaction.)"""
    db.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (db.now(),))
    return db.execute(f"DELETE FROM {table} WHERE code_hash = ?", (code_hash,)).rowcount > 0


def record_use(db: SqliteConnection, table: UsedTable, key: str, last_used: float | None) -> None:
    """Record that the credential ``key`` (of ``table``) is used now, unless its
    ``last_used`` is recent (:data:`LAST_USED_RESOLUTION`)."""
    now = db.now()
    if last_used is None or now - last_used >= LAST_USED_RESOLUTION:
        db.execute(f"UPDATE {table} SET last_used_at = ? WHERE {_KEYS[table]} = ?", (now, key))
