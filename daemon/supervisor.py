"""The supervisor: applies directives from the downlink, enforces capacity, runs sessions.

It is the only place that creates or finds a :class:`~spawn.SessionRuntime`. Directives
are applied in downlink order and exactly once (by their downlink sequence number); a start
for a session that already exists is ignored (work is idempotent by session id).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Protocol

import attrs
import structlog
import trio

import wire
from spawn import AgentAdapter, Kept, SessionRuntime, SessionSnapshot, Workspace, WorkspaceError
from worktrees import (
    NOT_A_WORKTREE,
    Leftover,
    PoolStatistics,
    SparePool,
    Worktree,
    WorktreeError,
    Worktrees,
)

from .agent_env import agent_environment

__all__ = ["EventPublisher", "KeptWorktree", "Supervisor", "SupervisorStats"]

log = structlog.get_logger("daemon.supervisor")


class EventPublisher(Protocol):
    """Where session events go (the uplink); must not block."""

    def publish(self, session_id: str, event: wire.Event) -> None: ...


@attrs.frozen(kw_only=True)
class KeptWorktree:
    path: str
    branch: str | None
    reasons: tuple[str, ...]


@attrs.frozen(kw_only=True)
class SupervisorStats:
    capacity: int
    spawn: wire.Spawn
    active: int
    applied_through: int
    sessions: tuple[SessionSnapshot, ...]
    kept_worktrees: tuple[KeptWorktree, ...]
    #: Spare worktrees (None until the pool runs: same-dir, or not a repository).
    spares: PoolStatistics | None = None
    #: Clean worktrees of sessions ended by a stop, left for the next start to recycle.
    recycles_waiting: int = 0


@attrs.define(eq=False)
class Supervisor:
    adapter: AgentAdapter
    directory: Path
    spawn: wire.Spawn
    capacity: int
    uplink: EventPublisher
    #: The agents' environment (see :mod:`daemon.agent_env`: rcd's own variables withheld).
    env: dict[str, str] = attrs.Factory(lambda: agent_environment(os.environ))
    stop_grace: float = 3.0
    clock: Callable[[], float] = time.time
    #: Downlink sequence number of the last directive applied.
    applied_through: int = 0
    sessions: dict[str, SessionRuntime] = attrs.Factory(dict)
    _ended: set[str] = attrs.Factory(set)
    worktree_timeout: float = 60.0
    #: Worktrees (or their branches) kept because they hold work, for `rcd status`.
    kept_worktrees: list[KeptWorktree] = attrs.Factory(list)
    _nursery: trio.Nursery | None = None
    _accepting: bool = True
    _worktrees: Worktrees | None = None
    _worktrees_lock: trio.Lock = attrs.Factory(trio.Lock)
    _worktree_of: dict[str, Worktree] = attrs.Factory(dict)
    #: How many spare worktrees to keep checked out ahead of need (see SparePool).
    spares: int = 0
    _pool: SparePool | None = None
    _pool_scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    #: While stopping, clean worktrees are only inspected (their sessions report the
    #: truth at once); the next start recycles them (see :meth:`report_leftovers`).
    _stopping: bool = False
    #: Clean worktrees left in place by sessions ended while stopping.
    _left_to_next_start: int = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the sessions' nursery until cancelled (use :meth:`stop_all` first to be kind)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._keep_spares)
            task_status.started()
            await trio.sleep_forever()

    async def _spare_pool(self) -> SparePool | None:
        """The repository's spare pool (None outside a repository). It holds spares only
        for a daemon started with ``--spawn worktree``; any daemon recycles into it."""
        if self._pool is None:
            try:
                manager = await self.worktrees()
            except WorktreeError:
                return None
            if self._pool is None:
                size = self.spares if self.spawn == "worktree" else 0
                self._pool = SparePool(manager=manager, size=size)
        return self._pool

    async def _keep_spares(self) -> None:
        pool = await self._spare_pool()
        if pool is not None:
            with self._pool_scope:
                await pool.run()

    # -- directives ----------------------------------------------------------------------

    def apply(self, dseq: int, directive: wire.Directive) -> None:
        """Apply one directive; ones at or below :attr:`applied_through` are duplicates."""
        if dseq <= self.applied_through:
            return
        self.applied_through = dseq
        if isinstance(directive, wire.StartSession):
            self._start(directive)
        elif isinstance(directive, wire.ResumeSession):
            self._resume(directive)
        else:
            runtime = self.sessions.get(directive.session_id)
            if runtime is None:
                log.info(
                    "directive_for_unknown_session",
                    type=directive.type,
                    session_id=directive.session_id,
                )
                return
            runtime.deliver(directive)

    def mark_ended(self, session_ids: Iterable[str]) -> None:
        """Sessions that are over (e.g. left by an earlier run): a start for one is ignored."""
        self._ended.update(session_ids)

    async def end_orphans(
        self,
        orphans: Iterable[wire.OpenSession],
        last_seqs: dict[str, int],
        *,
        reason: str,
        already_ended: Callable[[str], bool],
    ) -> None:
        """End sessions an earlier run left open (``last_seqs``: the highest seq already
        buffered for each, from its spool), each with a truthful account of its worktree.
        Those whose ``session_ended`` is already buffered (``already_ended``) are skipped."""
        for orphan in orphans:
            if already_ended(orphan.session_id):
                continue
            reasons = await self._orphan_kept(orphan)
            last = max(orphan.last_seq, last_seqs.get(orphan.session_id, 0))
            self.uplink.publish(
                orphan.session_id,
                wire.make_event(
                    last + 1,
                    self.clock(),
                    wire.SessionEnded(
                        reason=reason,
                        worktree_kept=bool(reasons),
                        branch=orphan.branch,
                        kept_reasons=list(reasons),
                    ),
                ),
            )

    async def _orphan_kept(self, orphan: wire.OpenSession) -> tuple[str, ...]:
        if orphan.cwd is None or orphan.branch is None:
            return ()
        try:
            manager = await self.worktrees()
            worktree = await manager.find(orphan.cwd)
            if worktree is None:
                return ()
            state = await manager.inspect(worktree)
        except WorktreeError as exc:
            return (f"git could not inspect it ({exc})",)
        # A clean directory is recycled at start (report_leftovers); work stays.
        return state.kept_reasons

    def active(self) -> int:
        return sum(1 for r in self.sessions.values() if not r.ended.is_set())

    def _refuse(self, session_id: str, seq: int, code: str, message: str) -> None:
        # The session exists at the relay: end it there with a reason instead of leaving
        # it queued forever.
        now = self.clock()
        self.uplink.publish(
            session_id, wire.make_event(seq + 1, now, wire.Error(code=code, message=message))
        )
        self.uplink.publish(
            session_id,
            wire.make_event(
                seq + 2, now, wire.SessionEnded(reason=code, worktree_kept=False, branch=None)
            ),
        )
        self._ended.add(session_id)

    def _admit(self, session_id: str, seq: int) -> bool:
        if session_id in self.sessions or session_id in self._ended:
            return False
        if not self._accepting:
            self._refuse(session_id, seq, "daemon_stopping", "the daemon is shutting down")
            return False
        if self.active() >= self.capacity:
            self._refuse(
                session_id,
                seq,
                "at_capacity",
                f"this environment is at capacity: "
                f"{self.active()} of {self.capacity} sessions running",
            )
            return False
        return True

    def _start(self, d: wire.StartSession) -> None:
        if not self._admit(d.session_id, 0):
            return
        spawn = d.spawn or self.spawn
        prompt = None
        if d.prompt:
            prompt = wire.SendMessage(
                session_id=d.session_id,
                input_id=d.prompt_input_id or f"{d.session_id}-prompt",
                text=d.prompt,
                origin=d.origin,
            )
        self._launch(
            d.session_id, d.title, spawn, resume=None, prompt=prompt, seq=0, cwd=None, branch=None
        )

    def _resume(self, d: wire.ResumeSession) -> None:
        self._ended.discard(d.session_id)
        if not self._admit(d.session_id, d.last_seq):
            return
        self._launch(
            d.session_id,
            None,
            d.spawn,
            resume=d.agent_session_id,
            prompt=None,
            seq=d.last_seq,
            cwd=d.cwd,
            branch=d.branch,
        )

    def _launch(
        self,
        session_id: str,
        title: str | None,
        spawn: wire.Spawn,
        *,
        resume: str | None,
        prompt: wire.SendMessage | None,
        seq: int,
        cwd: str | None,
        branch: str | None,
    ) -> None:
        assert self._nursery is not None, "Supervisor.run() is not running"

        async def prepare() -> Workspace:
            if cwd is not None:
                if await trio.Path(cwd).is_dir():
                    return Workspace(cwd=cwd, spawn=spawn, branch=branch)
                if spawn == "worktree":
                    return await self._restore_worktree(session_id, cwd)
                raise WorkspaceError(f"the session's directory {cwd} no longer exists")
            if spawn == "worktree":
                return await self._create_worktree(session_id, title)
            return Workspace(cwd=str(self.directory), spawn="same-dir")

        async def release(workspace: Workspace) -> Kept:
            return await self._release_worktree(session_id, workspace)

        runtime = SessionRuntime(
            session_id=session_id,
            adapter=self.adapter,
            publish=lambda event: self.uplink.publish(session_id, event),
            prepare=prepare,
            release=release,
            env=self.env,
            title=title,
            resume=resume,
            stop_grace=self.stop_grace,
            seq=seq,
            clock=self.clock,
        )
        self.sessions[session_id] = runtime
        # Delivered now, not when the task first runs: a message applied right after this
        # start directive must queue behind the prompt.
        if prompt is not None:
            runtime.deliver(prompt)
        self._nursery.start_soon(self._run_session, runtime)

    async def _run_session(self, runtime: SessionRuntime) -> None:
        try:
            await runtime.run()
        finally:
            self.sessions.pop(runtime.session_id, None)
            self._ended.add(runtime.session_id)

    # -- worktrees -------------------------------------------------------------------------

    async def worktrees(self) -> Worktrees:
        """The repository's worktree manager (opened on first use; raises WorktreeError)."""
        async with self._worktrees_lock:
            if self._worktrees is None:
                self._worktrees = await Worktrees.open(self.directory)
            return self._worktrees

    async def report_leftovers(self) -> None:
        """Find worktrees an earlier run left under ``.rcd/worktrees`` and report them (log,
        `rcd status`). Never deletes anything. Silent when the directory is not a repository."""
        try:
            manager = await self.worktrees()
            leftovers = await manager.leftovers()
        except WorktreeError:
            return
        clean = [
            left
            for left in leftovers
            if left.state.exists and left.state.registered and not left.state.directory_reasons
        ]
        if clean and self._nursery is not None:
            # Left by a stop (or a crash) with nothing uncommitted in them: they become
            # spares again (a branch with commits stays, as at any release).
            self._nursery.start_soon(self._reclaim, clean)
        for leftover in leftovers:
            if not leftover.state.kept_reasons:
                continue
            log.warning("worktree_left_by_earlier_run", summary=leftover.summary)
            self.kept_worktrees.append(
                KeptWorktree(
                    path=str(leftover.worktree.path),
                    branch=leftover.worktree.branch,
                    reasons=leftover.state.kept_reasons or ("left by an earlier run",),
                )
            )

    async def _reclaim(self, leftovers: list[Leftover]) -> None:
        pool = await self._spare_pool()
        if pool is None:
            return
        recycled = 0
        for left in leftovers:
            state = left.state
            delete_branch = state.branch_exists and not state.branch_reasons
            recycled += await pool.recycle(left.worktree, delete_branch=delete_branch)
        log.info("clean_worktrees_reclaimed", recycled=recycled, found=len(leftovers))

    async def _restore_worktree(self, session_id: str, cwd: str) -> Workspace:
        """A resumed session's worktree, removed when the session ended: made again at the
        same path (the agent finds its conversation by directory), on its kept branch or a
        new one from HEAD."""
        return await self._worktree_workspace(
            session_id,
            lambda manager: manager.restore(cwd),
            doing=f"restoring the worktree {cwd}",
            failed=f"could not restore the session's worktree {cwd}: ",
        )

    async def _create_worktree(self, session_id: str, title: str | None) -> Workspace:
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
            manager = await self.worktrees()
            worktree = await make(manager)
        except WorktreeError as exc:
            raise WorkspaceError(failed + str(exc)) from exc
        self._worktree_of[session_id] = worktree
        return Workspace(cwd=str(worktree.path), spawn="worktree", branch=worktree.branch)

    async def _release_worktree(self, session_id: str, workspace: Workspace) -> Kept:
        if workspace.spawn != "worktree":
            return Kept(kept=False)
        try:
            return await self._release(session_id, workspace)
        except WorktreeError as exc:
            # Git failed (a removed .git/worktrees entry, a locked index, ...): the
            # session reports it and ends; nothing was removed.
            raise WorkspaceError(f"could not release the worktree {workspace.cwd}: {exc}") from exc

    async def _release(self, session_id: str, workspace: Workspace) -> Kept:
        manager = await self.worktrees()
        worktree = self._worktree_of.pop(session_id, None) or await manager.find(workspace.cwd)
        if worktree is None:
            return Kept(kept=True, reasons=("not a worktree rcd knows",))
        state = await manager.inspect(worktree)
        if state.exists and not state.registered:
            raise WorkspaceError(_broken_link(workspace.cwd))
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
        self.kept_worktrees.append(
            KeptWorktree(path=str(worktree.path), branch=worktree.branch, reasons=reasons)
        )
        log.info("worktree_kept", path=str(worktree.path), reasons=reasons)

    @property
    def recycles_left(self) -> int:
        return self._left_to_next_start

    # -- teardown --------------------------------------------------------------------------

    def set_spawn(self, spawn: wire.Spawn) -> None:
        """Change where new sessions run (sessions already running stay where they are)."""
        self.spawn = spawn
        log.info("spawn_mode", spawn=spawn)

    def stop_accepting(self) -> None:
        """No new sessions from now on; spares are no longer made (one being made is left
        half-made, and completed by the next start)."""
        self._accepting = False
        self._stopping = True
        self._pool_scope.cancel()

    async def stop_all(self, reason: str = "daemon_stopped") -> None:
        """Stop every session at once and wait until all have ended.

        The caller owns the deadline; on cancellation, :meth:`kill_all` finishes the job.
        """
        self.stop_accepting()
        runtimes = list(self.sessions.values())
        for runtime in runtimes:
            runtime.request_stop(reason)
        for runtime in runtimes:
            await runtime.ended.wait()

    async def wait_all_ended(self) -> None:
        """Wait until every session has ended (the caller owns the deadline)."""
        for runtime in list(self.sessions.values()):
            await runtime.ended.wait()

    def kill_all(self) -> None:
        """Force every session down now (their agents are still reaped)."""
        for runtime in list(self.sessions.values()):
            runtime.cancel()

    def statistics(self) -> SupervisorStats:
        return SupervisorStats(
            capacity=self.capacity,
            spawn=self.spawn,
            active=self.active(),
            applied_through=self.applied_through,
            sessions=tuple(r.snapshot() for r in self.sessions.values()),
            kept_worktrees=tuple(self.kept_worktrees),
            spares=self._pool.statistics() if self._pool is not None else None,
            recycles_waiting=self.recycles_left,
        )


def _broken_link(cwd: str) -> str:
    return (
        f"git no longer knows {cwd} as a worktree (was its .git/worktrees entry removed?);"
        " it is kept as it is: 'git worktree repair' may link it again"
    )
