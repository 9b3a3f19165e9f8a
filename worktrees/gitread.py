"""Reading a repository's state with GitPython. Every function here BLOCKS.

Call them through ``trio.to_thread.run_sync(..., limiter=...)`` (the manager does). Each
opens its own :class:`git.Repo` and closes it before returning: GitPython leaks file
handles and persistent ``cat-file`` processes in long-lived programs otherwise. Nothing
here changes the repository; status runs with ``GIT_OPTIONAL_LOCKS=0`` so that reading a
worktree never takes its index lock away from the agent working in it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import attrs
import git

from .errors import GitFailed, NotAGitRepository
from .gitproc import git_env
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


def head_and_branch(root: Path) -> tuple[str | None, str | None]:
    """:func:`head_commit`, and :func:`current_branch`."""
    with _repo(root) as repo:
        return _commit(repo, "HEAD"), _current_branch(repo)


def current_branch(root: Path) -> str | None:
    """The branch checked out at ``root`` (``git symbolic-ref --short HEAD``, read from
    HEAD's file: no git process), or None on a detached HEAD."""
    with _repo(root) as repo:
        return _current_branch(repo)


def _current_branch(repo: git.Repo) -> str | None:
    try:
        name: str = repo.head.reference.name
    except TypeError:  # GitPython's word for a detached HEAD
        return None
    return name


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


def read_state(root: Path, common_dir: Path, worktree: Worktree) -> WorktreeState:
    """The state of ``worktree`` right now. Raises :class:`GitFailed` or
    :class:`NotAGitRepository` when git cannot read it (e.g. a corrupt worktree).

    Cheap, because a stop reads every session's worktree at once: a worktree that is on its
    own branch at its base costs one ``git status``, run directly (no GitPython), with the
    link to the repository checked by reading two small files rather than by listing every
    worktree the repository has.
    """
    path = str(worktree.path)
    exists = os.path.lexists(path)
    if exists:
        registered = _linked(worktree.path, common_dir)
    else:
        # Gone from disk: git may still list it (prunable), which keeps its entry and branch.
        real_path = _real(path)
        with _repo(root) as repo:
            registered = any(_real(e.path) == real_path for e in _entries(repo))
    uncommitted = untracked = False
    detached = 0
    head = on_branch = None
    if exists and registered:
        out = _run(worktree.path, "status", "--porcelain=v2", "--branch", "-z")
        head, on_branch, codes = _parse_status_v2(out)
        untracked = "?" in codes
        uncommitted = bool(codes - {"?"})
        if on_branch is None and head is not None:
            detached = int(
                _run(
                    worktree.path,
                    "rev-list",
                    "--count",
                    head,
                    "--not",
                    "--branches",
                    "--tags",
                    "--remotes",
                ).strip()
            )
    tip = head if on_branch == worktree.branch else _rev(root, "refs/heads/" + worktree.branch)
    ahead: int | None
    base = worktree.base_commit
    if tip is not None and tip != base:
        # A merge from the phone moves the recorded base to what it landed.
        landed = _run(root, "config", "--get", f"branch.{worktree.branch}.{_BASE_KEY}", ok=(0, 1))
        base = landed.strip() or base
    if tip is None or tip == base:
        ahead = 0
    elif base is None:
        ahead = None
    else:
        ahead = int(_run(root, "rev-list", "--count", f"{base}..{tip}").strip())
    return WorktreeState(
        exists=exists,
        registered=registered,
        uncommitted=uncommitted,
        untracked=untracked if registered or not exists else _has_content(worktree.path),
        commits_ahead=ahead,
        detached_commits=detached,
        head=head,
        branch_exists=tip is not None,
    )


def _run(cwd: Path, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    """``git <args>`` in ``cwd``, reading only (no optional locks); its stdout."""
    argv = ("git", *args)
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=_read_env(),
            capture_output=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except OSError as exc:
        raise GitFailed(argv, 127, f"could not run git in {cwd}: {exc}") from exc
    if done.returncode not in ok:
        raise GitFailed(argv, done.returncode, done.stderr.decode("utf-8", "replace"))
    return done.stdout.decode("utf-8", "surrogateescape")


def _read_env() -> dict[str, str]:
    # Reading a worktree must never take its index lock away from the agent working in it.
    return {**git_env(), "GIT_OPTIONAL_LOCKS": "0"}


def _rev(cwd: Path, ref: str) -> str | None:
    out = _run(cwd, "rev-parse", "--verify", "--quiet", ref + "^{commit}", ok=(0, 1))
    return out.strip() or None


def _linked(path: Path, common_dir: Path) -> bool:
    """Whether ``path`` is one of ``common_dir``'s worktrees with its link intact both ways:
    its ``.git`` file names an entry in ``common_dir/worktrees`` whose ``gitdir`` file
    names it back (what ``git worktree list`` checks before calling one prunable)."""
    dot_git = os.path.join(path, ".git")
    try:
        with open(dot_git, encoding="utf-8") as f:
            first = f.readline().strip()
    except (OSError, UnicodeDecodeError):
        return False
    if not first.startswith("gitdir:"):
        return False
    admin = first.removeprefix("gitdir:").strip()
    if not os.path.isabs(admin):
        admin = os.path.join(path, admin)
    if _real(os.path.dirname(admin)) != _real(os.path.join(common_dir, "worktrees")):
        return False
    try:
        with open(os.path.join(admin, "gitdir"), encoding="utf-8") as f:
            back = f.readline().strip()
    except (OSError, UnicodeDecodeError):
        return False
    if not os.path.isabs(back):
        back = os.path.join(admin, back)
    return _real(back) == _real(dot_git)


def _parse_status_v2(out: str) -> tuple[str | None, str | None, set[str]]:
    """(HEAD's commit, the branch checked out or None when detached, the kinds of entries:
    ``1``/``2``/``u`` changed tracked files, ``?`` untracked) from ``git status
    --porcelain=v2 --branch -z``."""
    head = branch = None
    kinds: set[str] = set()
    fields = iter(out.split("\0"))
    for field in fields:
        if not field:
            continue
        if field.startswith("# branch.oid "):
            oid = field.removeprefix("# branch.oid ")
            head = None if oid == "(initial)" else oid
        elif field.startswith("# branch.head "):
            name = field.removeprefix("# branch.head ")
            branch = None if name == "(detached)" else name
        elif field.startswith("#"):
            continue
        else:
            kinds.add(field[0])
            if field[0] == "2":
                next(fields, None)  # a rename's original path
    return head, branch, kinds


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
