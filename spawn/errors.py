"""Errors raised while running an agent session."""

from __future__ import annotations

__all__ = ["AgentNotFound", "AgentProtocolError", "ImportRefused", "SpawnError"]


class SpawnError(Exception):
    """Root of every error raised by :mod:`spawn`."""


class AgentNotFound(SpawnError):
    """The agent's executable could not be started."""

    def __init__(self, binary: str, hint: str) -> None:
        self.binary = binary
        self.hint = hint
        super().__init__(f"agent executable {binary!r} was not found; {hint}")


class AgentProtocolError(SpawnError):
    """The agent wrote something that is not its protocol (kept as ``line``), or could not
    open its session; ``code`` is the session's ``error`` event's (``agent_protocol``,
    ``not_resumable``)."""

    def __init__(self, message: str, line: str = "", code: str = "agent_protocol") -> None:
        self.line = line
        self.code = code
        super().__init__(message)


class ImportRefused(SpawnError):
    """A conversation made outside rcd cannot be continued here; the message says why."""
