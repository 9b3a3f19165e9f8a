"""One session's runtime: agent adapters, process lifecycle, events, permissions."""

from .adapter import (
    AgentAdapter,
    AgentEvent,
    AgentExited,
    AgentHandle,
    AgentLaunch,
    AgentOptions,
    EventSink,
    PermissionCancelled,
    earlier_of,
)
from .claude import ClaudeCode, parse_line
from .errors import AgentNotFound, AgentProtocolError, ImportRefused, SpawnError
from .session import Kept, SessionRuntime, SessionSnapshot, Workspace, WorkspaceError

__all__ = [
    "AgentAdapter",
    "AgentEvent",
    "AgentExited",
    "AgentHandle",
    "AgentLaunch",
    "AgentOptions",
    "AgentNotFound",
    "AgentProtocolError",
    "ClaudeCode",
    "EventSink",
    "ImportRefused",
    "Kept",
    "PermissionCancelled",
    "SessionRuntime",
    "SessionSnapshot",
    "SpawnError",
    "Workspace",
    "WorkspaceError",
    "earlier_of",
    "parse_line",
]
