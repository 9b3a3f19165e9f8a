"""The worktree manager: one per repository, used by the daemon's supervisor.

Layout: session worktrees live in ``<root>/.rcd/worktrees/<slug>`` on branches
``rcd/<slug>``; ``.rcd/`` is listed in the repository's ``info/exclude``.

Base commits are recorded in the repository's config, as ``branch.rcd/<slug>.rcdbase``
(``git config branch.rcd/<slug>.rcdbase`` shows it). Git keeps that key with its branch:
``git branch -m`` moves it and ``git branch -D`` deletes it, so the record can neither
outlive nor lose its branch, and a later daemon run (or a person) can always tell which
commits a branch added.

Safety rules (DESIGN.md, "never lose work"), enforced by :meth:`Worktrees.release`:
a directory is removed only with ``git worktree remove`` (never ``--force``) and only when
it has no uncommitted changes, no untracked files and no commits on a detached HEAD; a
branch is deleted only once its directory is gone and ``git rev-list --count base..branch``
is 0. Nothing is ever deleted at start: :meth:`Worktrees.leftovers` only reports.

What changes git's records (registering a worktree and its branch, removing them) is
serialised by one :class:`trio.Lock` per repository (keyed by its common git directory),
shared by every manager of it in this process; the checkout of a new worktree's files runs
outside it, several at once (as many as there are cores). A collision with another process
is detected from git's refusal and retried.

(Over 400 lines on purpose: :class:`Worktrees` is the one place that may add, restore or
remove a worktree, and its steps share one lock and one undo path; split apart, the safety
rules above would be checked in several files. Reading git's state lives in
:mod:`worktrees.gitread`, spares in :mod:`worktrees.pool`.)
"""

from __future__ import annotations

import math
import os
import shutil
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import attrs
import structlog
import trio

from . import gitread
from .errors import EmptyRepository, GitFailed, WorktreeError, WorktreeTimeout
from .exclude import ensure_excluded
from .gitproc import run_git
from .models import Leftover, Released, Worktree, WorktreesStatistics, WorktreeState
from .slug import BRANCH_PREFIX, slugify, unique_slug
from .together import beside

__all__ = ["CLEANUP_TIMEOUT", "WORKTREES_DIR", "Worktrees"]

log = structlog.get_logger("worktrees")

#: Where session worktrees live, relative to the repository's top level.
WORKTREES_DIR = Path(".rcd") / "worktrees"
#: Seconds allowed for undoing a create that failed or was cancelled (runs shielded).
CLEANUP_TIMEOUT = 20.0
_ATTEMPTS = 5
#: The "previous HEAD" a post-checkout hook is given for a new worktree.
_NULL_OID = "0" * 40

_T = TypeVar("_T")
_locks: weakref.WeakValueDictionary[str, trio.Lock] = weakref.WeakValueDictionary()


def _repository_lock(common_dir: Path) -> trio.Lock:
    key = os.path.realpath(common_dir)
    lock = _locks.get(key)
    if lock is None:
        lock = _locks[key] = trio.Lock()
    return lock


def _remove_half_made(path: Path, common_dir: Path) -> None:
    """Delete what a cancelled ``git worktree add`` left: its directory and, if git did
    not get to clean it, its administrative entry (``worktrees/<id>/gitdir`` points back
    at ``<path>/.git``, see gitrepository-layout(5)). Blocking; best effort."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)
    target = os.path.realpath(path / ".git")
    admin = common_dir / "worktrees"
    for entry in admin.iterdir() if admin.is_dir() else ():
        try:
            pointer = (entry / "gitdir").read_text("utf-8").strip()
        except OSError:
            continue
        if os.path.realpath(pointer) == target:
            shutil.rmtree(entry, ignore_errors=True)


async def record_base(
    root: Path, branch: str, base: str, session_id: str | None, current: str | None
) -> None:
    """Record where ``branch`` starts (``rcdbase``), the branch the main checkout had then
    (``rcdfrom``: where its work merges back; ``current``, None on a detached HEAD: see
    :func:`gitread.current_branch`) and the session it is for (``rcdsession``).

    Shielded from cancellation: git writes its config through ``config.lock``, and a git
    stopped between taking that lock and renaming it would leave a lock that fails every
    later config write in the repository (the undo's ``--remove-section`` too). A
    cancellation takes effect once the writes are done, as this returns.
    """
    with trio.CancelScope(shield=True):
        await run_git(["config", f"branch.{branch}.rcdbase", base], cwd=root)
        if session_id is not None:
            await run_git(["config", f"branch.{branch}.rcdsession", session_id], cwd=root)
        if current is not None:
            await run_git(["config", f"branch.{branch}.rcdfrom", current], cwd=root)
    await trio.lowlevel.checkpoint_if_cancelled()


class _Collision(Exception):
    """Another process took the name between our check and git's (retry another)."""


@attrs.define(eq=False)
class Worktrees:
    """Session worktrees of the repository whose working tree is at ``root``.

    Make one with :meth:`open`. Holds no open files or processes between calls, so it
    needs no closing; several managers of one repository coordinate through a shared lock.
    """

    root: Path
    common_dir: Path
    limiter: trio.CapacityLimiter
    _lock: trio.Lock
    #: Checkouts of new worktrees at once (spares, made in the background, not counted).
    _checkouts: trio.CapacityLimiter = attrs.Factory(
        lambda: trio.CapacityLimiter(max(2, os.cpu_count() or 2))
    )
    _created: int = 0
    _released: int = 0
    _removed: int = 0
    _branches_deleted: int = 0
    _kept: int = 0

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], *, limiter: trio.CapacityLimiter | None = None
    ) -> Worktrees:
        """The manager for the repository containing ``path`` (any directory in it).

        Raises :class:`~worktrees.NotAGitRepository` when ``path`` is not in a git working
        tree (its message tells the user what to do), :class:`~worktrees.GitFailed` when
        git refuses the repository. A repository without commits opens fine; :meth:`create`
        then raises :class:`~worktrees.EmptyRepository`. ``limiter`` bounds the worker
        threads used for reads (default: a new one of 4).
        """
        limiter = limiter if limiter is not None else trio.CapacityLimiter(4)
        paths = await trio.to_thread.run_sync(gitread.locate, Path(path), limiter=limiter)
        return cls(
            root=paths.root,
            common_dir=paths.common_dir,
            limiter=limiter,
            lock=_repository_lock(paths.common_dir),
        )

    @property
    def directory(self) -> Path:
        """``<root>/.rcd/worktrees``: where the worktrees live."""
        return self.root / WORKTREES_DIR

    async def _read(self, fn: Callable[..., _T], *args: object) -> _T:
        # Reads are short and run to completion even if cancelled (the thread is not
        # abandoned), so a cancelled read never leaves a git process behind.
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    async def head(self) -> str:
        """The commit new worktrees start from (HEAD's). Raises
        :class:`~worktrees.EmptyRepository` in a repository without commits."""
        commit = await self._read(gitread.head_commit, self.root)
        if commit is None:
            raise EmptyRepository(self.root)
        return commit

    # -- create ----------------------------------------------------------------------------

    async def create(
        self, title: str | None, session_id: str, *, checkout_limit: float | None = None
    ) -> Worktree:
        """Create a worktree for a session on a new branch from the current HEAD commit.

        The slug comes from ``title`` (or ``session_id`` when the title has no usable
        characters) and is made unique against existing directories and branches
        (``-2``, ``-3``, ...). The base commit is recorded (see the module docstring).

        Two steps: under the repository's lock, git registers the worktree and its branch
        without checking anything out (milliseconds); then the files are checked out (the
        long part on a large repository) with no lock held, so creations run in parallel.
        The checkout begins as soon as the worktree is registered, while the base is
        recorded in the same turn of the lock; the ``post-checkout`` hook runs once both
        are done. ``checkout_limit`` (seconds) bounds that checkout, git's own work: time
        spent waiting for another creation's turn does not count. It then raises
        :class:`WorktreeTimeout`.

        Raises :class:`~worktrees.EmptyRepository` when HEAD has no commit,
        :class:`~worktrees.GitFailed` when git refuses (e.g. a failing ``post-checkout``
        hook), and :class:`~worktrees.WorktreeError` for file-system trouble. On any
        failure, and on cancellation, everything this call made is removed again
        (shielded, at most :data:`CLEANUP_TIMEOUT` seconds) before the exception
        propagates; the directory and branch were new and unused, so nothing of anyone's
        work is touched.
        """
        made: list[tuple[Worktree, str]] = []  # once registered (with its base): undone on failure
        registered = trio.Event()
        recorded = trio.Event()  # the post-checkout hook runs after it, as it did before

        async def register_and_record() -> None:
            async with self._lock:
                worktree, base, current = await self._register(title, session_id)
                made.append((worktree, base))
                # The files are checked out from here on, beside the base's record (its
                # `git config` processes, on the other core), which keeps this turn of the
                # lock; then the checkout goes on without it.
                registered.set()
                await record_base(self.root, worktree.branch, base, session_id, current)
            recorded.set()

        async def checkout() -> None:
            await registered.wait()
            [(worktree, base)] = made
            await self._populate(worktree.path, base, limit=checkout_limit, hook_after=recorded)

        try:
            await beside(register_and_record, checkout)
        except BaseException:
            if made:
                with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
                    async with self._lock:
                        await self._undo_add(*made[0], own_path=True, own_branch=True)
            raise
        [(worktree, _)] = made
        self._created += 1
        log.info("worktree_created", path=str(worktree.path), branch=worktree.branch)
        return worktree

    async def _register(
        self, title: str | None, session_id: str
    ) -> tuple[Worktree, str, str | None]:
        """Under the lock: a new worktree and its branch registered (files not checked out,
        base not recorded), its base commit, and the main checkout's branch (None: on a
        detached HEAD)."""
        base: str | None = None
        current: str | None = None
        taken: set[str] = set()

        async def read_head() -> None:
            # The main checkout's branch with its commit (no git process of its own): the
            # base's record names it.
            nonlocal base, current
            base, current = await self._read(gitread.head_and_branch, self.root)

        async def read_taken() -> None:
            nonlocal taken
            taken = await self._read(gitread.taken_slugs, self.root, self.directory)

        await beside(read_head, read_taken)  # two reads, two threads
        if base is None:
            raise EmptyRepository(self.root)
        await self._read(ensure_excluded, self.common_dir)
        for attempt in range(_ATTEMPTS):
            if attempt:
                await read_taken()
            slug = unique_slug(slugify(title, session_id), taken)
            worktree = Worktree(
                path=self.directory / slug,
                branch=BRANCH_PREFIX + slug,
                slug=slug,
                base_commit=base,
            )
            try:
                await self._add(worktree, base, session_id, current, record=False)
            except _Collision:
                continue
            return worktree, base, current
        raise WorktreeError(f"no free worktree name for {slug!r} after {_ATTEMPTS} attempts")

    async def _populate(
        self,
        path: Path,
        base: str,
        *,
        limit: float | None,
        background: bool = False,
        hook_after: trio.Event | None = None,
    ) -> None:
        """Check out the files of a worktree registered with ``--no-checkout``, then run
        the ``post-checkout`` hook as ``git worktree add`` would have (once ``hook_after``
        is set, if given)."""
        if background:
            await self._checkout(path, base, background=True)
            return
        # At most as many checkouts at once as there are cores: more only share them, and
        # each would take longer. The time limit starts with this checkout's turn.
        async with self._checkouts:
            with trio.move_on_after(math.inf if limit is None else limit) as window:
                await self._checkout(path, base, background=False, hook_after=hook_after)
        if window.cancelled_caught:
            raise WorktreeTimeout(path, limit or 0)

    async def _checkout(
        self, path: Path, base: str, *, background: bool, hook_after: trio.Event | None = None
    ) -> None:
        # read-tree writes the index and the files, and no ref: a checkout cut short
        # leaves no ref lock behind to stop the undo from deleting the branch.
        await run_git(["read-tree", "--reset", "-u", "HEAD"], cwd=path, background=background)
        if background:
            # A spare: right after read-tree the index does not yet vouch for the files it
            # wrote, and every `git status` (the agent's, and rcd's own when the session
            # ends) would read them again, about 4 times slower on a 20,000-file tree, until
            # one refresh records them. Done here, ahead of need; a worktree made while its
            # session waits skips it (there the wait counts more, and any `git status` run
            # with its locks refreshes the index too).
            await run_git(
                ["update-index", "-q", "--refresh"], cwd=path, background=True, check=False
            )
        if hook_after is not None:
            await hook_after.wait()
        await run_git(
            ["hook", "run", "--ignore-missing", "post-checkout", "--", _NULL_OID, base, "1"],
            cwd=path,
            background=background,
        )

    async def restore(self, path: str | os.PathLike[str]) -> Worktree:
        """Bring back the worktree at ``path`` for a resumed session after it was removed
        (a clean worktree goes when its session ends; one whose only work is commits may
        lose its directory while its branch is kept).

        On its branch if that still exists, commits and all; otherwise on a new branch of
        the same name from the current HEAD commit. ``path`` must be a worktree directory
        rcd made (``.rcd/worktrees/<slug>``) that no longer exists: an existing directory
        is never touched. Raises :class:`~worktrees.WorktreeError` otherwise,
        :class:`~worktrees.EmptyRepository` or :class:`~worktrees.GitFailed` as
        :meth:`create` does.
        """
        path = Path(path)
        if path.parent != self.directory or not path.name:
            raise WorktreeError(f"{path} is not a worktree rcd made in {self.directory}")
        slug = path.name
        name = BRANCH_PREFIX + slug
        async with self._lock:
            if await trio.Path(path).exists():
                raise WorktreeError(f"{path} exists; rcd restores only a removed worktree")
            await self._read(ensure_excluded, self.common_dir)
            # A registration left by a directory deleted by hand would block the add.
            await run_git(["worktree", "prune"], cwd=self.root, check=False)
            tip, recorded = await self._read(gitread.branch, self.root, name)
            if tip is None:
                base, current = await self._read(gitread.head_and_branch, self.root)
                if base is None:
                    raise EmptyRepository(self.root)
                worktree = Worktree(path=path, branch=name, slug=slug, base_commit=base)
                try:
                    await self._add(worktree, base, None, current)
                except _Collision:
                    raise WorktreeError(
                        f"{path} or branch {name} appeared while it was being restored"
                    ) from None
            else:
                worktree = Worktree(path=path, branch=name, slug=slug, base_commit=recorded)
                try:
                    await trio.Path(self.directory).mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise WorktreeError(f"could not create {self.directory}: {exc}") from exc
                await run_git(["worktree", "add", "--quiet", str(path), name], cwd=self.root)
            self._created += 1
            log.info("worktree_restored", path=str(path), branch=name, new_branch=tip is None)
            return worktree

    async def _add(
        self,
        worktree: Worktree,
        base: str,
        session_id: str | None,
        current: str | None,
        *,
        record: bool = True,
    ) -> None:
        # Under the lock, the slug is free: the directory and the branch this call makes
        # are its own, so undoing them on failure cannot touch anything else.
        own_path = own_branch = True
        try:
            try:
                await trio.Path(self.directory).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise WorktreeError(f"could not create {self.directory}: {exc}") from exc
            result = await run_git(
                [
                    "worktree",
                    "add",
                    "--quiet",
                    "--no-checkout",
                    "-b",
                    worktree.branch,
                    str(worktree.path),
                    base,
                ],
                cwd=self.root,
                check=False,
            )
            if not result.ok:
                if "already exists" in result.stderr:
                    # Another process won a race: git checks the branch before making it,
                    # and the path only after making the branch.
                    own_branch = "a branch named" not in result.stderr
                    own_path = False
                    raise _Collision
                raise result.error()
            # Recorded after the branch exists: if this process dies in between, the branch
            # merely has no recorded base and is then never deleted (the safe side).
            if record:
                await record_base(self.root, worktree.branch, base, session_id, current)
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
                await self._undo_add(worktree, base, own_path=own_path, own_branch=own_branch)
            raise

    async def _undo_add(
        self, worktree: Worktree, base: str, *, own_path: bool, own_branch: bool
    ) -> None:
        # Runs while another exception (often Cancelled) propagates: never raise over it.
        try:
            await self._undo_steps(worktree, base, own_path=own_path, own_branch=own_branch)
        except Exception:
            log.exception("worktree_undo_failed", path=str(worktree.path), branch=worktree.branch)
        else:
            log.info("worktree_create_undone", path=str(worktree.path), branch=worktree.branch)

    async def _undo_steps(
        self, worktree: Worktree, base: str, *, own_path: bool, own_branch: bool
    ) -> None:
        if own_path:
            # --force twice: the worktree may still carry git's "initializing" lock.
            await run_git(
                ["worktree", "remove", "--force", "--force", str(worktree.path)],
                cwd=self.root,
                check=False,
            )
            await self._read(_remove_half_made, worktree.path, self.common_dir)
        if own_branch:
            # update-ref with the old value deletes the branch only if it is still at base.
            ref = "refs/heads/" + worktree.branch
            await run_git(["update-ref", "-d", ref, base], cwd=self.root, check=False)
            await run_git(
                ["config", "--remove-section", f"branch.{worktree.branch}"],
                cwd=self.root,
                check=False,
            )

    # -- inspect, release ------------------------------------------------------------------

    async def inspect(self, worktree: Worktree) -> WorktreeState:
        """What ``worktree`` holds right now (see :class:`~worktrees.WorktreeState`).

        Read-only. Raises :class:`~worktrees.GitFailed` or
        :class:`~worktrees.NotAGitRepository` when git cannot read it. Cancellation takes
        effect once the current git read has finished (reads are short).
        """
        return await self._read(gitread.read_state, self.root, self.common_dir, worktree)

    async def release(self, worktree: Worktree) -> Released:
        """Remove what a finished session leaves, unless that could lose work.

        The directory goes (``git worktree remove``, never forced) only when it has no
        uncommitted changes, no untracked files and no commits on a detached HEAD; the
        branch goes (``git branch -D``) only after that and only when it has no commits
        beyond its recorded base. Everything kept is explained in ``kept_reasons``.
        Ignored files (build output, caches) do not count as work: they go with the
        directory, as with ``git worktree remove``.

        Never raises :class:`~worktrees.WorktreeError`: a worktree git cannot read, or
        a removal git refuses, is kept and the reason reported. Cancellation stops the
        running git; a clean worktree whose removal was cut short may then be left
        partly deleted (all its content is in its commit) and is reported as kept by
        later calls, never removed by force.
        """
        # Read without the lock (reads take no lock of git's either): the session is over,
        # nobody writes there, and other sessions' creations need not wait for it.
        try:
            state = await self.inspect(worktree)
        except WorktreeError as exc:
            return self._count_release(
                worktree,
                Released(
                    removed=False,
                    branch_deleted=False,
                    kept_reasons=(f"git could not inspect it ({exc})",),
                ),
            )
        async with self._lock:
            reasons = list(state.directory_reasons)
            removed = not state.exists and not state.registered
            if not reasons and state.registered:
                refusal = await self._try_git("worktree", "remove", str(worktree.path))
                if refusal is None:
                    removed = True
                    self._removed += 1
                else:
                    reasons.append(f"git would not remove it ({refusal})")
            reasons.extend(state.branch_reasons)
            branch_deleted = not state.branch_exists
            if state.branch_exists and removed and not state.branch_reasons:
                refusal = await self._try_git("branch", "-D", worktree.branch)
                if refusal is None:
                    branch_deleted = True
                    self._branches_deleted += 1
                else:
                    reasons.append(f"git would not delete the branch ({refusal})")
            released = Released(
                removed=removed, branch_deleted=branch_deleted, kept_reasons=tuple(reasons)
            )
            return self._count_release(worktree, released)

    async def _try_git(self, *args: str) -> str | None:
        """Run a git mutation; None when it worked, else git's reason in one line."""
        try:
            await run_git(args, cwd=self.root)
        except GitFailed as exc:
            return exc.summary or f"exit status {exc.returncode}"
        return None

    def _count_release(self, worktree: Worktree, released: Released) -> Released:
        self._released += 1
        if released.kept:
            self._kept += 1
            log.warning(
                "worktree_kept",
                path=str(worktree.path),
                branch=worktree.branch,
                directory_kept=not released.removed,
                branch_kept=not released.branch_deleted,
                reasons=list(released.kept_reasons),
            )
        else:
            log.info("worktree_released", path=str(worktree.path), branch=worktree.branch)
        return released

    # -- what an earlier run left -----------------------------------------------------------

    async def leftovers(self) -> list[Leftover]:
        """Worktrees found in ``.rcd/worktrees`` (registered with git or plain directories)
        and ``rcd/*`` branches whose directory is gone, each with its state, sorted by
        slug. For the daemon to report at start; it deletes nothing. Raises
        :class:`~worktrees.GitFailed` when git cannot read the repository."""
        found = await self._read(gitread.scan, self.root, self.directory)
        return [Leftover(worktree=wt, state=await self.inspect(wt)) for wt in found]

    async def find(self, path: str | os.PathLike[str]) -> Worktree | None:
        """The worktree at ``path`` (e.g. a resumed session's cwd), rebuilt with its
        recorded base commit; None when ``path`` is not one of ours."""
        return await self._read(gitread.find, self.root, self.directory, Path(path))

    def statistics(self) -> WorktreesStatistics:
        lock = self._lock.statistics()
        return WorktreesStatistics(
            root=self.root,
            created=self._created,
            released=self._released,
            removed=self._removed,
            branches_deleted=self._branches_deleted,
            kept=self._kept,
            busy=lock.locked,
            waiting=lock.tasks_waiting,
        )
