"""Reading a repository's state with GitPython. Every function here BLOCKS.

Call them through ``trio.to_thread.run_sync(..., limiter=...)`` (the manager does). Each
opens its own :class:`git.Repo` and closes it before returning: GitPython leaks file
handles and persistent ``cat-file`` processes in long-lived programs otherwise. Nothing
here changes the repository; status runs with ``GIT_OPTIONAL_LOCKS=0`` so that reading a
worktree never takes its index lock away from the agent working in it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import attrs
import git

from .errors import GitFailed, NotAGitRepository
from .models import Worktree, WorktreeState
from .slug import BRANCH_PREFIX

__all__ = [
    "RepoPaths",
    "find",
    "head_commit",
    "spare_state",
    "locate",
    "read_state",
    "scan",
    "spares",
    "taken_slugs",
]

_BRANCH_REFS = "refs/heads/" + BRANCH_PREFIX
_BASE_KEY = "rcdbase"


@attrs.frozen
class RepoPaths:
    root: Path  # the top level of the working tree
    common_dir: Path  # the repository's own directory, shared by all its worktrees


@attrs.frozen
class _Entry:
    """One record of ``git worktree list --porcelain``."""

    path: str
    head: str | None
    branch: str | None  # full ref name; None when detached
    prunable: bool


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(path)


@contextmanager
def _repo(path: Path, *, search_parents: bool = False) -> Iterator[git.Repo]:
    try:
        repo = git.Repo(path, search_parent_directories=search_parents)
    except git.NoSuchPathError as exc:
        raise NotAGitRepository(path, "does not exist") from exc
    except git.InvalidGitRepositoryError as exc:
        raise NotAGitRepository(path) from exc
    try:
        yield repo
    finally:
        repo.close()


def _git(repo: git.Repo, *args: str, ok: tuple[int, ...] = (0,), **env: str) -> tuple[int, str]:
    """Run ``git <args>`` through GitPython; (exit code, stdout). Other codes raise."""
    command = getattr(repo.git, args[0].replace("-", "_"))
    status, out, err = cast(
        tuple[int, str, str],
        command(*args[1:], with_extended_output=True, with_exceptions=False, env=env or None),
    )
    if status not in ok:
        raise GitFailed(("git", *args), status, err)
    return status, out


def _commit(repo: git.Repo, rev: str) -> str | None:
    status, out = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", ok=(0, 1))
    return out.strip() if status == 0 else None


def _count(repo: git.Repo, *revs: str) -> int:
    return int(_git(repo, "rev-list", "--count", *revs)[1].strip())


def _entries(repo: git.Repo) -> list[_Entry]:
    entries: list[_Entry] = []
    for block in _git(repo, "worktree", "list", "--porcelain")[1].split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            fields[key] = value
        if "worktree" in fields:
            entries.append(
                _Entry(
                    path=fields["worktree"],
                    head=fields.get("HEAD"),
                    branch=fields.get("branch"),
                    prunable="prunable" in fields,
                )
            )
    return entries


def _rcd_branches(repo: git.Repo) -> list[str]:
    out = _git(repo, "for-each-ref", "--format=%(refname)", _BRANCH_REFS.rstrip("/"))[1]
    return [ref.removeprefix("refs/heads/") for ref in out.split() if ref.startswith(_BRANCH_REFS)]


def _recorded_bases(repo: git.Repo) -> dict[str, str]:
    pattern = r"^branch\." + BRANCH_PREFIX.replace(".", r"\.") + r".*\." + _BASE_KEY + "$"
    status, out = _git(repo, "config", "--get-regexp", pattern, ok=(0, 1))
    bases: dict[str, str] = {}
    for line in out.splitlines() if status == 0 else []:
        key, _, value = line.partition(" ")
        branch = key.removeprefix("branch.").removesuffix("." + _BASE_KEY)
        bases[branch] = value.strip()
    return bases


def _under(directory: Path, entries: list[_Entry]) -> dict[str, _Entry]:
    """The worktrees git knows directly under ``directory``, by directory name."""
    real_dir = _real(directory)
    return {
        os.path.basename(_real(e.path)): e
        for e in entries
        if os.path.dirname(_real(e.path)) == real_dir
    }


def _children(directory: Path) -> list[str]:
    try:
        return sorted(child.name for child in directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def locate(path: Path) -> RepoPaths:
    """The repository around ``path`` (any directory inside its working tree).

    Raises :class:`NotAGitRepository` (not in a repository, missing, bare) or
    :class:`GitFailed` (git refuses it, e.g. 'dubious ownership').
    """
    if not path.is_dir():
        raise NotAGitRepository(path, "is not a directory" if path.exists() else "does not exist")
    with _repo(path, search_parents=True) as repo:
        if repo.bare or repo.working_tree_dir is None:
            raise NotAGitRepository(path, "is a bare git repository (it has no working tree)")
        root = _git(repo, "rev-parse", "--show-toplevel")[1].strip()
        return RepoPaths(root=Path(_real(root)), common_dir=Path(_real(repo.common_dir)))


def head_commit(root: Path) -> str | None:
    """The commit HEAD points at, or None in a repository without commits."""
    with _repo(root) as repo:
        return _commit(repo, "HEAD")


def branch(root: Path, name: str) -> tuple[str | None, str | None]:
    """Where branch ``name`` points (None: there is no such branch) and the base commit
    rcd recorded for it (None: none recorded)."""
    with _repo(root) as repo:
        return _commit(repo, "refs/heads/" + name), _recorded_bases(repo).get(name)


def taken_slugs(root: Path, directory: Path) -> set[str]:
    """Names a new worktree must not take: entries in ``directory``, worktrees git has
    registered there (even if their directory is gone), and ``rcd/*`` branches (for
    ``rcd/a/b``, ``a`` too: ``rcd/a`` could not be created next to it)."""
    with _repo(root) as repo:
        registered = _under(directory, _entries(repo))
        branches = _rcd_branches(repo)
    taken = set(_children(directory)) | set(registered)
    taken.update(b.removeprefix(BRANCH_PREFIX).split("/")[0] for b in branches)
    return taken


def _has_content(path: Path) -> bool:
    if not path.is_dir():
        return True  # a file (or a symlink) where a worktree should be
    return bool(_children(path))


def read_state(root: Path, worktree: Worktree) -> WorktreeState:
    """The state of ``worktree`` right now. Raises :class:`GitFailed` or
    :class:`NotAGitRepository` when git cannot read it (e.g. a corrupt worktree)."""
    real_path = _real(worktree.path)
    with _repo(root) as repo:
        entry = next((e for e in _entries(repo) if _real(e.path) == real_path), None)
        tip = _commit(repo, "refs/heads/" + worktree.branch)
        if tip is None:
            ahead: int | None = 0
        elif worktree.base_commit is None:
            ahead = None
        else:
            ahead = _count(repo, f"{worktree.base_commit}..{tip}")
    exists = os.path.lexists(worktree.path)
    # A directory whose link to the repository is broken is "prunable" for git: a plain
    # directory for us, never removed.
    registered = entry is not None and not (exists and entry.prunable)
    uncommitted = untracked = False
    detached = 0
    head = entry.head if entry is not None else None
    if exists and registered:
        assert entry is not None
        with _repo(worktree.path) as wt_repo:
            lines = _git(wt_repo, "status", "--porcelain", GIT_OPTIONAL_LOCKS="0")[1]
            codes = [line[:2] for line in lines.splitlines() if line]
            untracked = "??" in codes
            uncommitted = any(code != "??" for code in codes)
            head = _commit(wt_repo, "HEAD")
            if entry.branch is None and head is not None:
                detached = _count(wt_repo, head, "--not", "--branches", "--tags", "--remotes")
    elif exists:
        untracked = _has_content(worktree.path)
    return WorktreeState(
        exists=exists,
        registered=registered,
        uncommitted=uncommitted,
        untracked=untracked,
        commits_ahead=ahead,
        detached_commits=detached,
        head=head,
        branch_exists=tip is not None,
    )


def scan(root: Path, directory: Path) -> list[Worktree]:
    """Every worktree rcd may have left: worktrees git knows in ``directory``, other
    entries there, and ``rcd/<slug>`` branches whose directory is gone. Sorted by slug."""
    with _repo(root) as repo:
        registered = _under(directory, _entries(repo))
        branches = _rcd_branches(repo)
        bases = _recorded_bases(repo)
    slugs = set(registered) | set(_children(directory))
    slugs.update(
        b.removeprefix(BRANCH_PREFIX) for b in branches if "/" not in b[len(BRANCH_PREFIX) :]
    )
    return [
        Worktree(
            path=directory / slug,
            branch=BRANCH_PREFIX + slug,
            slug=slug,
            base_commit=bases.get(BRANCH_PREFIX + slug),
        )
        for slug in sorted(slugs)
    ]


def spares(root: Path, directory: Path) -> list[tuple[Path, str | None]]:
    """Worktrees git knows directly under ``directory`` (the spare pool) with the commit
    each has checked out, sorted by name. Ones whose directory is gone are left out."""
    with _repo(root) as repo:
        registered = _under(directory, _entries(repo))
    return [
        (directory / name, entry.head)
        for name, entry in sorted(registered.items())
        if not entry.prunable and os.path.isdir(directory / name)
    ]


def spare_state(path: Path) -> str:
    """``clean``; ``incomplete`` when tracked files are only missing (a checkout that was
    cut short); ``changed`` when anything else differs from its commit."""
    with _repo(path) as repo:
        out = _git(repo, "status", "--porcelain", GIT_OPTIONAL_LOCKS="0")[1]
    codes = {line[:2] for line in out.splitlines() if line}
    if not codes:
        return "clean"
    return "incomplete" if codes <= {" D", "D ", "DD"} else "changed"


def find(root: Path, directory: Path, path: Path) -> Worktree | None:
    """The worktree :func:`scan` would report at ``path``, or None."""
    target = _real(path)
    return next((wt for wt in scan(root, directory) if _real(wt.path) == target), None)
