"""The supervisor: applies directives from the downlink, enforces capacity, runs sessions.

It is the only place that creates or finds a :class:`~spawn.SessionRuntime`. Directives
are applied in downlink order and exactly once (by their downlink sequence number); a start
for a session that already exists is ignored (work is idempotent by session id).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

import attrs
import structlog
import trio

import wire
from common.agent_env import agent_environment
from spawn import (
    AgentAdapter,
    AgentOptions,
    Kept,
    SessionRuntime,
    SessionSnapshot,
    Workspace,
    WorkspaceError,
    earlier_of,
)
from spawn.sandbox import SandboxPolicy, missing_tools
from worktrees import (
    PoolStatistics,
)

from .workspaces import KeptWorktree, SessionWorktrees

__all__ = ["EventPublisher", "KeptWorktree", "Supervisor", "SupervisorStats"]

log = structlog.get_logger("daemon.supervisor")


class EventPublisher(Protocol):
    """Where session events go (the uplink); must not block."""

    def publish(self, session_id: str, event: wire.Event) -> None: ...

    def publish_partial(self, session_id: str, piece: wire.AssistantPartial) -> None:
        """A piece of a reply being written (see :mod:`wire.partial`); best effort."""
        ...


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
    #: How many spare worktrees to keep checked out ahead of need (see SparePool).
    spares: int = 0
    #: How the environment's settings start agents (its sandbox a session may tighten).
    options: AgentOptions = attrs.Factory(AgentOptions)
    #: Where an :class:`wire.UpdateSettings` goes (the daemon keeps the settings).
    on_settings: Callable[[wire.UpdateSettings], None] = lambda _: None
    #: Other agents a session may ask for by name (``rcd start --allow-agent``), beside
    #: ``adapter`` (the default, under its own name too).
    adapters: dict[str, AgentAdapter] = attrs.Factory(dict)
    #: The approval grant covering a session's permission request: (session id, its
    #: directory, the request) → the grant's id, or None (see :mod:`daemon.grants`).
    approve: Callable[[str, str, wire.PermissionRequest], str | None] = (
        lambda _session, _cwd, _request: None
    )
    #: Where a :class:`wire.WorkspaceRequest` goes (a session's changes, landing them).
    on_workspace: Callable[[wire.WorkspaceRequest], None] = lambda _: None
    _nursery: trio.Nursery | None = None
    _accepting: bool = True
    worktrees: SessionWorktrees = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.worktrees = SessionWorktrees(
            directory=self.directory,
            spawn=lambda: self.spawn,
            spares=self.spares,
            worktree_timeout=self.worktree_timeout,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the sessions' nursery until cancelled (use :meth:`stop_all` first to be kind)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.worktrees.keep_spares)
            task_status.started()
            await trio.sleep_forever()

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
        elif isinstance(directive, wire.UpdateSettings):
            self.on_settings(directive)
        elif isinstance(directive, wire.WorkspaceRequest):
            self.on_workspace(directive)
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
            reasons = await self.worktrees.orphan_kept(orphan)
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

    async def report_leftovers(self) -> None:
        """Report (and recycle, when clean) the worktrees earlier runs left; see
        :meth:`SessionWorktrees.report_leftovers`."""
        assert self._nursery is not None, "Supervisor.run() is not running"
        await self.worktrees.report_leftovers(self._nursery)

    def _cannot_sandbox(self, session_id: str, seq: int, asked: bool) -> bool:
        """Refuse (and end) a session that asked for a sandbox this machine cannot give."""
        if asked and not self._sandboxed and (missing := missing_tools()):
            why = f"this machine cannot sandbox a session: {' and '.join(missing)} missing"
            self._refuse(session_id, seq, "sandbox_unavailable", why)
            return True
        return False

    @property
    def _sandbox(self) -> SandboxPolicy:
        return self.options.sandbox or SandboxPolicy()

    @property
    def _sandboxed(self) -> bool:
        return self._sandbox.enabled

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

    def _agent(self, session_id: str, seq: int, name: str | None) -> AgentAdapter | None:
        """The adapter of agent ``name`` (None: the default), or None: refused."""
        if name is None or name == self.adapter.name:
            return self.adapter
        adapter = self.adapters.get(name)
        if adapter is None:
            allowed = ", ".join([self.adapter.name, *self.adapters])
            why = f"this daemon does not run {name!r} (it allows: {allowed})"
            self._refuse(session_id, seq, "agent_not_allowed", why)
        return adapter

    def _start(self, d: wire.StartSession) -> None:
        if not self._admit(d.session_id, 0):
            return
        if self._cannot_sandbox(d.session_id, 0, d.sandbox):
            return
        adapter = self._agent(d.session_id, 0, d.agent)
        if adapter is None:
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
            d.session_id,
            d.title,
            spawn,
            resume=d.conversation,
            prompt=prompt,
            seq=0,
            cwd=None,
            branch=None,
            carried_over=d.conversation is not None,
            sandbox=d.sandbox,
            adapter=adapter,
        )

    def _resume(self, d: wire.ResumeSession) -> None:
        self._ended.discard(d.session_id)
        if not self._admit(d.session_id, d.last_seq):
            return
        if self._cannot_sandbox(d.session_id, d.last_seq, d.sandbox):
            return
        adapter = self._agent(d.session_id, d.last_seq, d.agent)
        if adapter is None:
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
            sandbox=d.sandbox,
            adapter=adapter,
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
        carried_over: bool = False,
        sandbox: bool = False,
        adapter: AgentAdapter | None = None,
    ) -> None:
        """Run a session; ``carried_over``: ``resume`` is a conversation made outside rcd,
        whose earlier turns the session shows first; ``sandbox``: the session asked for
        one (it can only tighten the environment's policy); ``adapter``: its agent (the
        default when None)."""
        assert self._nursery is not None, "Supervisor.run() is not running"
        agent = adapter or self.adapter

        async def prepare() -> Workspace:
            if cwd is not None:
                if await trio.Path(cwd).is_dir():
                    return Workspace(cwd=cwd, spawn=spawn, branch=branch)
                if spawn == "worktree":
                    return await self.worktrees.restore(session_id, cwd)
                raise WorkspaceError(f"the session's directory {cwd} no longer exists")
            if spawn == "worktree":
                return await self.worktrees.create(session_id, title)
            return await self.worktrees.same_dir(session_id)

        async def release(workspace: Workspace) -> Kept:
            return await self.worktrees.release(session_id, workspace)

        async def earlier() -> list[wire.EventData]:
            # An import: its earlier turns (of this directory's conversations only). A
            # resume: only the check that no local claude has the conversation open.
            assert resume is not None
            directory = str(self.directory) if carried_over else None
            return await trio.to_thread.run_sync(earlier_of, agent, resume, self.env, directory)

        runtime = SessionRuntime(
            session_id=session_id,
            adapter=agent,
            publish=lambda event: self.uplink.publish(session_id, event),
            publish_partial=lambda piece: self.uplink.publish_partial(session_id, piece),
            prepare=prepare,
            release=release,
            env=self.env,
            title=title,
            resume=resume,
            stop_grace=self.stop_grace,
            seq=seq,
            clock=self.clock,
            earlier=earlier if resume is not None else None,
            approve=lambda cwd, request: self.approve(session_id, cwd, request),
            options=attrs.evolve(self.options, sandbox=self._sandbox.tightened(sandbox)),
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

    # -- teardown --------------------------------------------------------------------------

    def set_spawn(self, spawn: wire.Spawn) -> None:
        """Change where new sessions run (sessions already running stay where they are)."""
        self.spawn = spawn
        log.info("spawn_mode", spawn=spawn)

    def stop_accepting(self) -> None:
        """No new sessions from now on; spares are no longer made (one being made is left
        half-made, and completed by the next start)."""
        self._accepting = False
        self.worktrees.stop()

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
            kept_worktrees=tuple(self.worktrees.kept),
            spares=self.worktrees.statistics(),
            recycles_waiting=self.worktrees.recycles_left,
        )
