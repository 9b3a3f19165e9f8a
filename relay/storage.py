"""The storage backend seam: a :class:`Storage` Protocol and its SQLite implementation.

The Protocol speaks the relay's domain (device tokens, environments, directives, session
logs), never SQL, so a Redis backend (streams for logs and directives) can implement it
later. Every method that checks and writes does both atomically and raises the
:mod:`relay.errors` API error that explains a refusal; a refused call changes nothing.
Secrets arrive already hashed (see :mod:`relay.auth`).

Wake-ups are not the storage's job: after a write the caller notifies the :class:`relay.fanout.Hub`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, TypeVar

import structlog
import trio

from wire import Event, RegisterRequest, RegisterResponse, StartSession

from .auth import hash_secret, new_environment_credential
from .errors import ApiError, RelayError
from .records import (
    Appended,
    ClientPrincipal,
    ClientProof,
    DeviceTokenInfo,
    DownlinkRead,
    Enqueued,
    EnvironmentRecord,
    NewSession,
    SessionInput,
    SessionRecord,
    SignInRecord,
)
from .sqlite import SqliteDatabase, database_path
from .sqlite_base import is_busy

__all__ = ["SessionInput", "SqliteStorage", "Storage"]

log = structlog.get_logger("relay")

T = TypeVar("T")


class Storage(Protocol):
    """Everything the relay keeps. All methods are safe to call concurrently."""

    # -- client credentials

    async def add_device_token(self, name: str, token_hash: str) -> None:
        """Raises :class:`~relay.errors.AdminError` if ``name`` is taken."""

    async def list_device_tokens(self) -> list[DeviceTokenInfo]: ...

    async def revoke_device_token(self, name: str) -> bool:
        """False if there was no such token."""

    async def authenticate_client(self, proof: ClientProof) -> ClientPrincipal:
        """Who presents ``proof`` (a device token's use is recorded). Raises
        Unauthenticated, or Forbidden (403 ``csrf``) for a cookie-signed write without the
        CSRF header."""

    async def add_login_code(self, code_hash: str, ttl: float) -> None: ...

    async def redeem_login_code(
        self,
        code_hash: str,
        session_hash: str,
        session_ttl: float,
        *,
        user_agent: str | None = None,
        address: str | None = None,
    ) -> bool:
        """Use up a login code and start a web session (a browser's sign-in, kept with the
        browser's ``user_agent`` and the ``address`` it signed in from); False if the code
        is unknown, used or expired."""

    async def delete_web_session(self, session_hash: str) -> None: ...

    async def list_sign_ins(self) -> list[SignInRecord]:
        """Browsers signed in now, the most recently used first."""

    async def revoke_sign_in(self, sign_in_id: str) -> str | None:
        """End that sign-in at once; returns its web session's hash, None if there is no
        such current one."""

    async def revoke_all_sign_ins(self) -> int:
        """End every sign-in at once; returns how many there were."""

    # -- daemon credentials

    async def add_pair_code(self, code_hash: str, ttl: float) -> None: ...

    async def redeem_pair_code(
        self, code_hash: str, machine: str, credential_hash: str
    ) -> str | None:
        """Use up a pair code and store a new environment credential; its id, or None."""

    async def add_environment_credential(self, machine: str, credential_hash: str) -> str:
        """Store a new environment credential; returns its id."""

    async def authenticate_environment_credential(self, credential_hash: str) -> str | None:
        """The credential's id, or None."""

    # -- environments and their downlinks

    async def register_environment(
        self, credential_id: str, request: RegisterRequest
    ) -> RegisterResponse:
        """Same credential + machine + directory + name → the same environment id."""

    async def authorize_token(
        self, credential_hash: str, environment_id: str, session_id: str | None
    ) -> str:
        """Everything minting an access token checks, in one round trip; returns the
        environment credential's id. Raises CredentialRevoked (unknown or revoked
        credential) or NotFound (another's environment, or a session not in it)."""

    async def get_environment(self, environment_id: str) -> EnvironmentRecord | None: ...

    async def list_environments(self) -> list[EnvironmentRecord]: ...

    async def mark_all_offline(self) -> None:
        """Forget every downlink (a restarted relay holds none)."""

    async def open_downlink(self, environment_id: str, link_id: str) -> None:
        """Make ``link_id`` the environment's one live downlink, replacing any other."""

    async def close_downlink(self, environment_id: str, link_id: str) -> bool:
        """Go offline if ``link_id`` is still the live downlink; False if it was replaced."""

    async def read_downlink(
        self, environment_id: str, link_id: str, after: int, limit: int
    ) -> DownlinkRead:
        """Directives after dseq ``after``, or ``current=False`` once ``link_id`` is replaced."""

    async def acknowledge_directives(self, environment_id: str, through: int) -> None: ...

    async def say_goodbye(self, environment_id: str) -> list[str]:
        """Go offline and end every session not ended; returns the sessions it ended."""

    async def revoke_environment(self, environment_id: str) -> list[str]:
        """Revoke the credential that registered the environment; returns the environments
        it had registered (now offline for good, their sessions ended)."""

    # -- sessions

    async def create_session(self, new: NewSession, start: StartSession) -> SessionRecord:
        """Store a queued session and enqueue ``start``, atomically.

        Raises NotFound, EnvironmentOffline or AtCapacity.
        """

    async def get_session(self, session_id: str) -> SessionRecord | None: ...

    async def list_sessions(self) -> list[SessionRecord]:
        """Newest first."""

    async def rename_session(self, session_id: str, title: str) -> SessionRecord:
        """Raises NotFound."""

    async def submit_input(
        self,
        session_id: str,
        directive: SessionInput,
        client: ClientProof | None = None,
        *,
        offline_grace: float | None = None,
    ) -> Enqueued | None:
        """Enqueue an input for the session's daemon (one round trip: the session is looked
        up, and with ``client`` the client authenticated, in the same transaction; the
        queued directive's ``origin`` is then the client's name).

        Returns None (and enqueues nothing) for a message whose id was seen before.
        Raises Unauthenticated or Forbidden as :meth:`authenticate_client` does, NotFound,
        SessionEnded, or for a permission decision NotFound
        (``unknown_permission_request``) / Conflict (``permission_already_resolved``).
        With ``offline_grace``, an input other than a stop to a session whose environment
        has been offline longer than that many seconds is Conflict
        (``environment_offline``): it would wait for a daemon that may never come back.
        """

    async def resume_session(self, session_id: str) -> SessionRecord:
        """Queue an ended session again and enqueue its ResumeSession.

        Raises NotFound, NotResumable, EnvironmentOffline or AtCapacity.
        """

    async def append_events(
        self, session_id: str, events: Sequence[Event], *, credential_id: str | None = None
    ) -> int:
        """Store the contiguous run of new events and index them; returns the highest
        contiguous seq held. Duplicates are ignored. Raises NotFound, also when
        ``credential_id`` is given and did not register the session's environment."""

    async def append_many(
        self,
        batches: Sequence[tuple[str, Sequence[Event]]],
        *,
        credential_id: str,
        ack: tuple[str, int] | None = None,
    ) -> list[Appended | ApiError]:
        """:meth:`append_events` for several sessions, atomically per session and in one
        round trip; what each session's events stored, or the error they alone got.
        ``ack`` (environment id, dseq): :meth:`acknowledge_directives` in the same call."""

    async def read_events(self, session_id: str, after: int, limit: int) -> list[Event]: ...


class SqliteStorage:
    """:class:`Storage` on one SQLite file in the data dir.

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
      :data:`CHECKPOINT_BYTES` of events a worker thread does it, as SQLite would have in
      a commit, while later calls wait their turn without blocking the loop.

    Use ``async with SqliteStorage(path) as storage`` or :meth:`open` / :meth:`aclose`.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        #: Held by a call whose turn on the connection comes after one in a worker thread
        #: (opening, closing, checkpointing, a heavy call, one waiting for a lock), and by
        #: that one.
        self._limiter = trio.CapacityLimiter(1)
        self._db: SqliteDatabase | None = None
        self._changes_at_checkpoint = 0
        self._bytes_at_checkpoint = 0
        self._checkpointing = False

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> SqliteStorage:
        return cls(database_path(data_dir))

    async def open(self) -> None:
        """Open the file, creating it and its schema if needed."""
        if self._db is None:
            self._db = await trio.to_thread.run_sync(self._connect, limiter=self._limiter)

    def _connect(self) -> SqliteDatabase:
        db = SqliteDatabase(self.path, clock=self._clock)
        db.set_busy_timeout(0)
        db.stop_autocheckpoint()
        return db

    async def aclose(self) -> None:
        """Close the connection; waits for a running call (shielded from cancellation)."""
        db, self._db = self._db, None
        if db is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(db.close, limiter=self._limiter)

    async def __aenter__(self) -> SqliteStorage:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _open_db(self) -> SqliteDatabase:
        if self._db is None:
            raise RelayError("storage is not open")
        return self._db

    async def _run(self, fn: Callable[[SqliteDatabase], T], *, heavy: bool = False) -> T:
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

    def _inline(self, db: SqliteDatabase, fn: Callable[[SqliteDatabase], T]) -> T:
        """``fn`` on the event loop; :class:`_Locked` when it found the database locked
        (rolled back: nothing changed, so it can run again where waiting is harmless)."""
        try:
            return self._after(db, fn(db))
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            log.info("storage call waits for a lock", error=str(exc))
            raise _Locked from None

    def _after(self, db: SqliteDatabase, result: T) -> T:
        """Start a checkpoint when enough was written since the last one."""
        changes = db.total_changes - self._changes_at_checkpoint
        written = db.bytes_written - self._bytes_at_checkpoint
        if self._checkpointing or (changes < CHECKPOINT_CHANGES and written < CHECKPOINT_BYTES):
            return result
        try:
            trio.lowlevel.spawn_system_task(self._checkpoint, db)
        except RuntimeError:  # the run is ending: closing the connection checkpoints
            return result
        self._checkpointing = True
        self._changes_at_checkpoint = db.total_changes
        self._bytes_at_checkpoint = db.bytes_written
        return result

    async def _checkpoint(self, db: SqliteDatabase) -> None:
        """Copy the log back into the database in a worker thread; calls that come
        meanwhile wait their turn (the next write then starts the log afresh)."""
        try:
            async with self._limiter:
                if self._db is db:
                    await trio.to_thread.run_sync(db.checkpoint)
        except Exception as exc:
            # The log grows until the next checkpoint succeeds; nothing is lost.
            log.warning("checkpoint failed", error=str(exc))
        finally:
            self._checkpointing = False

    async def add_device_token(self, name: str, token_hash: str) -> None:
        await self._run(lambda db: db.add_device_token(name, token_hash))

    async def list_device_tokens(self) -> list[DeviceTokenInfo]:
        return await self._run(lambda db: db.list_device_tokens())

    async def revoke_device_token(self, name: str) -> bool:
        return await self._run(lambda db: db.revoke_device_token(name))

    async def authenticate_client(self, proof: ClientProof) -> ClientPrincipal:
        return await self._run(lambda db: db.authenticate_client(proof))

    async def add_login_code(self, code_hash: str, ttl: float) -> None:
        await self._run(lambda db: db.add_login_code(code_hash, ttl))

    async def redeem_login_code(
        self,
        code_hash: str,
        session_hash: str,
        session_ttl: float,
        *,
        user_agent: str | None = None,
        address: str | None = None,
    ) -> bool:
        return await self._run(
            lambda db: db.redeem_login_code(
                code_hash, session_hash, session_ttl, user_agent=user_agent, address=address
            )
        )

    async def delete_web_session(self, session_hash: str) -> None:
        await self._run(lambda db: db.delete_web_session(session_hash))

    async def list_sign_ins(self) -> list[SignInRecord]:
        return await self._run(lambda db: db.list_sign_ins())

    async def revoke_sign_in(self, sign_in_id: str) -> str | None:
        return await self._run(lambda db: db.revoke_sign_in(sign_in_id))

    async def revoke_all_sign_ins(self) -> int:
        return await self._run(lambda db: db.revoke_all_sign_ins())

    async def add_pair_code(self, code_hash: str, ttl: float) -> None:
        await self._run(lambda db: db.add_pair_code(code_hash, ttl))

    async def redeem_pair_code(
        self, code_hash: str, machine: str, credential_hash: str
    ) -> str | None:
        return await self._run(lambda db: db.redeem_pair_code(code_hash, machine, credential_hash))

    async def add_environment_credential(self, machine: str, credential_hash: str) -> str:
        return await self._run(lambda db: db.add_environment_credential(machine, credential_hash))

    async def create_environment_credential(self, machine: str) -> str:
        """Mint and store an environment credential (the daemon's embedded mode skips
        pairing); returns the secret. Same as :func:`relay.auth.issue_environment_credential`.
        """
        credential = new_environment_credential()
        await self.add_environment_credential(machine, hash_secret(credential))
        return credential

    async def authenticate_environment_credential(self, credential_hash: str) -> str | None:
        return await self._run(lambda db: db.authenticate_environment_credential(credential_hash))

    async def register_environment(
        self, credential_id: str, request: RegisterRequest
    ) -> RegisterResponse:
        return await self._run(lambda db: db.register_environment(credential_id, request))

    async def authorize_token(
        self, credential_hash: str, environment_id: str, session_id: str | None
    ) -> str:
        return await self._run(
            lambda db: db.authorize_token(credential_hash, environment_id, session_id)
        )

    async def get_environment(self, environment_id: str) -> EnvironmentRecord | None:
        return await self._run(lambda db: db.get_environment(environment_id))

    async def list_environments(self) -> list[EnvironmentRecord]:
        return await self._run(lambda db: db.list_environments())

    async def mark_all_offline(self) -> None:
        await self._run(lambda db: db.mark_all_offline())

    async def open_downlink(self, environment_id: str, link_id: str) -> None:
        await self._run(lambda db: db.open_downlink(environment_id, link_id))

    async def close_downlink(self, environment_id: str, link_id: str) -> bool:
        return await self._run(lambda db: db.close_downlink(environment_id, link_id))

    async def read_downlink(
        self, environment_id: str, link_id: str, after: int, limit: int
    ) -> DownlinkRead:
        return await self._run(lambda db: db.read_downlink(environment_id, link_id, after, limit))

    async def acknowledge_directives(self, environment_id: str, through: int) -> None:
        await self._run(lambda db: db.acknowledge_directives(environment_id, through))

    async def say_goodbye(self, environment_id: str) -> list[str]:
        return await self._run(lambda db: db.say_goodbye(environment_id))

    async def revoke_environment(self, environment_id: str) -> list[str]:
        return await self._run(lambda db: db.revoke_environment(environment_id))

    async def create_session(self, new: NewSession, start: StartSession) -> SessionRecord:
        return await self._run(lambda db: db.create_session(new, start))

    async def get_session(self, session_id: str) -> SessionRecord | None:
        return await self._run(lambda db: db.get_session(session_id))

    async def list_sessions(self) -> list[SessionRecord]:
        return await self._run(lambda db: db.list_sessions(), heavy=True)

    async def rename_session(self, session_id: str, title: str) -> SessionRecord:
        return await self._run(lambda db: db.rename_session(session_id, title))

    async def submit_input(
        self,
        session_id: str,
        directive: SessionInput,
        client: ClientProof | None = None,
        *,
        offline_grace: float | None = None,
    ) -> Enqueued | None:
        return await self._run(
            lambda db: db.submit_input(session_id, directive, client, offline_grace=offline_grace)
        )

    async def resume_session(self, session_id: str) -> SessionRecord:
        return await self._run(lambda db: db.resume_session(session_id))

    async def append_events(
        self, session_id: str, events: Sequence[Event], *, credential_id: str | None = None
    ) -> int:
        return await self._run(
            lambda db: db.append_events(session_id, events, credential_id=credential_id),
            heavy=len(events) > HEAVY_EVENTS,
        )

    async def append_many(
        self,
        batches: Sequence[tuple[str, Sequence[Event]]],
        *,
        credential_id: str,
        ack: tuple[str, int] | None = None,
    ) -> list[Appended | ApiError]:
        return await self._run(
            lambda db: db.append_many(batches, credential_id=credential_id, ack=ack),
            heavy=sum(len(events) for _, events in batches) > HEAVY_EVENTS,
        )

    async def read_events(self, session_id: str, after: int, limit: int) -> list[Event]:
        # A page of a log (a catch-up, a client's page): up to a thousand rows to decode.
        return await self._run(lambda db: db.read_events(session_id, after, limit), heavy=True)


#: How long a call in a worker thread waits for another process's lock.
BUSY_TIMEOUT = 10.0
#: Rows changed, or bytes of events written, between checkpoints (about SQLite's own
#: default of 1,000 log pages).
CHECKPOINT_CHANGES = 1000
CHECKPOINT_BYTES = 4 * 1024 * 1024
#: An append of more events than this runs in a worker thread.
HEAVY_EVENTS = 64


class _Locked(Exception):
    """A call found the database locked by another connection, and changed nothing."""


def _waiting_for_locks(db: SqliteDatabase, fn: Callable[[SqliteDatabase], T]) -> T:
    db.set_busy_timeout(BUSY_TIMEOUT)
    try:
        return fn(db)
    finally:
        db.set_busy_timeout(0)
