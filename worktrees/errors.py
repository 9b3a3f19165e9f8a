"""Errors raised by :mod:`worktrees`.

Every error is a :class:`WorktreeError`; the data a caller may want to show or log is
carried as attributes. GitPython and OS errors are mapped to these at the boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "EmptyRepository",
    "GitFailed",
    "NotAGitRepository",
    "WorktreeError",
    "WorktreeTimeout",
]


class WorktreeError(Exception):
    """Root of every error raised by :mod:`worktrees`."""


class NotAGitRepository(WorktreeError):
    """``path`` is not inside a git working tree (or does not exist, or is a bare repo)."""

    def __init__(self, path: str | Path, detail: str = "is not inside a git repository") -> None:
        self.path = str(path)
        self.detail = detail
        super().__init__(
            f"{self.path} {detail}: --spawn worktree needs a git repository; "
            "run git init or use --spawn same-dir"
        )


class EmptyRepository(WorktreeError):
    """The repository at ``path`` has no commit yet, so there is no HEAD to branch from."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        super().__init__(
            f"the git repository at {self.path} has no commits yet, so a worktree cannot "
            "start from HEAD: make a first commit (git commit) or use --spawn same-dir"
        )


class WorktreeTimeout(WorktreeError):
    """Checking out the worktree at ``path`` took longer than ``seconds`` (git's own work;
    waiting for another creation's turn does not count)."""

    def __init__(self, path: str | Path, seconds: float) -> None:
        self.path = str(path)
        self.seconds = seconds
        super().__init__(f"checking out the worktree {self.path} took over {seconds:.0f}s")


class GitFailed(WorktreeError):
    """A git command exited non-zero (or could not be started: ``returncode`` 127)."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        detail = self.summary or "no error output"
        super().__init__(f"{' '.join(self.argv)} exited with {returncode}: {detail}")

    @property
    def summary(self) -> str:
        """The most telling line of git's error output ('fatal: ...' if any), or ''."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        for line in lines:
            if line.startswith(("fatal:", "error:")):
                return line
        return lines[-1] if lines else ""
