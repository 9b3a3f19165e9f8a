"""A session's work, seen and landed from any client: its changes, one file's diff, and the
actions that land it (commit, merge, push) or throw it away (discard).

The relay stores no code. A client's call becomes a :class:`WorkspaceRequest` directive;
the daemon reads or changes the repository and posts a :class:`WorkspaceAnswer`, which the
relay hands to the waiting client and forgets. Each action done is written to the
session's log by the daemon (a ``git_action`` event: who, what, the commit).
"""

from __future__ import annotations

from typing import Literal

import attrs

from .events import Spawn

__all__ = [
    "Action",
    "Changes",
    "DiscardLoss",
    "FileChange",
    "FileDiff",
    "Hunk",
    "KeptWorktree",
    "KeptWorktrees",
    "LandRequest",
    "Landed",
    "WorkspaceAnswer",
    "WorkspaceError",
    "WorkspaceRequest",
]

Action = Literal["commit", "merge", "push", "discard"]
ACTIONS: tuple[Action, ...] = ("commit", "merge", "push", "discard")
Ask = Literal["changes", "diff", "worktrees", "commit", "merge", "push", "discard"]
FileStatus = Literal["added", "modified", "deleted", "renamed", "copied", "type_changed"]
MAX_COMMIT_MESSAGE = 10_000
#: A discard's confirmation token (see :class:`DiscardLoss`).
CONFIRM_PATTERN = r"[0-9a-f]{16}"


@attrs.frozen(kw_only=True)
class FileChange:
    """One changed file: ``added``/``removed`` lines (None when binary), sizes in bytes
    (None for a side that does not exist), ``old_path`` for a rename or copy."""

    path: str
    old_path: str | None = None
    status: FileStatus
    added: int | None
    removed: int | None
    binary: bool = False
    size: int | None = None
    old_size: int | None = None


@attrs.frozen(kw_only=True)
class DiscardLoss:
    """What a discard would lose, in words, and the token that confirms exactly that."""

    lost: str
    confirm: str


@attrs.frozen(kw_only=True)
class Changes:
    """A session's work against the commit it started from (``base``): everything
    committed since (``commits``) and everything not (``uncommitted``) in one list."""

    cwd: str
    spawn: Spawn
    base: str
    head: str
    branch: str | None
    #: The branch a merge lands it on (None: none known, e.g. a detached start).
    target: str | None
    commits: int
    uncommitted: bool
    files: list[FileChange]
    #: Files beyond the listing's limit, not listed.
    more_files: int = 0
    #: What may be done with it now.
    actions: list[Action] = attrs.Factory(list)
    #: Where a push goes (None: no remote).
    remote: str | None = None
    #: For a worktree: what a discard would lose, and its token.
    discard: DiscardLoss | None = None


@attrs.frozen(kw_only=True)
class Hunk:
    header: str
    old_start: int
    new_start: int
    #: Each line as git writes it: " " (context), "+", "-" or "\\" then the text.
    lines: list[str]


@attrs.frozen(kw_only=True)
class FileDiff:
    file: FileChange
    #: None when the content is not shown: ``summary`` says why ("binary, 5.0 MB").
    hunks: list[Hunk] | None
    summary: str | None = None
    #: Lines beyond the limit were left out.
    truncated: bool = False


@attrs.frozen(kw_only=True)
class KeptWorktree:
    """A worktree (or its branch alone) kept because it holds work."""

    slug: str
    branch: str
    path: str
    exists: bool
    reasons: list[str]
    #: The session that worked there, as the relay knows it (None: none it knows).
    session_id: str | None = None


@attrs.frozen(kw_only=True)
class KeptWorktrees:
    worktrees: list[KeptWorktree]


@attrs.frozen(kw_only=True)
class LandRequest:
    """The body of ``POST …/changes/{action}``: ``message`` for a commit; ``confirm`` for
    a discard (the token of :attr:`Changes.discard`)."""

    message: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            [attrs.validators.min_len(1), attrs.validators.max_len(MAX_COMMIT_MESSAGE)]
        ),
    )
    confirm: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.matches_re(CONFIRM_PATTERN)),
    )


@attrs.frozen(kw_only=True)
class Landed:
    action: Action
    #: One sentence, as the session log has it.
    summary: str
    commit: str | None = None


@attrs.frozen(kw_only=True)
class WorkspaceRequest:
    """A client's question about a session's work, or an action on it, for the daemon.

    The workspace is named by ``session_id`` (with the ``cwd`` the relay's log has for it)
    or, for a kept worktree no session of the relay's claims, by ``slug``.
    """

    type: Literal["workspace"] = "workspace"
    id: str
    ask: Ask
    session_id: str | None = None
    slug: str | None = None
    cwd: str | None = None
    #: For ``diff``: the file (its path in :attr:`Changes.files`).
    path: str | None = None
    message: str | None = None
    confirm: str | None = None
    origin: str = "relay"
    #: The highest seq the relay holds for the session (an ended session's log continues
    #: after it).
    last_seq: int = 0
    #: When the asking client stopped waiting (the relay's clock, seconds since the epoch):
    #: a daemon that gets it much later (it was away) does nothing.
    expires_at: float | None = None


@attrs.frozen(kw_only=True)
class WorkspaceError:
    code: str
    message: str
    #: The files concerned (a conflict's, a dirty checkout's).
    files: list[str] = attrs.Factory(list)


@attrs.frozen(kw_only=True)
class WorkspaceAnswer:
    """The daemon's answer to :class:`WorkspaceRequest` ``id``: exactly one field set."""

    id: str
    changes: Changes | None = None
    diff: FileDiff | None = None
    worktrees: KeptWorktrees | None = None
    landed: Landed | None = None
    error: WorkspaceError | None = None
