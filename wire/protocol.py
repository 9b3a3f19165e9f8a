"""Daemon ↔ relay messages: registration, the downlink and the uplink.

The daemon opens every connection (outbound only):

* ``POST /daemon/v1/register`` with :class:`RegisterRequest` → :class:`RegisterResponse`.
* ``POST /daemon/v1/environments/{id}/tokens`` with :class:`TokenRequest` →
  :class:`AccessToken`. Register and tokens take the long-lived environment credential;
  every other route takes a short-lived access token: the *link* token for the downlink,
  acks and goodbye, a *session* token (one per session) for that session's events.
* ``GET /daemon/v1/environments/{id}/downlink`` is a Server-Sent Events stream. Each SSE
  event has ``id:`` = the environment's dense downlink sequence number, ``event:`` = the
  directive's ``type`` and ``data:`` = the JSON of one :data:`Directive`. The daemon resumes
  with ``Last-Event-ID`` and acknowledges with ``POST .../ack`` (:class:`Ack`). A comment
  line (``: keep-alive``) is sent at least every 15 s.
* ``POST /daemon/v1/sessions/{id}/events`` with :class:`EventBatch` → :class:`UplinkAck`:
  idempotent by ``(session, seq)``; the answer is the highest contiguous seq the relay holds.
* ``POST /daemon/v1/environments/{id}/uplink`` with :class:`UplinkRequest` →
  :class:`UplinkResponse`: the same for several sessions in one request and one database
  transaction (each session's events carry that session's token; the request the link
  token), and can carry an :class:`Ack`. The daemon sends this whenever more than one
  session has events waiting, and whenever it has an uplink request open already: it may
  open one before its batch exists (the head is sent, the body follows when there are
  events), so the relay has routed it and checked its token by then. Sent as
  :data:`UPLINK_FRAMES_TYPE`, the body is several such requests, one per line, which the
  relay stores as each arrives; the answer (:class:`UplinkFrames`) comes when the body
  ends. The daemon keeps such a body open a few milliseconds after its first batch, so
  batches of a busy machine share requests. With the :data:`UPLINK_STREAM_HEADER` header
  (the request's id), the relay also answers each frame as soon as it is stored, on the
  environment's open downlink (an SSE event :data:`UPLINK_ACK_EVENT` without ``id:``,
  carrying :class:`UplinkFrameAck`); once the daemon has seen such an answer it keeps one
  request open for many turns (tens of seconds), so a busy session costs no request per
  turn. Without an open downlink the answers still come at the body's end.
  An uplink request may also carry replies being written (:class:`SessionPartial`,
  :mod:`wire.partial`), which the relay hands to the sessions' open streams and never
  stores; a frame of only those is not answered on the downlink.
* ``POST /daemon/v1/environments/{id}/goodbye`` marks the environment offline.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import cattrs.gen

from .api import CONVERSATION_ID_PATTERN, CreateSession, SessionInfo
from .changes import WorkspaceRequest
from .converter import converter
from .events import Decision, Event, PermissionResolved, Spawn
from .partial import SessionPartial
from .settings import SettingsView, UpdateSettings

__all__ = [
    "PROTOCOL_VERSION",
    "Ack",
    "DecidePermission",
    "Directive",
    "EventBatch",
    "AccessToken",
    "Interrupt",
    "OpenSession",
    "PairRequest",
    "PairResponse",
    "RegisterRequest",
    "RegisterResponse",
    "ResumeSession",
    "SendMessage",
    "StartSession",
    "SessionAck",
    "SessionEvents",
    "StopSession",
    "TokenRequest",
    "FEATURES_HEADER",
    "UPLINK_ACK_EVENT",
    "UPLINK_FRAMES_TYPE",
    "UPLINK_STREAM_HEADER",
    "UplinkAck",
    "UplinkFrameAck",
    "UplinkFrames",
    "UplinkRequest",
    "UplinkResponse",
]

PROTOCOL_VERSION = 1


@attrs.frozen(kw_only=True)
class PairRequest:
    code: str
    machine: str


@attrs.frozen(kw_only=True)
class PairResponse:
    credential: str


@attrs.frozen(kw_only=True)
class RegisterRequest:
    """What a daemon says about itself. The same credential, machine, directory and name
    always map to the same environment id; registering again replaces the old link."""

    name: str
    #: The machine's stable identity (e.g. its /etc/machine-id), part of the environment's.
    machine: str
    directory: str
    spawn: Spawn
    capacity: int = attrs.field(validator=attrs.validators.ge(1))
    agent: str
    protocol: int = PROTOCOL_VERSION
    #: The machine's name for people (its host name), shown to clients as the environment's
    #: ``machine``; it may change without changing the environment.
    hostname: str | None = None


@attrs.frozen(kw_only=True)
class TokenRequest:
    """Ask for an access token: the environment's link token, or (with ``session_id``) the
    uplink token of one of its sessions."""

    session_id: str | None = None


@attrs.frozen(kw_only=True)
class AccessToken:
    """A short-lived bearer token scoped to one link or one session. ``expires_in`` is in
    seconds from now (relative, so the two clocks need not agree)."""

    token: str
    expires_in: float


@attrs.frozen(kw_only=True)
class OpenSession:
    """A session the relay still believes is running, with the highest seq it holds."""

    session_id: str
    last_seq: int
    #: Where it ran (a worktree's path, and its branch), so the daemon that ends it can
    #: say truthfully what was kept there.
    cwd: str | None = None
    branch: str | None = None


@attrs.frozen(kw_only=True)
class RegisterResponse:
    environment_id: str
    #: Sessions of this environment that were not ended when the daemon last went away.
    open_sessions: list[OpenSession] = attrs.Factory(list)


# -- Directives: everything the downlink carries. Work (start / resume / stop) and inputs
# (message / permission / interrupt) share one ordered stream per environment.


@attrs.frozen(kw_only=True)
class StartSession:
    type: Literal["start_session"] = "start_session"
    session_id: str
    prompt: str | None = None
    #: The input id of ``prompt`` (so its ``user_message`` echo can be matched).
    prompt_input_id: str | None = None
    title: str | None = None
    spawn: Spawn | None = None
    origin: str = "relay"
    #: The agent's own conversation to continue, made outside rcd on the daemon's machine
    #: (``rcd import``; see :class:`wire.CreateSession`). Left out when None: a daemon of
    #: before it refuses the key, so only an import can fail on one.
    conversation: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.matches_re(CONVERSATION_ID_PATTERN)),
    )
    #: Sandboxed whatever the environment's policy (``sandbox`` in ``DAEMON_FEATURES``).
    sandbox: bool = False
    #: The agent to run, one the daemon allows (``agents`` in ``DAEMON_FEATURES``); None:
    #: its default.
    agent: str | None = None


@attrs.frozen(kw_only=True)
class ResumeSession:
    type: Literal["resume_session"] = "resume_session"
    session_id: str
    agent_session_id: str
    cwd: str
    spawn: Spawn
    branch: str | None = None
    #: The highest seq the relay holds for the session: the resumed log continues after it.
    last_seq: int = 0
    #: It was started sandboxed (:attr:`StartSession.sandbox`), so it resumes so.
    sandbox: bool = False
    #: The agent it ran (:attr:`StartSession.agent`), so it resumes with it.
    agent: str | None = None


@attrs.frozen(kw_only=True)
class StopSession:
    type: Literal["stop_session"] = "stop_session"
    session_id: str
    origin: str = "relay"


@attrs.frozen(kw_only=True)
class SendMessage:
    type: Literal["message"] = "message"
    session_id: str
    input_id: str
    text: str
    origin: str


@attrs.frozen(kw_only=True)
class DecidePermission:
    type: Literal["permission"] = "permission"
    session_id: str
    request_id: str
    decision: Decision
    message: str | None = None
    origin: str


@attrs.frozen(kw_only=True)
class Interrupt:
    type: Literal["interrupt"] = "interrupt"
    session_id: str
    origin: str = "relay"


Directive = (
    StartSession
    | ResumeSession
    | StopSession
    | SendMessage
    | DecidePermission
    | Interrupt
    | UpdateSettings
    | WorkspaceRequest
)


@attrs.frozen(kw_only=True)
class Ack:
    """The daemon has applied every directive up to and including ``through``."""

    through: int = attrs.field(validator=attrs.validators.ge(0))


@attrs.frozen(kw_only=True)
class EventBatch:
    events: list[Event]


@attrs.frozen(kw_only=True)
class UplinkAck:
    #: Highest seq such that the relay holds every event 1..acked of the session.
    acked: int


@attrs.frozen(kw_only=True)
class SessionEvents:
    """One session's part of an :class:`UplinkRequest`."""

    session_id: str
    #: That session's access token.
    token: str
    events: list[Event]


