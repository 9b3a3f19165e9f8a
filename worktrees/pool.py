"""Spare worktrees, checked out ahead of need, so a worktree session starts at once.

On a large repository the checkout is what a new worktree costs (20,000 files take
seconds of system time, more while agents compete for the CPU). A :class:`SparePool` keeps
up to ``size`` *spares* in ``<root>/.rcd/pool/<id>``: worktrees on a detached HEAD at the
current HEAD commit, made one at a time at the lowest CPU priority. A new session takes
one: under the repository's lock, it gets its ``rcd/<slug>`` branch at the spare's commit
and moves to ``.rcd/worktrees/<slug>`` (a rename; nothing is checked out again). A spare
behind HEAD is first brought up to it (only the files that differ are written).

Spares have no branch and hold nothing of anyone's: they are never reported as leftovers,
and they survive restarts (the next start adopts the clean ones). A spare someone wrote in
is left where it is, with a warning, and never used or removed.

The pool never takes more than :data:`DISK_SHARE` of the free disk space: after the first
spare is made its size is measured and the pool shrinks to fit.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import attrs
import structlog
import trio

from . import gitread
from .errors import WorktreeError
from .exclude import ensure_excluded
from .gitproc import run_git
from .manager import Worktrees, _remove_half_made, record_base
from .models import Worktree
from .slug import BRANCH_PREFIX, slugify, unique_slug

__all__ = ["DISK_SHARE", "POOL_DIR", "PoolStatistics", "SparePool"]

log = structlog.get_logger("worktrees.pool")

#: Where spares live, relative to the repository's top level.
POOL_DIR = Path(".rcd") / "pool"
#: The share of the free disk space the spares may take at most.
DISK_SHARE = 0.25
#: Seconds between attempts to make a spare after one failed.
RETRY_AFTER = 30.0


@attrs.frozen(kw_only=True)
class Spare:
    path: Path
    commit: str


@attrs.frozen(kw_only=True)
class PoolStatistics:
    """For ``rcd status``: spares ready, the pool's size, and whether one is being made."""

    ready: int
    size: int
    filling: bool
    taken: int


