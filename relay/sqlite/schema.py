"""The relay's tables, and bringing a database written by an older relay up to date."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import AdminError
from ..ids import new_id

if TYPE_CHECKING:
    from .connection import SqliteConnection

__all__ = ["SCHEMA_VERSION", "migrate", "name_unnamed_sign_ins"]

#: 2: web sessions have a public id, when and from where they signed in, and when they were
#: last used; environments keep the host name their daemon reports.
#: 4: Web Push subscriptions.
SCHEMA_VERSION = 5
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
    settings TEXT,
    features TEXT,
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
    sandbox INTEGER NOT NULL DEFAULT 0,
    agent TEXT,
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
CREATE TABLE IF NOT EXISTS push_subscriptions (
    endpoint TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    owner_kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    p256dh TEXT NOT NULL,
    auth TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_sent_at REAL
);
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


#: Columns version 3 added.
_COLUMNS_OF_VERSION_3: dict[str, tuple[str, ...]] = {
    "sessions": ("sandbox INTEGER NOT NULL DEFAULT 0",),
    "environments": ("settings TEXT", "features TEXT"),
}


#: Columns version 5 added: the agent a session runs (None: its environment's default).
_COLUMNS_OF_VERSION_5: dict[str, tuple[str, ...]] = {"sessions": ("agent TEXT",)}


def _add_columns(db: SqliteConnection, columns: dict[str, tuple[str, ...]]) -> None:
    """Add the ``columns`` (table → definitions) that an existing table lacks."""
    for table, definitions in columns.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if not have:
            continue  # a new database: the schema creates the table whole
        for definition in definitions:
            if definition.split()[0] not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {definition}")


def migrate(db: SqliteConnection) -> None:
    """Create the tables, or bring those of an older relay up to date; call it inside a
    write transaction. Raises :class:`~relay.errors.AdminError` for a database written by
    a newer relay."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise AdminError(f"{db.path} was written by a newer relay (schema {version}); upgrade rcd")
    if version < 2:
        _add_columns(db, _COLUMNS_OF_VERSION_2)
    if version < 3:
        _add_columns(db, _COLUMNS_OF_VERSION_3)
    if version < 5:
        _add_columns(db, _COLUMNS_OF_VERSION_5)
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    if version < 2:
        name_unnamed_sign_ins(db)
    if version < 5:
        # Each session so far ran the one agent its environment's daemon ran: kept, so that
        # a daemon started later with another default resumes it with that one.
        db.execute(
            "UPDATE sessions SET agent = (SELECT agent FROM environments e"
            " WHERE e.id = sessions.environment_id) WHERE agent IS NULL"
        )
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def name_unnamed_sign_ins(db: SqliteConnection) -> None:
    """Give each sign-in from before schema 2 an id, so it can be listed and revoked like
    the others (inside a write transaction)."""
    for (session_hash,) in db.execute(
        "SELECT session_hash FROM web_sessions WHERE id IS NULL"
    ).fetchall():
        db.execute(
            "UPDATE web_sessions SET id = ? WHERE session_hash = ?",
            (new_id("signin"), session_hash),
        )
