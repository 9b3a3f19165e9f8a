""":class:`SqliteStorage`: the relay's :class:`~relay.storage.Storage` on one SQLite
connection, driven from trio.

Each storage call is a table function (:mod:`relay.sqlite.clients`, ``credentials``,
``environments``, ``directives``, ``sessions``, ``events``) run on the connection; this
module decides where each runs (on the event loop, or in a worker thread) and when the
write-ahead log is copied back into the database.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import structlog
import trio

from ..auth import issue_environment_credential
from ..errors import RelayError
from . import clients, credentials, directives, environments, events, push, sessions, settings
from .connection import SqliteConnection, database_path, is_busy

__all__ = [
    "BUSY_TIMEOUT",
    "CHECKPOINT_BYTES",
    "CHECKPOINT_CHANGES",
    "HEAVY_EVENTS",
    "SqliteStorage",
]

log = structlog.get_logger("relay")

P = ParamSpec("P")
T = TypeVar("T")

#: How long a call in a worker thread waits for another process's lock.
BUSY_TIMEOUT = 10.0
#: Rows changed, or bytes of events written, between checkpoints (about SQLite's own
#: default of 1,000 log pages).
CHECKPOINT_CHANGES = 1000
CHECKPOINT_BYTES = 4 * 1024 * 1024
#: An append of more events than this runs in a worker thread.
HEAVY_EVENTS = 64


def _call(
    fn: Callable[Concatenate[SqliteConnection, P], T], *, heavy: bool | Callable[..., bool] = False
) -> Callable[Concatenate[SqliteStorage, P], Coroutine[Any, Any, T]]:
    """The :class:`SqliteStorage` method that runs the table function ``fn`` on the
    connection (see :meth:`SqliteStorage._run`). ``heavy`` (or ``heavy`` of the call's
    arguments) says whether a call may take milliseconds."""

    async def call(self: SqliteStorage, /, *args: P.args, **kwargs: P.kwargs) -> T:
        is_heavy = heavy(*args, **kwargs) if callable(heavy) else heavy
        return await self._run(lambda db: fn(db, *args, **kwargs), heavy=is_heavy)

    call.__name__ = fn.__name__
    call.__qualname__ = f"SqliteStorage.{fn.__name__}"
    call.__doc__ = fn.__doc__
    return call


class SqliteStorage:
    """:class:`~relay.storage.Storage` on one SQLite file in the data dir.

    One connection, and calls never interleave: each runs whole on the event loop, or (see
    below) in a worker thread while later calls wait their turn. A call that has started is
    not abandoned on cancellation: its transaction always commits or rolls back whole.

    The small calls on a request's path (authenticate, queue an input, append a batch, read
    a downlink) run on the event loop. In WAL mode with ``synchronous=NORMAL`` such a
    transaction reads and writes the page cache and never syncs to disk: tens to hundreds
    of microseconds, where handing it to a worker thread costs hundreds more and wakes two
    threads on the request's path. What could take long stays off the loop:

    * heavy calls (a page of a log, the list of sessions, an append of more than
      :data:`HEAVY_EVENTS` events) run in a worker thread;
    * locks: the connection never waits for one (``busy_timeout`` 0). A call that finds
      the database locked by another process (an admin command of ``rcd relay``) has
      changed nothing; it runs again in a worker thread, where it may wait;
    * syncs: commits never checkpoint (copy the log back into the database, the one step
      that syncs); after :data:`CHECKPOINT_CHANGES` changed rows or
      :data:`CHECKPOINT_BYTES` of events the storage's own task does it in a worker
      thread, as SQLite would have in a commit, while later calls wait their turn without
      blocking the loop.

    Use ``async with SqliteStorage(path) as storage``: the block is the storage's lifetime
    (its task runs in a nursery of its own until the block ends).
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        #: Held by a call whose turn on the connection comes after one in a worker thread
        #: (opening, closing, checkpointing, a heavy call, one waiting for a lock), and by
        #: that one.
        self._limiter = trio.CapacityLimiter(1)
        self._db: SqliteConnection | None = None
        self._exit = contextlib.AsyncExitStack()
        self._checkpoint_wanted: trio.MemorySendChannel[None] | None = None
        self._changes_at_checkpoint = 0
        self._bytes_at_checkpoint = 0
        self._checkpointing = False

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> SqliteStorage:
        return cls(database_path(data_dir))

    async def __aenter__(self) -> SqliteStorage:
        """Open the file, creating it and its schema if needed."""
        async with contextlib.AsyncExitStack() as stack:
            db = await trio.to_thread.run_sync(self._connect, limiter=self._limiter)
            # Unwound in reverse: stop the checkpoints, wait for one under way, then close.
            stack.push_async_callback(self._close, db)
            nursery = await stack.enter_async_context(trio.open_nursery())
            stack.callback(nursery.cancel_scope.cancel)
            self._checkpoint_wanted, wanted = trio.open_memory_channel[None](1)
            nursery.start_soon(self._checkpoints, db, wanted)
            self._db = db
            self._exit = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the connection; waits for a running call (shielded from cancellation).
        Calls from now on raise :class:`~relay.errors.RelayError`."""
        self._db = None
        await self._exit.aclose()

    def _connect(self) -> SqliteConnection:
        db = SqliteConnection(self.path, clock=self._clock)
        db.set_busy_timeout(0)
        db.stop_autocheckpoint()
        return db

    async def _close(self, db: SqliteConnection) -> None:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(db.close, limiter=self._limiter)

    def _open_db(self) -> SqliteConnection:
        if self._db is None:
            raise RelayError("storage is not open")
        return self._db

    async def _run(self, fn: Callable[[SqliteConnection], T], *, heavy: bool = False) -> T:
        """``fn`` on the connection: on the event loop unless it is ``heavy`` (it may take
        milliseconds: many rows, large payloads) or has to wait for a lock."""
        db = self._open_db()
        if not heavy and not self._limiter.borrowed_tokens:
            try:
                return self._inline(db, fn)
            except _Locked:
                heavy = True
        # The connection is (or was) in a worker thread: this call comes after that one.
        async with self._limiter:
            db = self._open_db()  # it may have closed meanwhile
            if not heavy:
                with contextlib.suppress(_Locked):
                    return self._inline(db, fn)
            return self._after(db, await trio.to_thread.run_sync(_waiting_for_locks, db, fn))

    def _inline(self, db: SqliteConnection, fn: Callable[[SqliteConnection], T]) -> T:
        """``fn`` on the event loop; :class:`_Locked` when it found the database locked
        (rolled back: nothing changed, so it can run again where waiting is harmless)."""
        try:
            return self._after(db, fn(db))
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            log.info("storage call waits for a lock", error=str(exc))
            raise _Locked from None

    def _after(self, db: SqliteConnection, result: T) -> T:
        """Ask for a checkpoint when enough was written since the last one."""
        changes = db.total_changes - self._changes_at_checkpoint
        written = db.bytes_written - self._bytes_at_checkpoint
        if self._checkpointing or (changes < CHECKPOINT_CHANGES and written < CHECKPOINT_BYTES):
            return result
        if self._db is not db or self._checkpoint_wanted is None:
            return result  # closing, which checkpoints
        self._checkpointing = True
        self._changes_at_checkpoint = db.total_changes
        self._bytes_at_checkpoint = db.bytes_written
        self._checkpoint_wanted.send_nowait(None)
        return result

    async def _checkpoints(
        self, db: SqliteConnection, wanted: trio.MemoryReceiveChannel[None]
    ) -> None:
        """Copy the log back into the database in a worker thread whenever a call asks;
        calls that come meanwhile wait their turn (the next write then starts the log
        afresh). Runs until cancelled."""
        async for _ in wanted:
            try:
                async with self._limiter:
                    await trio.to_thread.run_sync(db.checkpoint)
            except Exception as exc:
                # The log grows until the next checkpoint succeeds; nothing is lost.
                log.warning("checkpoint failed", error=str(exc))
            finally:
                self._checkpointing = False

    # -- the calls: each runs a table function (docstrings: relay.storage.Storage) ----------

    add_device_token = _call(clients.add_device_token)
    list_device_tokens = _call(clients.list_device_tokens)
    revoke_device_token = _call(clients.revoke_device_token)
    authenticate_client = _call(clients.authenticate_client)
    add_login_code = _call(clients.add_login_code)
    redeem_login_code = _call(clients.redeem_login_code)
    delete_web_session = _call(clients.delete_web_session)
    list_sign_ins = _call(clients.list_sign_ins)
    revoke_sign_in = _call(clients.revoke_sign_in)
    revoke_all_sign_ins = _call(clients.revoke_all_sign_ins)

    add_pair_code = _call(credentials.add_pair_code)
    redeem_pair_code = _call(credentials.redeem_pair_code)
    add_environment_credential = _call(credentials.add_environment_credential)
    authenticate_environment_credential = _call(credentials.authenticate_environment_credential)
    authorize_token = _call(credentials.authorize_token)

    register_environment = _call(environments.register_environment)
    get_environment = _call(environments.get_environment)
    list_environments = _call(environments.list_environments)
    mark_all_offline = _call(environments.mark_all_offline)
    open_downlink = _call(environments.open_downlink)
    close_downlink = _call(environments.close_downlink)
    say_goodbye = _call(environments.say_goodbye)
    revoke_environment = _call(environments.revoke_environment)

    save_settings = _call(settings.save_settings)
    read_settings = _call(settings.read_settings)
    queue_settings = _call(settings.queue_settings)
    queue_directive = _call(settings.queue_settings)
    save_features = _call(settings.save_features)
    environment_features = _call(settings.environment_features)

    add_push_subscription = _call(push.add_push_subscription)
    device_push_subscriptions = _call(push.device_push_subscriptions)
    set_push_settings = _call(push.set_push_settings)
    delete_push_subscription = _call(push.delete_push_subscription)
    live_push_subscriptions = _call(push.live_push_subscriptions)
    drop_push_subscription = _call(push.drop_push_subscription)
    push_sent = _call(push.push_sent)
    push_answerer = _call(push.push_answerer)

    read_downlink = _call(directives.read_downlink)
    acknowledge_directives = _call(directives.acknowledge_directives)

    create_session = _call(sessions.create_session)
    get_session = _call(sessions.get_session)
    list_sessions = _call(sessions.list_sessions, heavy=True)
    rename_session = _call(sessions.rename_session)
    submit_input = _call(sessions.submit_input)
    resume_session = _call(sessions.resume_session)

    append_events = _call(
        events.append_events, heavy=lambda _session, batch, **_: len(batch) > HEAVY_EVENTS
    )
    append_many = _call(
        events.append_many,
        heavy=lambda batches, **_: sum(len(batch) for _, batch in batches) > HEAVY_EVENTS,
    )
    # A page of a log (a catch-up, a client's page): up to a thousand rows to decode.
    read_events = _call(events.read_events, heavy=True)

    async def create_environment_credential(self, machine: str) -> str:
        """Mint and store an environment credential (the daemon's embedded mode skips
        pairing); returns the secret. Same as :func:`relay.auth.issue_environment_credential`.
        """
        return await issue_environment_credential(self, machine)


class _Locked(Exception):
    """A call found the database locked by another connection, and changed nothing."""


def _waiting_for_locks(db: SqliteConnection, fn: Callable[[SqliteConnection], T]) -> T:
    db.set_busy_timeout(BUSY_TIMEOUT)
    try:
        return fn(db)
    finally:
        db.set_busy_timeout(0)
