"""What the storage backend hands back: plain frozen values, no SQL."""

from __future__ import annotations

from typing import Literal

import attrs

from wire import (
    DecidePermission,
    Directive,
    Interrupt,
    PushSettings,
    SendMessage,
    SessionState,
    Spawn,
    StopSession,
)

from .errors import CredentialRevoked, NotFound
from .useragent import describe_user_agent

__all__ = [
    "REVOKED_CREDENTIAL",
    "WEB_ORIGIN",
    "Appended",
    "ClientPrincipal",
    "ClientProof",
    "owned_environment",
    "DeviceTokenInfo",
    "DownlinkRead",
    "Enqueued",
    "EnvironmentRecord",
    "NewSession",
    "QueuedDirective",
    "SessionInput",
    "SessionRecord",
    "SignInRecord",
]

#: The ``origin`` of inputs sent with the web app's cookie.
WEB_ORIGIN = "web"

#: What a client can send toward a running session.
SessionInput = SendMessage | DecidePermission | Interrupt | StopSession


@attrs.frozen(kw_only=True)
class ClientProof:
    """The credential a client request presents, not yet checked against storage, so the
    check can ride in the same storage call as the work the request asks for."""

    via: Literal["token", "cookie"]
    #: The hashed device token or web session.
    secret_hash: str
    #: A cookie-signed write must carry the CSRF header (:data:`relay.auth.CSRF_HEADER`):
    #: without it, a cookie that checks out is 403 ``csrf`` (one that does not is 401).
    csrf_ok: bool = True


@attrs.frozen(kw_only=True)
class ClientPrincipal:
    """An authenticated client. ``name`` is the origin recorded on its inputs."""

    name: str
    via: Literal["token", "cookie"]
    #: The hashed web session, when ``via == "cookie"``.
    session_hash: str | None = None


@attrs.frozen(kw_only=True)
class DeviceTokenInfo:
    """A client (device) token as ``rcd relay token list`` shows it; never the secret."""

    name: str
    created_at: float
    last_used_at: float | None


@attrs.frozen(kw_only=True)
class SignInRecord:
    """A browser signed in with a login link (a web session), as its owner sees it."""

    #: Public: names it in ``rcd relay sign-ins revoke`` and the client API.
    id: str
    #: The hash of its cookie: tells a request whether the sign-in is its own.
    session_hash: str
    created_at: float
    #: When its cookie last authenticated a request (to the minute); None if never since.
    last_used_at: float | None
    expires_at: float
    #: The browser's ``User-Agent`` and the address it signed in from, when known.
    user_agent: str | None
    address: str | None

    @property
    def name(self) -> str:
        """The browser and system in words, e.g. ``Chrome on Android``."""
        return describe_user_agent(self.user_agent)


#: ``EnvironmentRecord.credential_id`` of an environment whose credential was revoked
#: starts with this (then the old id, which keeps rows unique).
REVOKED_CREDENTIAL = "revoked:"


@attrs.frozen(kw_only=True)
class EnvironmentRecord:
    id: str
    #: The environment credential that registered it; only that credential may drive it.
    credential_id: str
    name: str
    machine: str
    directory: str
    spawn: Spawn
    capacity: int
    agent: str
    #: True while a downlink stream is open.
    online: bool
    #: Sessions not ended.
    active_sessions: int
    #: While offline: since when (its link closed, or the relay started). None while online.
    offline_since: float | None = None
    #: The machine's host name, as its daemon last reported it (None if it never did).
    hostname: str | None = None

    @property
    def machine_name(self) -> str:
        """What people call the machine: its host name, else its identity."""
        return self.hostname or self.machine

    @property
    def revoked(self) -> bool:
        """True once its credential was revoked: no daemon can drive it again."""
        return self.credential_id.startswith(REVOKED_CREDENTIAL)


@attrs.frozen(kw_only=True)
class SessionRecord:
    id: str
    environment_id: str
    title: str | None
    state: SessionState
    spawn: Spawn | None
    cwd: str | None
    branch: str | None
    agent_session_id: str | None
    created_at: float
    updated_at: float
    #: Highest seq such that every event 1..last_seq is held.
    last_seq: int
    #: Since when the session's environment has been offline; None while it is online.
    environment_offline_since: float | None = None
    #: Asked to run sandboxed at its start (and so at every resume).
    sandbox: bool = False
    #: The agent it runs: asked for at its start, then as its ``session_started`` said;
    #: None: its environment's default, not started yet.
    agent: str | None = None
    #: Its environment's default agent (as its daemon registered).
    environment_agent: str | None = None


def owned_environment(
    env: EnvironmentRecord | None, environment_id: str, credential_id: str
) -> EnvironmentRecord:
    """``env`` (looked up as ``environment_id``) if ``credential_id`` registered it;
    CredentialRevoked when the environment was revoked for that credential, NotFound
    otherwise (another's environment looks exactly like a missing one)."""
    if env is None or env.credential_id != credential_id:
        if env is not None and env.credential_id == REVOKED_CREDENTIAL + credential_id:
            raise CredentialRevoked()
        raise NotFound(f"no environment {environment_id}")
    return env


@attrs.frozen(kw_only=True)
class NewSession:
    """A session a client asked for, before it is stored."""

    id: str
    environment_id: str
    title: str | None
    spawn: Spawn | None


@attrs.frozen(kw_only=True)
class QueuedDirective:
    #: Dense per environment, from 1; the downlink's SSE ``id:``.
    dseq: int
    directive: Directive


@attrs.frozen(kw_only=True)
class DownlinkRead:
    #: False once a newer downlink replaced this one (or the environment said goodbye):
    #: the reader must end its stream.
    current: bool
    directives: list[QueuedDirective]


@attrs.frozen(kw_only=True)
class Appended:
    """What one session's append did."""

    #: The highest contiguous seq the relay now holds (the daemon's ack).
    acked: int
    #: The first seq this append stored; ``acked + 1`` when it stored nothing new. The
    #: events from here through ``acked`` are the ones live streams have not seen.
    first_new: int


@attrs.frozen(kw_only=True)
class Enqueued:
    """A directive just queued on an environment's downlink."""

    environment_id: str
    dseq: int
    #: As queued: its ``origin`` is the client's name when storage authenticated the client.
    directive: SessionInput


@attrs.frozen(kw_only=True)
class PushSubscriptionRecord:
    """A device's Web Push subscription: where to send and the keys to encrypt for."""

    id: str
    endpoint: str
    p256dh: str
    auth: str
    settings: PushSettings
    created_at: float
    last_sent_at: float | None