def _remove_files(path: Path) -> None:
    """Delete a spare's files, keeping its ``.git`` link until the end (blocking)."""
    for child in path.iterdir() if path.is_dir() else ():
        if child.name == ".git":
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _disk_usage(path: Path) -> int:
    """Bytes a directory tree takes on disk (blocking)."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total


@attrs.define(eq=False)
class SparePool:
    """Keeps up to ``size`` spares of ``manager``'s repository; see the module docstring.

    Run it with ``await nursery.start(pool.run)``; :meth:`take` works whether or not it
    runs (without spares it returns None and the caller creates a worktree the usual way).
    """

    manager: Worktrees
    size: int
    _ready: list[Spare] = attrs.Factory(list)
    _wanted: trio.Event = attrs.Factory(trio.Event)
    _filling: bool = False
    _taken: int = 0
    _running: bool = False
    #: Set (and replaced) whenever a spare becomes ready or the size changes.
    _changed: trio.Event = attrs.Factory(trio.Event)

    @property
    def directory(self) -> Path:
        return self.manager.root / POOL_DIR

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Adopt the clean spares an earlier run left (removing those beyond the size),
        then keep the pool full until cancelled. A spare being made when cancelled is left
        half-made: the next start completes it."""
        excess = await self._adopt()
        self._running = True
        try:
            task_status.started()
            for path in excess:
                await self._discard(path)
            await self._fill()
        finally:
            self._running = False

    async def _fill(self) -> None:
        measured = False
        while True:
            while len(self._ready) < self.size:
                self._filling = True
                try:
                    spare = await self._make()
                except WorktreeError as exc:
                    log.warning("spare_worktree_failed", error=str(exc), retry_in=RETRY_AFTER)
                    spare = None
                finally:
                    self._filling = False
                if spare is None:
                    await trio.sleep(RETRY_AFTER)
                    continue
                self._add_ready(spare)
                if not measured:
                    measured = True
                    await self._fit_disk(spare)
            self._wanted = trio.Event()
            await self._wanted.wait()

    async def _fit_disk(self, spare: Spare) -> None:
        each = await trio.to_thread.run_sync(_disk_usage, spare.path)
        free = shutil.disk_usage(self.manager.root).free
        fits = int(free * DISK_SHARE // max(each, 1)) if each else self.size
        if fits < self.size:
            log.warning(
                "spare_pool_shrunk",
                size=self.size,
                fits=fits,
                spare_mib=round(each / 2**20, 1),
                free_mib=round(free / 2**20),
            )
            self.size = max(fits, 0)
            self._notify()

    async def _adopt(self) -> list[Path]:
        """Take the clean spares found in the pool, up to the size; returns the others
        that may be removed (beyond the size)."""
        found = await self.manager._read(gitread.spares, self.manager.root, self.directory)
        excess: list[Path] = []
        for path, commit in found:
            if commit is None:
                continue
            if len(self._ready) >= self.size:
                excess.append(path)
                continue
            try:
                state = await self.manager._read(gitread.spare_state, path)
                if state == "incomplete":
                    # Its checkout was cut short (a stop): only files are missing.
                    await self.manager._populate(path, commit, limit=None, background=True)
                    state = "clean"
            except WorktreeError as exc:
                log.warning("spare_unreadable", path=str(path), error=str(exc))
                continue
            if state != "clean":
                log.warning("spare_has_changes", path=str(path), note="left as it is, never used")
                continue
            try:
                # A worktree recycled by a stop may still hold a session's ignored files.
                await run_git(["clean", "-ffdXq"], cwd=path, background=True)
            except WorktreeError as exc:
                log.warning("spare_unreadable", path=str(path), error=str(exc))
                continue
            self._add_ready(Spare(path=path, commit=commit))
        if self._ready:
            log.info("spares_adopted", count=len(self._ready))
        return excess

    async def _discard(self, path: Path) -> None:
        """Remove a spare the pool has no room for, unless someone wrote in it. The files
        go without the repository's lock (creations go on meanwhile); a removal cut short
        leaves a spare missing files, which the next start completes."""
        manager = self.manager
        try:
            if await manager._read(gitread.spare_state, path) == "changed":
                log.warning("spare_has_changes", path=str(path), note="left as it is, never used")
                return
        except WorktreeError as exc:
            log.warning("spare_not_removed", path=str(path), error=str(exc))
            return
        await trio.to_thread.run_sync(
            _remove_files, path, limiter=manager.limiter, abandon_on_cancel=True
        )
        async with manager._lock:
            await manager._read(_remove_half_made, path, manager.common_dir)
        log.info("spare_removed", path=str(path))

    async def _make(self) -> Spare:
        manager = self.manager
        path = self.directory / secrets.token_hex(4)
        async with manager._lock:
            commit = await manager._read(gitread.head_commit, manager.root)
            if commit is None:
                raise WorktreeError("the repository has no commits")
            try:
                await trio.Path(self.directory).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise WorktreeError(f"could not create {self.directory}: {exc}") from exc
            await run_git(
                ["worktree", "add", "--quiet", "--no-checkout", "--detach", str(path), commit],
                cwd=manager.root,
            )
        # Cancelled from here on, the spare is left half-made: the next start completes it
        # (a stop must not wait for git deleting what it just wrote).
        try:
            await manager._populate(path, commit, limit=None, background=True)
        except WorktreeError:
            with trio.CancelScope(shield=True), trio.move_on_after(20):
                async with manager._lock:
                    await run_git(
                        ["worktree", "remove", "--force", "--force", str(path)],
                        cwd=manager.root,
                        check=False,
                    )
            raise
        log.info("spare_worktree_ready", path=str(path), ready=len(self._ready) + 1)
        return Spare(path=path, commit=commit)

    async def take(self, title: str | None, session_id: str) -> Worktree | None:
        """A session's worktree made from a spare, or None when there is none (or it could
        not be used: it is then left for the next start to look at). Raises nothing of
        git's: any trouble means "no spare", and the caller creates a worktree itself."""
        if not self._ready:
            return None
        spare = self._ready.pop(0)
        self._wanted.set()
        manager = self.manager
        try:
            head = await manager._read(gitread.head_commit, manager.root)
            if head is None:
                return None
            if spare.commit != head:
                # Behind HEAD: only the files that differ are written.
                await run_git(["checkout", "--quiet", "--detach", head], cwd=spare.path)
            async with manager._lock:
                worktree = await self._claim(spare.path, head, title, session_id)
        except (WorktreeError, OSError) as exc:
            log.warning("spare_not_used", path=str(spare.path), error=str(exc))
            return None
        self._taken += 1
        manager._created += 1
        log.info("worktree_created", path=str(worktree.path), branch=worktree.branch, spare=True)
        return worktree

    async def _claim(self, spare: Path, base: str, title: str | None, session_id: str) -> Worktree:
        manager = self.manager
        root = manager.root
        await manager._read(ensure_excluded, manager.common_dir)
        for _ in range(5):
            taken = await manager._read(gitread.taken_slugs, root, manager.directory)
            slug = unique_slug(slugify(title, session_id), taken)
            branch = BRANCH_PREFIX + slug
            made = await run_git(["branch", "--no-track", branch, base], cwd=root, check=False)
            if not made.ok:
                if "already exists" in made.stderr:
                    continue  # another process took it
                raise made.error()
            break
        else:
            raise WorktreeError(f"no free worktree name for {slug!r}")
        path = manager.directory / slug
        try:
            await trio.Path(manager.directory).mkdir(parents=True, exist_ok=True)
            await run_git(["worktree", "move", str(spare), str(path)], cwd=root)
            await run_git(["symbolic-ref", "HEAD", "refs/heads/" + branch], cwd=path)
            current = await manager._read(gitread.current_branch, root)
            await record_base(root, branch, base, session_id, current)
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(20):
                if await trio.Path(path).exists():
                    await run_git(["update-ref", "--no-deref", "HEAD", base], cwd=path, check=False)
                    await run_git(
                        ["worktree", "move", str(path), str(spare)], cwd=root, check=False
                    )
                await run_git(
                    ["update-ref", "-d", "refs/heads/" + branch, base], cwd=root, check=False
                )
                await run_git(
                    ["config", "--remove-section", f"branch.{branch}"], cwd=root, check=False
                )
            raise
        return Worktree(path=path, branch=branch, slug=slug, base_commit=base)

    async def wait_full(self) -> None:
        """Return once the pool holds as many ready spares as its size (at once if it
        does). The pool fills in the background; this is for a caller that needs it full
        (a test, a benchmark), not for taking a spare."""
        while len(self._ready) < self.size:
            await self._changed.wait()

    def _add_ready(self, spare: Spare) -> None:
        self._ready.append(spare)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def has_room(self) -> bool:
        return len(self._ready) < self.size

    async def recycle(
        self, worktree: Worktree, *, delete_branch: bool, clean_ignored: bool = True
    ) -> bool:
        """Turn a session's worktree, found clean by the caller (:meth:`Worktrees.inspect`),
        back into a spare: its HEAD detached, its branch deleted when ``delete_branch`` (no
        commits beyond its base), the directory moved into the pool. Nothing is deleted
        from disk, so it takes milliseconds however large the repository.

        Each step runs to its end even if cancelled (a half-made step would leave a
        worktree the next start cannot tell from work). Returns False when git refused
        (the worktree is then left as it is, and :meth:`Worktrees.release` may still go).
        It becomes a ready spare if the pool has room; otherwise, while the pool runs, it
        is removed (in the background work of a start), and when the pool does not run (a
        stop) it waits for the next start, which keeps what fits and removes the rest.
        Ignored files (build output, caches, an agent's .env) go first, unless
        ``clean_ignored`` is false (a stop, in a hurry: the next start cleans them).
        """
        manager = self.manager
        path = self.directory / secrets.token_hex(4)
        with trio.CancelScope(shield=True):
            try:
                if clean_ignored:
                    await run_git(["clean", "-ffdXq"], cwd=worktree.path)
                commit = (await run_git(["rev-parse", "HEAD"], cwd=worktree.path)).stdout.strip()
                async with manager._lock:
                    await trio.Path(self.directory).mkdir(parents=True, exist_ok=True)
                    await run_git(["update-ref", "--no-deref", "HEAD", commit], cwd=worktree.path)
                    if delete_branch:
                        await run_git(["branch", "-D", worktree.branch], cwd=manager.root)
                    await run_git(
                        ["worktree", "move", str(worktree.path), str(path)], cwd=manager.root
                    )
            except (WorktreeError, OSError) as exc:
                log.warning("worktree_not_recycled", path=str(worktree.path), error=str(exc))
                return False
        manager._released += 1
        manager._removed += 1
        log.info("worktree_recycled", path=str(worktree.path), spare=str(path))
        if self.has_room() and clean_ignored:
            self._add_ready(Spare(path=path, commit=commit))
        elif self._running:
            await self._discard(path)
        return True

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(
            ready=len(self._ready), size=self.size, filling=self._filling, taken=self._taken
        )
