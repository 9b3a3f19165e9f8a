"""What the daemon has applied from its downlink, kept across restarts.

Directives are delivered at least once; the daemon applies each exactly once by remembering
the highest downlink sequence number it applied, per environment, in its state directory.
A restarted daemon resumes the downlink after it instead of replaying work it already did.
"""

from __future__ import annotations

import json
from pathlib import Path

import structlog

from .paths import write_private_json

__all__ = ["AppliedStore"]

log = structlog.get_logger("daemon.applied")


class AppliedStore:
    """A tiny file per environment: ``{"applied_through": N}``, replaced atomically."""

    def __init__(self, directory: Path, environment_id: str) -> None:
        self.path = directory / f"applied-{environment_id}.json"

    def load(self) -> int:
        """The last applied sequence number, or 0 (a missing or unreadable file is logged)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            value = data["applied_through"]
            if isinstance(value, int) and value >= 0:
                return value
            raise ValueError(f"applied_through is {value!r}")
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("applied_state_unreadable", path=str(self.path), error=str(exc))
            return 0

    def save(self, applied_through: int) -> None:
        """Write atomically (a crash leaves the old value or the new one, never half)."""
        write_private_json(self.path, {"applied_through": applied_through})
