"""The SQLite backend's foundation: the file, its schema, the connection and transactions.

Each public method of the classes built on :class:`SqliteConnection` is one transaction.
They are not thread-safe; callers serialise access. Several processes may open the same
file at once: the database is in WAL mode, writers take the write lock up front
(``BEGIN IMMEDIATE``) and wait up to ``busy_timeout`` for it (10 s; the relay's own
connection sets 0 and waits elsewhere: see :class:`relay.storage.SqliteStorage`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import AdminError
from .ids import new_id

__all__ = ["DATABASE_FILENAME", "SqliteConnection", "database_path", "is_busy"]

DATABASE_FILENAME = "relay.sqlite3"

#: 2: web sessions have a public id, when and from where they signed in, and when they were
#: last used; environments keep the host name their daemon reports.
_SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS device_tokens (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    last_used_at REAL
);
CREATE TABLE IF NOT EXISTS web_sessions (
    session_hash TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    id TEXT,
    user_agent TEXT,
    address TEXT,
    last_used_at REAL
);
CREATE TABLE IF NOT EXISTS login_codes (
    code_hash TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pair_codes (
    code_hash TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS environment_credentials (
    id TEXT PRIMARY KEY,
    machine TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    last_used_at REAL
);
CREATE TABLE IF NOT EXISTS environments (
    id TEXT PRIMARY KEY,
    credential_id TEXT NOT NULL,
    name TEXT NOT NULL,
    machine TEXT NOT NULL,
    directory TEXT NOT NULL,
    spawn TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    agent TEXT NOT NULL,
    hostname TEXT,
    link_id TEXT,
    last_dseq INTEGER NOT NULL DEFAULT 0,
    acked_dseq INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (credential_id, machine, directory, name)
);
CREATE TABLE IF NOT EXISTS directives (
    environment_id TEXT NOT NULL,
    dseq INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (environment_id, dseq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL,
    title TEXT,
    state TEXT NOT NULL,
    spawn TEXT,
    cwd TEXT,
    branch TEXT,
    agent_session_id TEXT,
    last_seq INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_environment ON sessions (environment_id, state);
CREATE TABLE IF NOT EXISTS events (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS message_inputs (
    session_id TEXT NOT NULL,
    input_id TEXT NOT NULL,
    PRIMARY KEY (session_id, input_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS web_sessions_by_id ON web_sessions (id);
CREATE TABLE IF NOT EXISTS permission_requests (
    session_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    resolved INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, request_id)
) WITHOUT ROWID;
"""


#: Columns version 2 added to tables a version 1 database already has.
_COLUMNS_OF_VERSION_2 = {
    "web_sessions": ("id TEXT", "user_agent TEXT", "address TEXT", "last_used_at REAL"),
    "environments": ("hostname TEXT",),
}


def _add_columns(db: sqlite3.Connection, columns: dict[str, tuple[str, ...]]) -> None:
    """Add the ``columns`` (table → definitions) that an existing table lacks."""
    for table, definitions in columns.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if not have:
            continue  # a new database: the schema creates the table whole
        for definition in definitions:
            if definition.split()[0] not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {definition}")


#: Bytes the write-ahead log file is cut back to after a checkpoint emptied it.
WAL_SIZE_LIMIT = 64 * 1024 * 1024


def database_path(data_dir: Path) -> Path:
    """Where the relay keeps its database inside ``data_dir``."""
    return data_dir / DATABASE_FILENAME


class SqliteConnection:
    """One connection to the relay's database, with the schema in place."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            # Create it private before SQLite does (its -wal/-shm files copy the mode).
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.path = path
        self._clock = clock
        self._bytes_written = 0
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        try:
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            # The log is emptied by checkpoints; keep its file from staying at its peak.
            self._conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            with self._write() as db:
                (version,) = db.execute("PRAGMA user_version").fetchone()
                if version > _SCHEMA_VERSION:
                    raise AdminError(
                        f"{path} was written by a newer relay (schema {version}); upgrade rcd"
                    )
                if version < 2:
                    _add_columns(db, _COLUMNS_OF_VERSION_2)
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                if version < 2:
                    # Sign-ins from before version 2 get an id, so they can be listed and
                    # revoked like the others.
                    for (session_hash,) in db.execute(
                        "SELECT session_hash FROM web_sessions WHERE id IS NULL"
                    ).fetchall():
                        db.execute(
                            "UPDATE web_sessions SET id = ? WHERE session_hash = ?",
                            (new_id("signin"), session_hash),
                        )
                db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    def set_busy_timeout(self, seconds: float) -> None:
        """How long a transaction waits for another process's lock before SQLITE_BUSY."""
        self._conn.execute(f"PRAGMA busy_timeout={int(seconds * 1000)}")

    def stop_autocheckpoint(self) -> None:
        """Never copy the log back into the database inside a commit (the only step of a
        write that syncs to disk): whoever calls this calls :meth:`checkpoint`."""
        self._conn.execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint(self) -> None:
        """Copy what the write-ahead log holds back into the database file (syncs to
        disk); the next write then starts the log afresh."""
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    @property
    def bytes_written(self) -> int:
        """Bytes of event payloads this connection has written since it opened."""
        return self._bytes_written

    @property
    def total_changes(self) -> int:
        """Rows this connection has inserted, updated or deleted since it opened."""
        return self._conn.total_changes

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock now: a read-then-write transaction can never fail
        # half-way with SQLITE_BUSY because another process wrote in between.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN")
        try:
            yield self._conn
        finally:
            self._conn.execute("COMMIT")


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` is SQLITE_BUSY: another connection holds a lock this one needed."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY
