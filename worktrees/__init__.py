"""Git worktrees for sessions, with the "never lose work" rules (DESIGN.md, "Worktrees").

The daemon opens one :class:`Worktrees` manager per repository at start, reports its
:meth:`~Worktrees.leftovers`, calls :meth:`~Worktrees.create` when a ``--spawn worktree``
session starts and :meth:`~Worktrees.release` when it ends.
"""

from __future__ import annotations

from .errors import (
    EmptyRepository,
    GitFailed,
    NotAGitRepository,
    WorktreeError,
    WorktreeTimeout,
)
from .exclude import EXCLUDE_PATTERN
from .manager import CLEANUP_TIMEOUT, WORKTREES_DIR, Worktrees
from .models import NOT_A_WORKTREE, Leftover, Released, Worktree, WorktreesStatistics, WorktreeState
from .pool import POOL_DIR, PoolStatistics, SparePool
from .slug import BRANCH_PREFIX, MAX_SLUG_LENGTH, slugify, unique_slug

__all__ = [
    "BRANCH_PREFIX",
    "CLEANUP_TIMEOUT",
    "EXCLUDE_PATTERN",
    "EmptyRepository",
    "GitFailed",
    "Leftover",
    "MAX_SLUG_LENGTH",
    "NOT_A_WORKTREE",
    "NotAGitRepository",
    "POOL_DIR",
    "PoolStatistics",
    "Released",
    "SparePool",
    "Worktree",
    "WorktreeError",
    "WorktreeState",
    "WorktreeTimeout",
    "Worktrees",
    "WorktreesStatistics",
    "WORKTREES_DIR",
    "slugify",
    "unique_slug",
]
