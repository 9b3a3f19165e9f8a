"""The daemon's answers about sessions' work: its changes, a file's diff, kept worktrees,
and the actions that land it (commit, merge, push) or discard it.

Each :class:`wire.WorkspaceRequest` runs in its own task and ends in exactly one
:class:`wire.WorkspaceAnswer` posted to the relay. The workspace is found here, never
taken from the request as given: a running session's own, else the ``cwd`` the relay's log
has (or a kept worktree's slug), accepted only when it is this environment's directory or
one of its worktrees. Every action done goes into the session's log as a ``git_action``
event (who, what, the commit): through the running session, or after the last event the
relay holds for an ended one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import structlog
import trio

import wire
from worktrees import Worktree, WorktreeError, Worktrees, landing
from worktrees import changes as git_changes
from worktrees.changes import readable
from worktrees.gitproc import run_git
from worktrees.snapshots import Snapshots

from .errors import DaemonError
from .relay_client import RelayClient
from .supervisor import Supervisor
from .uplink import Uplink

__all__ = ["WorkspaceDesk"]

log = structlog.get_logger("daemon.changes")

#: Seconds an action may arrive after its caller stopped waiting (by the relay's clock,
#: so clocks set a little apart do no harm) before it is refused as expired.
CLOCK_SLACK = 120.0
#: States in which the agent may be writing files: no commit then.
_WORKING = frozenset({"queued", "starting", "busy", "awaiting_permission", "ending"})


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@attrs.frozen(kw_only=True)
class _Place:
    """A session's workspace as found here."""

    cwd: Path
    spawn: wire.Spawn
    worktree: Worktree | None
    #: The worktree's directory is gone (its branch is what is left).
    gone: bool = False
    running: bool = False
    state: str | None = None


def _file(change: git_changes.FileChange) -> wire.FileChange:
    return wire.FileChange(
        path=readable(change.path),
        old_path=readable(change.old_path) if change.old_path is not None else None,
        status=change.status,  # type: ignore[arg-type]
        added=change.added,
        removed=change.removed,
        binary=change.binary,
        size=change.size,
        old_size=change.old_size,
    )


