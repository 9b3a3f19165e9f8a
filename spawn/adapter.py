"""The one seam between a session and an agent: the :class:`AgentAdapter` Protocol.

Claude Code (stream-json) is the first adapter; ACP agents plug in here too. An adapter
turns the agent's own protocol into the normalised payloads of :mod:`wire` and back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import attrs
import trio

import wire

from .errors import ImportRefused
from .sandbox import SandboxPolicy

__all__ = [
    "AgentEvent",
    "AgentExited",
    "AgentAdapter",
    "AgentHandle",
    "AgentLaunch",
    "AgentOptions",
    "EventSink",
    "earlier_of",
    "tool_summary",
    "PermissionCancelled",
    "Streaming",
]


@attrs.frozen(kw_only=True)
class AgentOptions:
    """How the environment's settings start its agents (see :mod:`wire.settings`)."""

    #: The sandbox it runs in (:mod:`spawn.sandbox`); None, or not enabled: none.
    sandbox: SandboxPolicy | None = None
    #: The permission mode it starts in (Claude Code's ``--permission-mode``); None: its own.
    permission_mode: str | None = None
    #: Tool rules it may use without asking (Claude Code's ``--allowedTools``).
    allowed_tools: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class AgentLaunch:
    """Where and how to start one agent process."""

    cwd: str
    env: dict[str, str]
    #: The agent's own conversation id to continue (``claude --resume``), or None.
    resume: str | None = None
    options: AgentOptions = attrs.Factory(AgentOptions)


@attrs.frozen(kw_only=True)
class AgentExited:
    """The agent process is gone. ``expected`` is true when we asked it to stop."""

    returncode: int
    expected: bool
    detail: str = ""


@attrs.frozen(kw_only=True)
class PermissionCancelled:
    """The agent withdrew a permission request (e.g. its turn was interrupted)."""

    request_id: str


@attrs.frozen(kw_only=True)
class Streaming:
    """Text the agent is writing, before its message is finished (see :mod:`wire.partial`):
    ``text`` follows what earlier ones of the same ``block`` said; ``start`` marks a block's
    first piece (it may be empty)."""

    block: int
    kind: wire.PartialKind
    name: str | None = None
    text: str
    start: bool = False


#: What an adapter reports: the wire payloads it can produce, plus lifecycle markers.
AgentEvent = (
    wire.AssistantText
    | wire.ToolUse
    | wire.ToolResult
    | wire.PermissionRequest
    | wire.TurnResult
    | wire.Error
    | PermissionCancelled
    | Streaming
    | AgentExited
)

EventSink = Callable[[AgentEvent], Awaitable[None]]


class AgentHandle(Protocol):
    """Controls one running agent. Every method raises nothing once the agent is gone:
    it is a no-op, and the exit arrives as :class:`AgentExited` on the sink."""

    @property
    def agent_session_id(self) -> str | None: ...

    @property
    def pid(self) -> int | None: ...

    async def send_message(self, text: str) -> None: ...

    def send_message_now(self, text: str) -> bool:
        """Hand ``text`` to the agent at once, without waiting, when that can be done
        (True); else nothing happened (False) and :meth:`send_message` is the way."""
        ...

    async def answer_permission(
        self, request_id: str, decision: wire.Decision, message: str | None
    ) -> None: ...

    async def interrupt(self) -> None: ...

    async def stop(self, grace: float) -> None:
        """Stop the agent and wait until it is reaped."""
        ...


class AgentAdapter(Protocol):
    """Starts agents of one kind (``name`` is what ``session_started.agent`` says)."""

    name: str

    async def run(
        self,
        launch: AgentLaunch,
        sink: EventSink,
        *,
        task_status: trio.TaskStatus[AgentHandle] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start the agent, call ``task_status.started(handle)`` once it accepts input,
        feed every event to ``sink`` in order, and return after :class:`AgentExited` was
        delivered. Raises ``AgentNotFound`` before ``started`` if it cannot start at all."""
        ...


def earlier_of(
    adapter: AgentAdapter, conversation_id: str, env: Mapping[str, str], directory: str | None
) -> list[wire.EventData]:
    """What ``adapter``'s agent said in ``conversation_id``, made outside rcd in
    ``directory`` on this machine; with ``directory`` None (a session resumed) nothing, once
    it checked that nothing else has the conversation open. An adapter that can do this has
    ``earlier(conversation_id, env, directory)``; ImportRefused when it cannot (for an
    import; a resume goes ahead). Blocking: call it in a thread."""
    earlier = getattr(adapter, "earlier", None)
    if earlier is None:
        if directory is None:
            return []
        raise ImportRefused(f"{adapter.name} cannot continue a conversation made outside rcd")
    events: list[wire.EventData] = earlier(conversation_id, env, directory)
    return events


def tool_summary(event: wire.ToolUse) -> str:
    """A tool use in a few words, for ``rcd status``: ``Bash: make test``."""
    for key in ("command", "file_path", "path", "pattern", "url", "description"):
        value = event.input.get(key)
        if isinstance(value, str) and value:
            first_line = value.splitlines()[0] if value.strip() else value
            return f"{event.name}: {first_line[:80]}"
    return event.name
