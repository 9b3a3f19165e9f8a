""":class:`SqliteDatabase`: the relay's database with storage calls as plain synchronous
methods, for tools and tests that drive it without an event loop (``bench/relay_scale.py``,
``tests/daemon/test_protocol_stateful.py``). The relay itself uses
:class:`relay.sqlite.SqliteStorage`; the admin commands use it too (:mod:`relay.admin`).

Each method is its table function, bound: ``db.append_events(...)`` is
:func:`relay.sqlite.events.append_events` of ``db``.
"""

from __future__ import annotations

from . import credentials, directives, environments, events, sessions
from .connection import SqliteConnection

__all__ = ["SqliteDatabase"]


class SqliteDatabase(SqliteConnection):
    """One connection (see :class:`~relay.sqlite.connection.SqliteConnection`) with the
    calls its users make. Not thread-safe."""

    add_environment_credential = credentials.add_environment_credential
    register_environment = environments.register_environment
    open_downlink = environments.open_downlink
    read_downlink = directives.read_downlink
    acknowledge_directives = directives.acknowledge_directives
    create_session = sessions.create_session
    submit_input = sessions.submit_input
    append_events = events.append_events
    read_events = events.read_events
