"""What the daemon has applied from its downlink, kept across restarts.

Directives are delivered at least once; the daemon applies each exactly once by remembering
the highest downlink sequence number it applied, per environment, in its state directory.
A restarted daemon resumes the downlink after it instead of replaying work it already did.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import structlog

__all__ = ["RECORD_SIZE", "AppliedStore"]

log = structlog.get_logger("daemon.applied")

#: The file is always this many bytes: ``{"applied_through": N}``, spaces, a newline.
RECORD_SIZE = 64


class AppliedStore:
    """A tiny file per environment: ``{"applied_through": N}``, padded to
    :data:`RECORD_SIZE` bytes and rewritten in place.

    Saved at least once per turn (with the acks), so a save is one ``pwrite`` of the whole
    record on a descriptor kept open, not a new file renamed over the old one (six system
    calls and a directory update each time). One write of a whole record by one call is
    never seen half done by a reader, nor left half done by a crash of the process.
    """

    def __init__(self, directory: Path, environment_id: str) -> None:
        self.path = directory / f"applied-{environment_id}.json"
        self._fd: int | None = None

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
        """Record ``applied_through`` (a crash leaves the old value or the new one)."""
        record = json.dumps({"applied_through": applied_through}).encode()
        if self._fd is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.ftruncate(fd, RECORD_SIZE)  # an older, shorter or longer file: this size
            except OSError:
                os.close(fd)
                raise
            self._fd = fd
        os.pwrite(self._fd, record.ljust(RECORD_SIZE - 1) + b"\n", 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
