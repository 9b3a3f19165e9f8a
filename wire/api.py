"""Client API bodies and objects (the public contract; see ``docs/api.md``)."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from .events import Decision, Spawn

__all__ = [
    "CreateSession",
    "EnvironmentInfo",
    "ErrorBody",
    "ErrorDetail",
    "PermissionDecision",
    "PostMessage",
    "Rename",
    "SessionInfo",
    "ShownSessionState",
    "SignInInfo",
]

MAX_MESSAGE_BYTES = 1024 * 1024
#: The longest title a session may be given, at creation or by a rename (in characters).
MAX_TITLE_LENGTH = 500
#: What an agent's conversation id may look like (:attr:`CreateSession.conversation`).
CONVERSATION_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}"
#: An agent's name as ``rcd start --agent`` and ``--allow-agent`` know it.
AGENT_NAME_PATTERN = r"[a-z][a-z0-9-]{0,39}"

#: A session's state as the client API shows it: the state its events say
#: (:data:`wire.SessionState`), or ``disconnected`` while its environment has been offline
#: past the relay's grace (nothing can reach the session until its daemon is back).
ShownSessionState = Literal[
    "queued", "starting", "idle", "busy", "awaiting_permission", "ending", "ended", "disconnected"
]


def nonempty(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value.strip():
        raise ValueError(f"{attribute.name} must not be empty")


@attrs.frozen(kw_only=True)
class CreateSession:
    prompt: str | None = None
    title: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.max_len(MAX_TITLE_LENGTH)),
    )
    spawn: Spawn | None = None
    #: The agent's own id of a conversation made outside rcd on the environment's machine
    #: (for Claude Code, the uuid of a local ``claude`` conversation) to continue: its
    #: earlier turns are shown first (``rcd import``).
    conversation: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.matches_re(CONVERSATION_ID_PATTERN)),
    )
    #: True: the session runs sandboxed even where its environment does not sandbox (a
    #: session can tighten its environment's policy, never loosen it).
    sandbox: bool = False
    #: The agent to run (``claude``, ``codex``...): one its environment allows (its
    #: settings' ``agents``); None: the environment's default.
    agent: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.matches_re(AGENT_NAME_PATTERN)),
    )


@attrs.frozen(kw_only=True)
class PostMessage:
    #: Chosen by the client; posting the same id twice is one message.
    id: str = attrs.field(validator=attrs.validators.and_(nonempty, attrs.validators.max_len(200)))
    text: str = attrs.field(validator=nonempty)


@attrs.frozen(kw_only=True)
class PermissionDecision:
    decision: Decision
    message: str | None = None


@attrs.frozen(kw_only=True)
class Rename:
    title: str = attrs.field(
        validator=attrs.validators.and_(nonempty, attrs.validators.max_len(MAX_TITLE_LENGTH))
    )


@attrs.frozen(kw_only=True)
class EnvironmentInfo:
    id: str
    name: str
    #: The name of the machine the daemon runs on (its host name; its machine id if its
    #: daemon did not say): two machines may serve environments of the same name and
    #: directory.
    machine: str
    online: bool
    directory: str
    spawn: Spawn
    capacity: int
    active_sessions: int


@attrs.frozen(kw_only=True)
class SessionInfo:
    id: str
    environment_id: str
    title: str | None
    state: ShownSessionState
    spawn: Spawn | None
    cwd: str | None
    branch: str | None
    created_at: float
    updated_at: float
    url: str
    #: The agent it runs when it is not its environment's default (``rcd start
    #: --allow-agent``); left out for one of the default agent.
    agent: str | None = None


@attrs.frozen(kw_only=True)
class ErrorDetail:
    code: str
    message: str


@attrs.frozen(kw_only=True)
class ErrorBody:
    error: ErrorDetail


@attrs.frozen(kw_only=True)
class SignInInfo:
    """A browser signed in to the web app (with a one-time login link)."""

    id: str
    #: The browser and system in words, from its ``User-Agent``: ``Chrome on Android``.
    name: str
    #: Its ``User-Agent`` as it sent it (at most 512 characters), when it sent one.
    user_agent: str | None
    #: The address it signed in from.
    address: str | None
    created_at: float
    #: When it last made a request (to the minute).
    last_used_at: float | None
    expires_at: float
    #: True for the sign-in of the browser asking.
    current: bool
