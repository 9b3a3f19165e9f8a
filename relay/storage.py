"""The storage backend seam: the :class:`Storage` Protocol (its SQLite implementation,
:class:`relay.sqlite.SqliteStorage`, is re-exported here).

The Protocol speaks the relay's domain (device tokens, environments, directives, session
logs), never SQL, so a Redis backend (streams for logs and directives) can implement it
later. Every method that checks and writes does both atomically and raises the
:mod:`relay.errors` refusal that explains it (the app alone turns it into an HTTP status);
a refused call changes nothing. Secrets arrive already hashed (see :mod:`relay.auth`).

Wake-ups are not the storage's job: after a write the caller notifies the :class:`relay.fanout.Hub`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from wire import (
    Event,
    PushSettings,
    RegisterRequest,
    RegisterResponse,
    SettingsView,
    StartSession,
    UpdateSettings,
    WorkspaceRequest,
)

from .errors import ApiError
from .records import (
    Appended,
    ClientPrincipal,
    ClientProof,
    DeviceTokenInfo,
    DownlinkRead,
    Enqueued,
    EnvironmentRecord,
    NewSession,
    PushSubscriptionRecord,
    SessionInput,
    SessionRecord,
    SignInRecord,
)
from .sqlite import SqliteStorage

__all__ = ["SessionInput", "SqliteStorage", "Storage"]


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

    # -- Web Push subscriptions (each held by the signed-in device that made it)

    async def add_push_subscription(
        self,
        client: ClientPrincipal,
        endpoint: str,
        p256dh: str,
        auth: str,
        settings: PushSettings | None,
    ) -> PushSubscriptionRecord:
        """Keep a subscription for ``client``'s device (the same endpoint replaces)."""

    async def device_push_subscriptions(
        self, client: ClientPrincipal
    ) -> list[PushSubscriptionRecord]: ...

    async def set_push_settings(
        self, client: ClientPrincipal, subscription_id: str, settings: PushSettings
    ) -> PushSubscriptionRecord:
        """NotFound unless the subscription is ``client``'s device's."""

    async def delete_push_subscription(self, client: ClientPrincipal, subscription_id: str) -> None:
        """NotFound unless the subscription is ``client``'s device's."""

    async def live_push_subscriptions(self) -> list[PushSubscriptionRecord]:
        """Those of devices still signed in (the others are deleted)."""

    async def drop_push_subscription(self, subscription_id: str) -> None: ...

    async def push_sent(self, endpoint: str) -> None: ...

    async def push_answerer(self, subscription_id: str) -> str | None:
        """Who answers from its notification (None: its device is no longer signed in)."""

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

    async def save_settings(self, environment_id: str, view: SettingsView) -> None:
        """Keep the settings the environment's daemon reported (and its capacity and
        spawn mode from them)."""

    async def read_settings(self, environment_id: str) -> SettingsView | None:
        """None when its daemon never reported them. Raises NotFound."""

    async def queue_settings(self, environment_id: str, update: UpdateSettings) -> int:
        """Queue ``update`` for the daemon. Raises NotFound or EnvironmentOffline."""

    async def queue_directive(self, environment_id: str, directive: WorkspaceRequest) -> int:
        """Queue a question for the daemon (it must be online: EnvironmentOffline)."""

    async def save_features(self, environment_id: str, features: list[str]) -> None:
        """What the environment's daemon said it does (at its registration)."""

    async def environment_features(self, environment_id: str) -> frozenset[str]:
        """What its daemon said it does. Raises NotFound."""

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
