"""One connection to the relay's SQLite file: opening it (private, WAL, schema in place) and
its transactions.

The table modules (:mod:`relay.sqlite.clients`, ``credentials``, ``environments``,
``directives``, ``sessions``, ``events``) are plain functions of a :class:`SqliteConnection`;
each storage call is one transaction (the helpers they share say "inside a transaction").
A connection is not thread-safe; callers serialise
access (:class:`relay.sqlite.SqliteStorage` does for the relay).

Several processes may open the same file at once: the database is in WAL mode, writers take
the write lock up front (``BEGIN IMMEDIATE``) and wait up to ``busy_timeout`` for it (10 s;
the relay's own connection sets 0 and waits elsewhere: see
:class:`relay.sqlite.SqliteStorage`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .schema import migrate

__all__ = ["DATABASE_FILENAME", "SqliteConnection", "database_path", "is_busy"]

DATABASE_FILENAME = "relay.sqlite3"

#: Bytes the write-ahead log file is cut back to after a checkpoint emptied it.
WAL_SIZE_LIMIT = 64 * 1024 * 1024


def database_path(data_dir: Path) -> Path:
    """Where the relay keeps its database inside ``data_dir``."""
    return data_dir / DATABASE_FILENAME


class SqliteConnection:
    """One connection to the relay's database, with the schema in place.

    Raises :class:`~relay.errors.AdminError` for a database written by a newer relay.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            # Create it private before SQLite does (its -wal/-shm files copy the mode).
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.path = path
        self._clock = clock
        #: Bytes of event payloads this connection has written since it opened (the table
        #: functions that write them count them).
        self.bytes_written = 0
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        try:
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            # The log is emptied by checkpoints; keep its file from staying at its peak.
            self._conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            with self.write():
                migrate(self)
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    def now(self) -> float:
        """The time, by the clock this connection was given."""
        return self._clock()

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, parameters)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        return self._conn.executemany(sql, rows)

    @contextmanager
    def write(self) -> Iterator[None]:
        """A write transaction: committed when the block ends, rolled back (whole) when it
        raises."""
        # IMMEDIATE takes the write lock now: a read-then-write transaction can never fail
        # half-way with SQLITE_BUSY because another process wrote in between.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    @contextmanager
    def read(self) -> Iterator[None]:
        """A read transaction: the block's reads see one snapshot."""
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

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
    def total_changes(self) -> int:
        """Rows this connection has inserted, updated or deleted since it opened."""
        return self._conn.total_changes


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` is SQLITE_BUSY: another connection holds a lock this one needed."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY
