"""The values :mod:`worktrees` hands out: all frozen, safe to keep and compare."""

from __future__ import annotations

from pathlib import Path

import attrs

__all__ = [
    "NOT_A_WORKTREE",
    "Leftover",
    "Released",
    "Worktree",
    "WorktreeState",
    "WorktreesStatistics",
]


#: The reason given for a directory whose link to the repository is broken.
NOT_A_WORKTREE = "a directory that git does not know as a worktree"


def _commits(n: int) -> str:
    return f"{n} commit" if n == 1 else f"{n} commits"


@attrs.frozen(kw_only=True)
class Worktree:
    """One session's worktree: ``path`` is ``<root>/.rcd/worktrees/<slug>``, checked out on
    ``branch`` (``rcd/<slug>``), which started at ``base_commit``.

    ``base_commit`` is None only for a worktree found on disk whose base was never recorded
    (see :class:`~worktrees.Worktrees`); its branch is then never deleted.
    """

    path: Path
    branch: str
    slug: str
    base_commit: str | None


@attrs.frozen(kw_only=True)
class WorktreeState:
    """What :meth:`~worktrees.Worktrees.inspect` found; nothing here is ever stale-cached.

    - ``exists``: the directory is on disk.
    - ``registered``: git knows the directory as one of its worktrees (a directory whose
      link to the repository is broken counts as not registered: a plain directory).
    - ``uncommitted``: staged or unstaged changes to tracked files.
    - ``untracked``: files git does not track and does not ignore (for a plain directory:
      any content at all).
    - ``commits_ahead``: commits on the branch that are not in its base commit
      (``git rev-list --count base..branch``); 0 when the branch is gone; None when the
      base is unknown.
    - ``detached_commits``: commits the worktree has checked out on a detached HEAD that
      no branch, tag or remote-tracking branch contains: removing the worktree would lose
      them.
    - ``head``: the commit checked out in the worktree (None when it is gone).
    - ``branch_exists``: the worktree's ``rcd/<slug>`` branch exists.
    """

    exists: bool
    registered: bool
    uncommitted: bool
    untracked: bool
    commits_ahead: int | None
    detached_commits: int
    head: str | None
    branch_exists: bool

    @property
    def directory_reasons(self) -> tuple[str, ...]:
        """Why the directory must stay, as sentences; empty when it may be removed."""
        reasons: list[str] = []
        if self.exists and not self.registered:
            reasons.append(NOT_A_WORKTREE)
        if self.uncommitted:
            reasons.append("uncommitted changes")
        if self.untracked:
            reasons.append("untracked files")
        if self.detached_commits:
            reasons.append(
                f"{_commits(self.detached_commits)} on a detached HEAD that no branch contains"
            )
        return tuple(reasons)

    @property
    def branch_reasons(self) -> tuple[str, ...]:
        """Why the branch must stay (besides its directory staying), as sentences."""
        if not self.branch_exists:
            return ()
        if self.commits_ahead is None:
            return ("its base commit is not recorded",)
        if self.commits_ahead:
            return (f"{_commits(self.commits_ahead)} not in its base",)
        return ()

    @property
    def kept_reasons(self) -> tuple[str, ...]:
        """Everything that would keep the directory or the branch at release."""
        return self.directory_reasons + self.branch_reasons


@attrs.frozen(kw_only=True)
class Released:
    """What :meth:`~worktrees.Worktrees.release` did.

    ``removed``: the directory is gone (removed now, or already gone).
    ``branch_deleted``: the branch is gone (deleted now, or already gone).
    ``kept_reasons``: why anything stayed, as sentences ("uncommitted changes",
    "2 commits not in its base"); empty exactly when nothing was left behind.
    """

    removed: bool
    branch_deleted: bool
    kept_reasons: tuple[str, ...]

    @property
    def kept(self) -> bool:
        """True when the directory or the branch was left behind (see ``kept_reasons``)."""
        return not (self.removed and self.branch_deleted)


@attrs.frozen(kw_only=True)
class Leftover:
    """A worktree (or its branch alone) left by an earlier run, as found at start."""

    worktree: Worktree
    state: WorktreeState

    @property
    def summary(self) -> str:
        """One line for a log or a terminal, e.g.
        ``rcd/fix-login at /repo/.rcd/worktrees/fix-login: uncommitted changes``."""
        where = str(self.worktree.path) if self.state.exists else "(no directory)"
        reasons = "; ".join(self.state.kept_reasons) or "clean, nothing beyond its base"
        return f"{self.worktree.branch} at {where}: {reasons}"


@attrs.frozen(kw_only=True)
class WorktreesStatistics:
    """A snapshot of one :class:`~worktrees.Worktrees` manager (for ``rcd status``)."""

    root: Path
    created: int
    released: int
    removed: int
    branches_deleted: int
    kept: int
    #: A create or release holds the repository's lock right now (any manager of it).
    busy: bool
    #: Tasks waiting for that lock.
    waiting: int
