"""The commit each same-dir session started from, so its changes can be shown later.

A worktree's start is recorded in the repository (``branch.rcd/<slug>.rcdbase``); a
same-dir session has no branch of its own, so the daemon keeps its start here, in its
state directory (0600), the newest :data:`KEPT` sessions per directory.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import structlog

from .errors import ConfigError
from .paths import read_private_json, write_private_json

__all__ = ["SameDirStarts"]

log = structlog.get_logger("daemon.starts")

#: How many sessions' starts are kept per directory.
KEPT = 2000


@attrs.define(eq=False)
class SameDirStarts:
    #: None: kept in memory only (tests, a daemon without a state directory).
    path: Path | None
    _starts: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        if self._starts is None:
            self._starts = {}
            if self.path is not None and self.path.exists():
                try:
                    found = read_private_json(self.path, "same-dir session starts")
                except (ConfigError, OSError) as exc:
                    log.warning("starts_unreadable", path=str(self.path), error=str(exc))
                    found = {}
                self._starts = {k: v for k, v in found.items() if isinstance(v, str)}
        return self._starts

    def get(self, session_id: str) -> str | None:
        return self._load().get(session_id)

    def record(self, session_id: str, commit: str) -> None:
        starts = self._load()
        if starts.get(session_id) == commit:
            return
        starts[session_id] = commit
        for old in list(starts)[: max(0, len(starts) - KEPT)]:
            del starts[old]
        if self.path is not None:
            try:
                write_private_json(self.path, dict(starts))
            except OSError as exc:
                log.warning("starts_not_saved", path=str(self.path), error=str(exc))
