"""The relay's SQLite backend: :class:`SqliteStorage` implements
:class:`relay.storage.Storage` on one file in the data dir.

* :mod:`.connection`: the file (private, WAL), the connection and its transactions;
  :mod:`.schema`: the tables, and migrating an older relay's database;
* one module of plain functions per group of tables, each storage call one transaction:
  :mod:`.clients` (device tokens, sign-ins), :mod:`.credentials` (pair codes, environment
  credentials), :mod:`.environments`, :mod:`.directives`, :mod:`.sessions`,
  :mod:`.events` (session logs); :mod:`.hashed`: what the tables of hashed secrets share;
* :mod:`.storage`: :class:`SqliteStorage`, which runs them from trio without blocking the
  event loop; :mod:`.database`: :class:`SqliteDatabase`, which runs them synchronously.
"""

from .connection import DATABASE_FILENAME, SqliteConnection, database_path
from .database import SqliteDatabase
from .storage import SqliteStorage

__all__ = [
    "DATABASE_FILENAME",
    "SqliteConnection",
    "SqliteDatabase",
    "SqliteStorage",
    "database_path",
]