@attrs.frozen(kw_only=True)
class UplinkRequest:
    sessions: list[SessionEvents]
    #: The daemon has applied every directive through this dseq: an :class:`Ack` riding
    #: along, stored in the same transaction (the link token is the request's).
    ack: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    #: Replies being written (never stored; see :mod:`wire.partial`). The answer says
    #: nothing of them: a lost one is made good by the next, or by the finished message.
    #: Left out when empty, and sent only to a relay whose registration answer listed
    #: ``partials`` in :data:`FEATURES_HEADER`: a relay of before them refuses the key.
    partials: list[SessionPartial] = attrs.Factory(list)


def _omit_when_empty(cls: type[Any], *names: str) -> None:
    """Leave fields ``names`` of ``cls`` out of its JSON when empty (None, False, ``[]``:
    their defaults), so a peer of before them, which refuses unknown keys, reads the rest
    as ever."""
    fields = cattrs.gen.make_dict_unstructure_fn(cls, converter)

    def unstructure(value: Any) -> dict[str, object]:
        data: dict[str, object] = fields(value)
        for name in names:
            if not data[name]:
                del data[name]
        return data

    converter.register_unstructure_hook(cls, unstructure)


_omit_when_empty(UplinkRequest, "partials")
_omit_when_empty(StartSession, "conversation", "sandbox", "agent")
_omit_when_empty(ResumeSession, "sandbox", "agent")
_omit_when_empty(UpdateSettings, "grant", "grant_id", "revoke_grant")
_omit_when_empty(SettingsView, "grants", "agents")
_omit_when_empty(PermissionResolved, "grant")
# A client of before it talks to a relay of before it as ever.
_omit_when_empty(CreateSession, "conversation", "sandbox", "agent")
_omit_when_empty(SessionInfo, "agent")

