"""The supervisor's worktrees: a session's workspace made, restored and released, spares kept
ready, and what earlier runs left reported or recycled.

Never loses work: a worktree (or branch) that holds any is kept and listed for ``rcd status``
(DESIGN.md, "never lose work"); only a clean one is recycled into the spares or removed, by
:class:`worktrees.Worktrees` and :class:`worktrees.SparePool`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import structlog
import trio

import wire
from spawn import Kept, Workspace, WorkspaceError
from worktrees import (
    NOT_A_WORKTREE,
    Leftover,
    PoolStatistics,
    SparePool,
    Worktree,
    WorktreeError,
    Worktrees,
)

from .starts import SameDirStarts

__all__ = ["KeptWorktree", "SessionWorktrees"]

log = structlog.get_logger("daemon.supervisor")


@attrs.frozen(kw_only=True)
class KeptWorktree:
    path: str
    branch: str | None
    reasons: tuple[str, ...]


@attrs.define(eq=False, kw_only=True)
class SessionWorktrees:
    """The worktrees of one daemon's sessions, in the repository at ``directory``."""

    directory: Path
    #: The daemon's default spawn mode now (spares are kept only for ``worktree``).
    spawn: Callable[[], wire.Spawn]
    #: How many spare worktrees to keep checked out ahead of need (see SparePool).
    spares: int = 0
    worktree_timeout: float = 60.0
    #: Worktrees (or their branches) kept because they hold work, for `rcd status`.
    kept: list[KeptWorktree] = attrs.Factory(list)
    _manager: Worktrees | None = None
    _manager_lock: trio.Lock = attrs.Factory(trio.Lock)
    _worktree_of: dict[str, Worktree] = attrs.Factory(dict)
    _pool: SparePool | None = None
    _pool_scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    #: While stopping, clean worktrees are only inspected (their sessions report the
    #: truth at once); the next start recycles them (see :meth:`report_leftovers`).
    _stopping: bool = False
    #: Clean worktrees left in place by sessions ended while stopping.
    _left_to_next_start: int = 0
    #: Where same-dir sessions started (their changes are shown against it).
    starts: SameDirStarts = attrs.Factory(lambda: SameDirStarts(None))

    def stop(self) -> None:
        """Stopping: no more spares are made (one being made is left half-made, and
        completed by the next start), clean worktrees are left for the next start."""
        self._stopping = True
        self._pool_scope.cancel()

    def statistics(self) -> PoolStatistics | None:
        """The spares (None until the pool runs: same-dir, or not a repository)."""
        return self._pool.statistics() if self._pool is not None else None

    async def spare_pool(self) -> SparePool | None:
        """The repository's spare pool (None outside a repository). It holds spares only
        for a daemon started with ``--spawn worktree``; any daemon recycles into it."""
        if self._pool is None:
            try:
                manager = await self.manager()
            except WorktreeError:
                return None
            if self._pool is None:
                size = self.spares if self.spawn() == "worktree" else 0
                self._pool = SparePool(manager=manager, size=size)
        return self._pool

    async def keep_spares(self) -> None:
        """Keep the spares made (until :meth:`stop`)."""
        pool = await self.spare_pool()
        if pool is not None:
            with self._pool_scope:
                await pool.run()

    async def orphan_kept(self, orphan: wire.OpenSession) -> tuple[str, ...]:
        """Why an earlier run's session's worktree is kept (nothing: it can be recycled)."""
        if orphan.cwd is None or orphan.branch is None:
            return ()
        try:
            manager = await self.manager()
            worktree = await manager.find(orphan.cwd)
            if worktree is None:
                return ()
            state = await manager.inspect(worktree)
        except WorktreeError as exc:
            return (f"git could not inspect it ({exc})",)
        # A clean directory is recycled at start (report_leftovers); work stays.
        return state.kept_reasons

    async def manager(self) -> Worktrees:
        """The repository's worktree manager (opened on first use; raises WorktreeError)."""
        async with self._manager_lock:
            if self._manager is None:
                self._manager = await Worktrees.open(self.directory)
            return self._manager

    async def report_leftovers(self, nursery: trio.Nursery) -> None:
        """Find worktrees an earlier run left under ``.rcd/worktrees`` and report them (log,
        `rcd status`). Never deletes anything. Silent when the directory is not a repository."""
        try:
            manager = await self.manager()
            leftovers = await manager.leftovers()
        except WorktreeError:
            return
        clean = [
            left
            for left in leftovers
            if left.state.exists and left.state.registered and not left.state.directory_reasons
        ]
        if clean:
            # Left by a stop (or a crash) with nothing uncommitted in them: they become
            # spares again (a branch with commits stays, as at any release).
            nursery.start_soon(self._reclaim, clean)
        for leftover in leftovers:
            if not leftover.state.kept_reasons:
                continue
            log.warning("worktree_left_by_earlier_run", summary=leftover.summary)
            self.kept.append(
                KeptWorktree(
                    path=str(leftover.worktree.path),
                    branch=leftover.worktree.branch,
                    reasons=leftover.state.kept_reasons or ("left by an earlier run",),
                )
            )

    async def _reclaim(self, leftovers: list[Leftover]) -> None:
        pool = await self.spare_pool()
        if pool is None:
            return
        recycled = 0
        for left in leftovers:
            state = left.state
            delete_branch = state.branch_exists and not state.branch_reasons
            recycled += await pool.recycle(left.worktree, delete_branch=delete_branch)
        log.info("clean_worktrees_reclaimed", recycled=recycled, found=len(leftovers))

    async def same_dir(self, session_id: str) -> Workspace:
        """A same-dir session's workspace; the commit it starts from is recorded (once)."""
        if self.starts.get(session_id) is None:
            # Not a repository (or no commit yet): no changes to show.
            with contextlib.suppress(WorktreeError):
                self.starts.record(session_id, await (await self.manager()).head())
        return Workspace(cwd=str(self.directory), spawn="same-dir")

    def worktree_of(self, session_id: str) -> Worktree | None:
        """The worktree of a running session (None: same-dir, or not made yet)."""
        return self._worktree_of.get(session_id)

    async def refresh_kept(self) -> list[KeptWorktree]:
        """The kept worktrees, each inspected again: one that holds nothing any more (its
        work landed or was discarded) leaves the list."""
        manager = await self.manager()
        still: list[KeptWorktree] = []
        for kept in {k.path: k for k in self.kept}.values():
            worktree = await manager.find(kept.path)
            if worktree is None:
                continue
            state = await manager.inspect(worktree)
            if state.kept_reasons:
                still.append(attrs.evolve(kept, reasons=state.kept_reasons))
        self.kept = still
        return still

    async def restore(self, session_id: str, cwd: str) -> Workspace:
        """A resumed session's worktree, removed when the session ended: made again at the
        same path (the agent finds its conversation by directory), on its kept branch or a
        new one from HEAD."""
        return await self._worktree_workspace(
            session_id,
            lambda manager: manager.restore(cwd),
            doing=f"restoring the worktree {cwd}",
            failed=f"could not restore the session's worktree {cwd}: ",
        )

    async def create(self, session_id: str, title: str | None) -> Workspace:
        async def make(manager: Worktrees) -> Worktree:
            if self._pool is not None:
                spare = await self._pool.take(title, session_id)
                if spare is not None:
                    return spare
            return await manager.create(title, session_id, checkout_limit=self.worktree_timeout)

        return await self._worktree_workspace(session_id, make, doing="creating a worktree")

    async def _worktree_workspace(
        self,
        session_id: str,
        make: Callable[[Worktrees], Awaitable[Worktree]],
        *,
        doing: str,
        failed: str = "",
    ) -> Workspace:
        # The time limit is the manager's: it bounds git's work, not the wait for another
        # session's turn at the repository (creations check out in parallel).
        try:
            manager = await self.manager()
            worktree = await make(manager)
        except WorktreeError as exc:
            raise WorkspaceError(failed + str(exc)) from exc
        self._worktree_of[session_id] = worktree
        return Workspace(cwd=str(worktree.path), spawn="worktree", branch=worktree.branch)

    async def release(self, session_id: str, workspace: Workspace) -> Kept:
        if workspace.spawn != "worktree":
            return Kept(kept=False)
        try:
            return await self._release(session_id, workspace)
        except WorktreeError as exc:
            # Git failed (a removed .git/worktrees entry, a locked index, ...): the
            # session reports it and ends; nothing was removed.
            raise WorkspaceError(f"could not release the worktree {workspace.cwd}: {exc}") from exc

    async def _release(self, session_id: str, workspace: Workspace) -> Kept:
        manager = await self.manager()
        worktree = self._worktree_of.pop(session_id, None) or await manager.find(workspace.cwd)
        if worktree is None:
            return Kept(kept=True, reasons=("not a worktree rcd knows",))
        state = await manager.inspect(worktree)
        if state.exists and not state.registered:
            raise WorkspaceError(_broken_link(workspace.cwd))
        if self._stopping and state.exists and state.directory_reasons:
            # Work in the directory: a release would keep all of it (directory and branch)
            # after waiting for the repository's lock. A stop says so at once.
            self._keep(worktree, state.kept_reasons)
            return Kept(kept=True, reasons=state.kept_reasons)
        if state.exists and not state.directory_reasons:
            # A clean directory goes back to the spares (a rename, however large the
            # repository); a branch with commits stays, as at any release.
            delete_branch = state.branch_exists and not state.branch_reasons
            pool = self._pool
            recycled = False
            if self._stopping:
                # Not now: a stop must not wait for git. The next start does it (see
                # report_leftovers).
                self._left_to_next_start += 1
                recycled = True
            elif pool is not None and pool.has_room():
                recycled = await pool.recycle(worktree, delete_branch=delete_branch)
            if recycled:
                if state.branch_reasons:
                    self._keep(worktree, state.branch_reasons)
                return Kept(kept=bool(state.branch_reasons), reasons=state.branch_reasons)
        released = await manager.release(worktree)
        if NOT_A_WORKTREE in released.kept_reasons:
            raise WorkspaceError(_broken_link(workspace.cwd))
        if released.kept:
            self._keep(worktree, released.kept_reasons)
        refusals = [r for r in released.kept_reasons if r.startswith("git would not")]
        return Kept(
            kept=released.kept,
            reasons=released.kept_reasons,
            failure=(
                f"the worktree {workspace.cwd} could not be released: " + "; ".join(refusals)
                if refusals
                else None
            ),
        )

    def _keep(self, worktree: Worktree, reasons: tuple[str, ...]) -> None:
        self.kept.append(
            KeptWorktree(path=str(worktree.path), branch=worktree.branch, reasons=reasons)
        )
        log.info("worktree_kept", path=str(worktree.path), reasons=reasons)

    @property
    def recycles_left(self) -> int:
        """Clean worktrees of sessions ended while stopping, left for the next start."""
        return self._left_to_next_start


def _broken_link(cwd: str) -> str:
    return (
        f"git no longer knows {cwd} as a worktree (was its .git/worktrees entry removed?);"
        " it is kept as it is: 'git worktree repair' may link it again"
    )