@attrs.define(eq=False)
class WorkspaceDesk:
    supervisor: Supervisor
    client: RelayClient
    uplink: Uplink
    nursery: trio.Nursery
    #: Keeps each workspace's snapshot up to date (None: read every workspace in full).
    snapshots: Snapshots | None = None
    clock: Callable[[], float] = time.time
    #: The last seq written to an ended session's log from here.
    _written: dict[str, int] = attrs.Factory(dict)
    #: One action at a time per workspace.
    _locks: dict[str, trio.Lock] = attrs.Factory(dict)

    def handle(self, request: wire.WorkspaceRequest) -> None:
        self.nursery.start_soon(self._answer, request)

    async def _answer(self, request: wire.WorkspaceRequest) -> None:
        try:
            answer = await self.answer(request)
        except landing.LandingRefused as exc:
            error = wire.WorkspaceError(code=exc.code, message=str(exc), files=exc.files)
            answer = wire.WorkspaceAnswer(id=request.id, error=error)
        except Refused as exc:
            error = wire.WorkspaceError(code=exc.code, message=str(exc))
            answer = wire.WorkspaceAnswer(id=request.id, error=error)
        except WorktreeError as exc:
            error = wire.WorkspaceError(code="git_failed", message=str(exc))
            answer = wire.WorkspaceAnswer(id=request.id, error=error)
        except Exception as exc:  # a bug, or input nobody foresaw: said, never fatal
            log.exception("workspace_failed", ask=request.ask, id=request.id)
            message = f"the daemon could not answer: {type(exc).__name__}: {exc}"
            error = wire.WorkspaceError(code="daemon_failed", message=readable(message))
            answer = wire.WorkspaceAnswer(id=request.id, error=error)
        log.info(
            "workspace_answered",
            ask=request.ask,
            session_id=request.session_id,
            slug=request.slug,
            error=answer.error.code if answer.error else None,
        )
        try:
            await self.client.post_answer(answer)
        except DaemonError as exc:
            log.warning("workspace_answer_not_sent", id=request.id, error=str(exc))

    async def answer(self, request: wire.WorkspaceRequest) -> wire.WorkspaceAnswer:
        """The answer to ``request`` (raises Refused, LandingRefused or WorktreeError)."""
        for text in (request.slug, request.cwd, request.path, request.message):
            if text is not None and "\0" in text:
                raise Refused("bad_request", "a name or message cannot hold a NUL character")
        manager = await self._manager()
        if request.ask == "worktrees":
            return wire.WorkspaceAnswer(id=request.id, worktrees=await self._kept())
        place = await self._place(request, manager)
        key = str(place.cwd)
        if request.ask == "changes":
            return wire.WorkspaceAnswer(
                id=request.id, changes=await self._changes(place, manager, request)
            )
        if request.ask == "diff":
            return wire.WorkspaceAnswer(
                id=request.id, diff=await self._diff(place, manager, request)
            )
        self._check_fresh(request)
        where = place.worktree.path if place.worktree is not None else place.cwd
        async with self._locks.setdefault(key, trio.Lock()):
            # Looked at again now: a session may have started there while this waited, and
            # the caller may have given up.
            self._check_fresh(request)
            running, state = self._activity(where)
            place = attrs.evolve(place, running=running, state=state)
            landed = await self._act(place, manager, request)
            self._log(request, landed)
            if place.worktree is not None and not self._activity(where)[0]:
                await self._release(manager, place.worktree)
        return wire.WorkspaceAnswer(id=request.id, landed=landed)

    def _check_fresh(self, request: wire.WorkspaceRequest) -> None:
        """An action its caller stopped waiting for long ago (the daemon was away, or it
        waited behind another) must not happen now. Reads are answered whenever."""
        if request.expires_at is not None and self.clock() > request.expires_at + CLOCK_SLACK:
            raise Refused("expired", "this request came too late: nothing was done")

    def _activity(self, cwd: Path, *, preparing: bool = True) -> tuple[bool, str | None]:
        """Whether a session runs in ``cwd`` (whichever asked), and the busiest state of
        those that do. With ``preparing``, a session still making its workspace (a resume
        making its worktree again) could be making this one: it counts as here."""
        states: list[str] = [
            runtime.state
            for runtime in self.supervisor.sessions.values()
            if (runtime.workspace is None and preparing)
            or (
                runtime.workspace is not None
                and os.path.realpath(runtime.workspace.cwd) == os.path.realpath(cwd)
            )
        ]
        working = [state for state in states if state in _WORKING]
        busiest = working or states
        return bool(states), busiest[0] if busiest else None

    async def _manager(self) -> Worktrees:
        try:
            return await self.supervisor.worktrees.manager()
        except WorktreeError as exc:
            raise Refused("not_a_repository", f"no changes to show: {exc}") from exc

    # -- finding the workspace ---------------------------------------------------------------

    async def _place(self, request: wire.WorkspaceRequest, manager: Worktrees) -> _Place:
        runtime = self.supervisor.sessions.get(request.session_id or "")
        if runtime is not None and runtime.workspace is not None:
            worktree = self.supervisor.worktrees.worktree_of(runtime.session_id)
            if worktree is None and runtime.workspace.spawn == "worktree":
                worktree = await manager.find(runtime.workspace.cwd)
            return _Place(
                cwd=Path(runtime.workspace.cwd),
                spawn=runtime.workspace.spawn,
                worktree=worktree,
                running=True,
                state=self._activity(Path(runtime.workspace.cwd))[1],
            )
        if runtime is not None:
            raise Refused("not_started", "the session has not started yet: nothing to show")
        if request.slug is not None:
            if request.slug in ("", ".", "..") or "/" in request.slug:
                raise Refused("not_here", f"{request.slug!r} is not a worktree name")
            cwd = str(manager.directory / request.slug)
        elif request.cwd is not None:
            cwd = request.cwd
        else:
            raise Refused("not_started", "the session never started: nothing to show")
        worktree = await manager.find(cwd)
        if worktree is not None:
            facts = await landing.branch_facts(manager.root, worktree.branch, manager.common_dir)
            owner = facts.session
            if request.session_id is not None and owner not in (None, request.session_id):
                raise Refused(
                    "workspace_gone",
                    "the session's worktree is gone: another session's works at that path now",
                )
            gone = not await trio.Path(worktree.path).is_dir()
            cwd_now = manager.root if gone else worktree.path
            running, state = self._activity(worktree.path)
            return _Place(cwd=cwd_now, spawn="worktree", worktree=worktree, gone=gone,
                          running=running, state=state)  # fmt: skip
        here = await trio.Path(self.supervisor.directory).resolve()
        if await trio.Path(cwd).resolve() == here:
            return _Place(cwd=Path(cwd), spawn="same-dir", worktree=None)
        if Path(cwd).is_relative_to(manager.directory):
            raise Refused(
                "workspace_gone",
                "the session's worktree and branch are gone: its work was clean, landed or"
                " discarded",
            )
        raise Refused("not_here", f"{cwd} is not this environment's directory or worktree")

    async def _facts(
        self, place: _Place, manager: Worktrees, session_id: str | None
    ) -> tuple[str, str | None, landing.BranchFacts]:
        """The commit the work started from, the branch, and what config says of it."""
        worktree = place.worktree
        branch = worktree.branch if worktree is not None else await _branch_of(place.cwd)
        facts = await landing.branch_facts(manager.root, branch, manager.common_dir)
        if worktree is not None:
            start = facts.start or worktree.base_commit
            if facts.target is None:  # a worktree older than the record
                facts = attrs.evolve(facts, target=await landing.merge_target(manager, worktree))
        else:
            start = self.supervisor.worktrees.starts.get(session_id) if session_id else None
        return start or "HEAD", branch, facts  # unknown start: the uncommitted work alone

    # -- reading -----------------------------------------------------------------------------

    async def _changes(
        self, place: _Place, manager: Worktrees, request: wire.WorkspaceRequest
    ) -> wire.Changes:
        base, branch, facts = await self._facts(place, manager, request.session_id)
        worktree = place.worktree
        commit = worktree.branch if worktree is not None and place.gone else None
        now = await git_changes.snapshot(place.cwd, base, commit=commit, snapshots=self.snapshots)
        target, remote = facts.target if worktree is not None else None, facts.remote
        actions: list[wire.Action] = []
        if now.uncommitted and not place.gone:
            actions.append("commit")
        if worktree is not None and target is not None and now.commits and not now.uncommitted:
            # Not once it is all there (a merge counts the work from its start still).
            landed = await run_git(
                ["merge-base", "--is-ancestor", now.head, "refs/heads/" + target],
                cwd=manager.root,
                check=False,
            )
            if landed.returncode != 0:
                actions.append("merge")
        if remote is not None and branch is not None:
            actions.append("push")
        loss = None
        if worktree is not None and not place.running:
            actions.append("discard")
            found = await landing.discard_loss(manager, worktree)
            loss = wire.DiscardLoss(lost=found.lost, confirm=found.token)
        return wire.Changes(
            cwd=str(place.cwd),
            spawn=place.spawn,
            base=now.base,
            head=now.head,
            branch=readable(branch) if branch else None,
            target=readable(target) if target else None,
            commits=now.commits,
            uncommitted=now.uncommitted,
            files=[_file(f) for f in now.files],
            more_files=now.more_files,
            actions=actions,
            remote=readable(remote) if remote else None,
            discard=loss,
        )

    async def _diff(
        self, place: _Place, manager: Worktrees, request: wire.WorkspaceRequest
    ) -> wire.FileDiff:
        if request.path is None:
            raise Refused("path_required", "which file? give its path")
        base, _, _ = await self._facts(place, manager, request.session_id)
        commit = place.worktree.branch if place.worktree is not None and place.gone else None
        try:
            found = await git_changes.file_diff(
                place.cwd, base, request.path, commit=commit, snapshots=self.snapshots
            )
        except WorktreeError as exc:
            if "not among the changed files" in str(exc):
                raise Refused("not_changed", str(exc)) from exc
            raise
        hunks = None
        if found.hunks is not None:
            hunks = [
                wire.Hunk(
                    header=h.header, old_start=h.old_start, new_start=h.new_start, lines=h.lines
                )
                for h in found.hunks
            ]
        return wire.FileDiff(
            file=_file(found.change), hunks=hunks, summary=found.summary, truncated=found.truncated
        )

    async def _kept(self) -> wire.KeptWorktrees:
        kept = await self.supervisor.worktrees.refresh_kept()
        return wire.KeptWorktrees(
            worktrees=[
                wire.KeptWorktree(
                    slug=readable(Path(k.path).name),
                    branch=readable(k.branch or ""),
                    path=readable(k.path),
                    exists=await trio.Path(k.path).exists(),
                    reasons=list(k.reasons),
                )
                for k in kept
                # A resumed one is a session's again.
                if not self._activity(Path(k.path), preparing=False)[0]
            ]
        )

    # -- acting ------------------------------------------------------------------------------

    async def _act(
        self, place: _Place, manager: Worktrees, request: wire.WorkspaceRequest
    ) -> wire.Landed:
        worktree = place.worktree
        if request.ask == "commit":
            if not request.message or not request.message.strip():
                raise Refused("message_required", "a commit needs a message")
            if place.gone:
                raise landing.LandingRefused("nothing_to_commit", "the worktree is gone")
            if place.state in _WORKING:
                raise Refused(
                    "session_busy",
                    "the agent is working in this directory: wait for its turn to end,"
                    " or interrupt it, then commit",
                )
            done = await landing.commit_all(place.cwd, request.message)
        elif request.ask == "push":
            branch = worktree.branch if worktree is not None else await _branch_of(place.cwd)
            if branch is None:
                raise Refused("no_branch", "the directory is on no branch: nothing to push")
            done = await landing.push(place.cwd, branch)
        elif worktree is None:
            raise Refused(
                "not_a_worktree",
                f"a same-dir session works in {place.cwd} itself: there is no branch of its"
                f" own to {request.ask}",
            )
        elif request.ask == "merge":
            target = await landing.merge_target(manager, worktree)
            if target is None:
                raise landing.LandingRefused(
                    "no_target", "the session started from a detached HEAD: no branch to merge into"
                )
            done = await landing.merge(manager, worktree, target)
        else:
            if place.running:
                raise Refused("session_running", "the session is running: stop it first")
            done = await landing.discard(manager, worktree, request.confirm)
        return wire.Landed(action=done.action, summary=done.summary, commit=done.commit)  # type: ignore[arg-type]

    async def _release(self, manager: Worktrees, worktree: Worktree) -> None:
        """After an action on an ended session's worktree: what holds no work goes, by the
        usual rules, and the kept list says what stays."""
        try:
            released = await manager.release(worktree)
            if released.removed and self.snapshots is not None:
                await self.snapshots.forget(worktree.path)
            await self.supervisor.worktrees.refresh_kept()
        except WorktreeError as exc:
            log.warning("worktree_not_released", path=str(worktree.path), error=str(exc))

    def _log(self, request: wire.WorkspaceRequest, landed: wire.Landed) -> None:
        payload = wire.GitAction(
            action=landed.action,
            origin=request.origin,
            summary=landed.summary,
            commit=landed.commit,
        )
        log.info("work_landed", action=landed.action, origin=request.origin, summary=landed.summary)
        session_id = request.session_id
        if session_id is None:
            return
        runtime = self.supervisor.sessions.get(session_id)
        if runtime is not None:
            runtime.record(payload)
            return
        seq = (
            max(
                request.last_seq, self.uplink.last_seq(session_id), self._written.get(session_id, 0)
            )
            + 1
        )
        self._written[session_id] = seq
        self.uplink.publish(session_id, wire.make_event(seq, self.clock(), payload))


async def _branch_of(cwd: Path) -> str | None:  # not `--short`'s heads/v1 (a tag v1 too)
    ref = (await run_git(["symbolic-ref", "--quiet", "HEAD"], cwd=cwd, check=False)).stdout
    return ref.strip().removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