#: The header of the relay's answer to a registration that lists what it takes beyond
#: protocol 1's first form, comma-separated: ``partials`` (:class:`UplinkRequest`). The
#: daemon's registration request carries it too: :data:`DAEMON_FEATURES`.
FEATURES_HEADER = "Rcd-Features"
#: What a daemon does beyond protocol 1's first form, in its registration's
#: :data:`FEATURES_HEADER`: ``conversations`` (:attr:`StartSession.conversation`),
#: ``sandbox`` (:attr:`StartSession.sandbox`), ``settings`` (:class:`UpdateSettings`,
#: and the daemon reports a :class:`~wire.settings.SettingsView`), ``changes``
#: (:class:`~wire.changes.WorkspaceRequest`, answered with a
#: :class:`~wire.changes.WorkspaceAnswer`), ``grants`` (:attr:`UpdateSettings.grant`,
#: ``permission_resolved`` naming a grant; :mod:`wire.grants`), ``agents``
#: (:attr:`StartSession.agent`, and the settings' ``agents``). The relay refuses to send
#: a daemon what it did not list.
DAEMON_FEATURES = ("conversations", "sandbox", "settings", "changes", "grants", "agents")


@attrs.frozen(kw_only=True)
class SessionAck:
    """The answer for one session of an :class:`UplinkRequest`: ``acked`` as in
    :class:`UplinkAck`, or the error (HTTP status, code, message) its events alone got."""

    session_id: str
    acked: int | None = None
    status: int | None = None
    code: str | None = None
    message: str | None = None


@attrs.frozen(kw_only=True)
class UplinkResponse:
    #: One per session of the request, in its order.
    sessions: list[SessionAck]


#: The content type of an uplink request sent as frames: one :class:`UplinkRequest` per
#: line, each stored (and shown to clients) as soon as it arrives.
UPLINK_FRAMES_TYPE = "application/x-ndjson"


@attrs.frozen(kw_only=True)
class UplinkFrames:
    """The answer to an uplink request sent as frames: one :class:`UplinkResponse` per
    frame, in order."""

    frames: list[UplinkResponse]


#: The header of an uplink request sent as frames that asks for each frame's answer on the
#: environment's open downlink as soon as the frame is stored. Its value names the request
#: in those answers: 1 to 64 of ``A-Z a-z 0-9 _ -``.
UPLINK_STREAM_HEADER = "Rcd-Uplink-Stream"
#: The downlink's SSE event name for such an answer (it has no ``id:``: not a directive).
UPLINK_ACK_EVENT = "uplink_ack"


@attrs.frozen(kw_only=True)
class UplinkFrameAck:
    """The answer to one frame of an uplink request that carried
    :data:`UPLINK_STREAM_HEADER`, sent on the downlink once the frame is stored (the same
    answer is in the request's own :class:`UplinkFrames` when its body ends)."""

    #: The request's :data:`UPLINK_STREAM_HEADER`.
    stream: str
    #: The frame's index in that request, from 0.
    frame: int = attrs.field(validator=attrs.validators.ge(0))
    answer: UplinkResponse
