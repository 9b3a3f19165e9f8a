"""One session's runtime: agent adapters, process lifecycle, events, permissions."""

from .adapter import (
    AgentAdapter,
    AgentEvent,
    AgentExited,
    AgentHandle,
    AgentLaunch,
    EventSink,
    PermissionCancelled,
)
from .claude import ClaudeCode, parse_line
from .errors import AgentNotFound, AgentProtocolError, SpawnError
from .session import Kept, SessionRuntime, SessionSnapshot, Workspace, WorkspaceError

__all__ = [
    "AgentAdapter",
    "AgentEvent",
    "AgentExited",
    "AgentHandle",
    "AgentLaunch",
    "AgentNotFound",
    "AgentProtocolError",
    "ClaudeCode",
    "EventSink",
    "Kept",
    "PermissionCancelled",
    "SessionRuntime",
    "SessionSnapshot",
    "SpawnError",
    "Workspace",
    "WorkspaceError",
    "parse_line",
]
