"""One session's runtime: the single writer of its event log.

A :class:`SessionRuntime` prepares the session's directory, starts the agent through an
:class:`~spawn.adapter.AgentAdapter`, applies the inputs delivered to it exactly once, and
numbers every event it writes with a dense ``seq``. Events leave through ``publish``, a
non-blocking callable (the daemon's uplink buffer).

It runs over 400 lines on purpose: the session's one writer holds its state machine,
inputs, permission requests (asked, or answered by a grant) and streaming together, and
splitting them would hand the log's order to more than one place.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

import attrs
import structlog
import trio

import wire

from .adapter import (
    AgentAdapter,
    AgentEvent,
    AgentExited,
    AgentHandle,
    AgentLaunch,
    AgentOptions,
    PermissionCancelled,
    Streaming,
    tool_summary,
)
from .errors import AgentNotFound, AgentProtocolError, ImportRefused, SpawnError

__all__ = ["Kept", "SessionRuntime", "SessionSnapshot", "Workspace", "WorkspaceError"]

log = structlog.get_logger("spawn.session")

#: Seconds a forced-down agent gets between each step of its stop (see ``cancel``) ...
FORCED_GRACE = 0.2
#: ... and its workspace's release (a stopping daemon's release only reads the worktree).
FORCED_RELEASE = 0.5


class WorkspaceError(SpawnError):
    """The session's directory could not be prepared (e.g. a worktree failed)."""


@attrs.frozen(kw_only=True)
class Workspace:
    """Where a session runs. ``branch`` is set for worktrees."""

    cwd: str
    spawn: wire.Spawn
    branch: str | None = None


@attrs.frozen(kw_only=True)
class Kept:
    """What releasing a workspace left in place, and why (for ``session_ended``)."""

    kept: bool
    reasons: tuple[str, ...] = ()
    #: What went wrong, when git refused to release it (becomes the session's error event).
    failure: str | None = None


@attrs.frozen(kw_only=True)
class SessionSnapshot:
    id: str
    title: str | None
    state: wire.SessionState
    cwd: str | None
    branch: str | None
    pid: int | None
    last_seq: int
    #: What the agent is doing right now, for displays ("Bash: pytest -q"), or None.
    activity: str | None = None
    #: The agent it runs (its adapter's name).
    agent: str | None = None


#: Prepares the workspace (may create a worktree); raises WorkspaceError.
Prepare = Callable[[], Awaitable[Workspace]]
#: Releases it when the session ends; says what was kept (never loses work).
Release = Callable[[Workspace], Awaitable[Kept]]

UserInput = wire.SendMessage | wire.DecidePermission | wire.Interrupt | wire.StopSession


@attrs.define(eq=False)
class SessionRuntime:
    """Runs one session from ``queued`` to ``ended``; see the module docstring."""

    session_id: str
    adapter: AgentAdapter
    publish: Callable[[wire.Event], None]
    prepare: Prepare
    release: Release
    env: dict[str, str]
    title: str | None = None
    resume: str | None = None
    stop_grace: float = 3.0
    #: The last seq already written for this session (non-zero when it continues a log).
    seq: int = 0
    clock: Callable[[], float] = time.time
    #: Where replies being written go (never blocks; see :mod:`wire.partial`), or None.
    publish_partial: Callable[[wire.AssistantPartial], None] | None = None
    #: How the environment's settings start the agent (sandbox, permission mode...).
    options: AgentOptions = attrs.Factory(AgentOptions)
    #: For a conversation continued (``rcd import``, a resume): its earlier events to show
    #: after ``session_started`` (none for a resume); raises when it cannot be continued.
    earlier: Callable[[], Awaitable[list[wire.EventData]]] | None = None
    #: The approval grant that answers a permission request of this session in its
    #: directory (the daemon's grants), or None: the request is asked.
    approve: Callable[[str, wire.PermissionRequest], str | None] = lambda _cwd, _request: None

    state: wire.SessionState = "queued"
    workspace: Workspace | None = None
    handle: AgentHandle | None = None
    end_reason: str | None = None
    activity: str | None = None
    _inbox_send: trio.MemorySendChannel[UserInput] = attrs.field(init=False)
    _inbox_recv: trio.MemoryReceiveChannel[UserInput] = attrs.field(init=False)
    _queued: deque[wire.SendMessage] = attrs.field(factory=deque)
    _applied: set[str] = attrs.field(factory=set)
    _permissions: set[str] = attrs.field(factory=set)
    _in_turn: bool = False
    #: The inputs' task waits for the next one, nothing is queued ahead: a message may go
    #: to an idle agent straight from :meth:`deliver`.
    _inbox_idle: bool = False
    _exited: AgentExited | None = None
    _scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    _agent_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    #: Set by :meth:`cancel`: the end is hurried (no grace for the agent, no release).
    _forced: bool = False
    #: ``trio.current_time()`` when a stop was first asked for (0: never), for the log.
    _stop_asked: float = 0.0
    #: The block being written: what its partials carry, and its whole text so far.
    _writing: wire.AssistantPartial | None = None
    ended: trio.Event = attrs.field(factory=trio.Event)

    def __attrs_post_init__(self) -> None:
        self._inbox_send, self._inbox_recv = trio.open_memory_channel[UserInput](math.inf)

    # -- what the supervisor calls -------------------------------------------------------

    def deliver(self, item: UserInput) -> None:
        """Apply an input in order: a message to an idle agent with nothing ahead of it is
        written to the agent here and now (:meth:`_send_now`), anything else is queued for
        the inputs' task. Inputs that arrive before the agent is ready wait for it; a
        message whose ``input_id`` was already applied is ignored (exactly once)."""
        if self.ended.is_set():
            log.info("input_after_end", session_id=self.session_id, type=item.type)
            return
        if self._inbox_idle and isinstance(item, wire.SendMessage) and self._send_now(item):
            return
        self._inbox_idle = False
        self._inbox_send.send_nowait(item)

    def request_stop(self, reason: str) -> None:
        """Begin a stop from outside (e.g. daemon shutdown). Returns at once."""
        self.deliver(wire.StopSession(session_id=self.session_id, origin=reason))

    def snapshot(self) -> SessionSnapshot:
        return SessionSnapshot(
            id=self.session_id,
            title=self.title,
            state=self.state,
            cwd=self.workspace.cwd if self.workspace else None,
            branch=self.workspace.branch if self.workspace else None,
            pid=self.handle.pid if self.handle and not self.ended.is_set() else None,
            last_seq=self.seq,
            activity=self.activity,
            agent=self.adapter.name,
        )

    # -- the log -------------------------------------------------------------------------

    def record(self, payload: wire.EventData) -> None:
        """Write an event from outside the agent (work landed from a client) to the log."""
        self._emit(payload)

    def _emit(self, payload: wire.EventData) -> None:
        # seq is taken and the event handed over with no await in between: the log has
        # one writer, and concurrent tasks of this session can never reorder it.
        self.seq += 1
        self.publish(wire.make_event(self.seq, self.clock(), payload))

    def _set_state(self, state: wire.SessionState) -> None:
        if state != self.state:
            self.state = state
            self._emit(wire.Status(state=state))

    def _refresh_state(self) -> None:
        if self.state in ("ending", "ended", "queued", "starting"):
            return
        if self._permissions:
            self._set_state("awaiting_permission")
        elif self._in_turn:
            self._set_state("busy")
        else:
            self._set_state("idle")

    # -- running -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the session to its end, applying what :meth:`deliver` queued, in order.

        Never raises for agent trouble: that becomes ``error`` and ``session_ended``
        events. Cancellation stops the agent (reaped) before it propagates.
        """
        structlog.contextvars.bind_contextvars(session_id=self.session_id)
        try:
            with self._scope:
                await self._run()
        finally:
            with trio.CancelScope(shield=True):
                await self._finish()

    async def _run(self) -> None:
        self._set_state("starting")
        try:
            self.workspace = await self.prepare()
        except WorkspaceError as exc:
            self._emit(wire.Error(code="workspace_failed", message=str(exc)))
            self.end_reason = "workspace_failed"
            return
        try:
            history = await self.earlier() if self.earlier is not None else []
        except Exception as exc:  # an unreadable transcript must not take the daemon down
            why = str(exc) if isinstance(exc, ImportRefused) else f"{type(exc).__name__}: {exc}"
            self.end_reason = "import_refused" if self.seq <= 1 else "resume_refused"
            self._emit(wire.Error(code=self.end_reason, message=why))
            return
        launch = AgentLaunch(
            cwd=self.workspace.cwd, env=self.env, resume=self.resume, options=self.options
        )
        async with trio.open_nursery() as nursery:
            try:
                handle: AgentHandle = await nursery.start(self.adapter.run, launch, self._on_agent)
            except AgentNotFound as exc:
                self._emit(wire.Error(code="agent_not_found", message=str(exc)))
                self.end_reason = "agent_not_found"
                return
            except AgentProtocolError as exc:  # it started, but could not open its session
                self._emit(wire.Error(code=exc.code, message=str(exc)))
                self.end_reason = exc.code
                return
            self.handle = handle
            self._emit(
                wire.SessionStarted(
                    cwd=self.workspace.cwd,
                    spawn=self.workspace.spawn,
                    branch=self.workspace.branch,
                    agent=self.adapter.name,
                    agent_session_id=handle.agent_session_id,
                )
            )
            for payload in history:
                self._emit(payload)
            self.state = "idle"
            self._emit(wire.Status(state="idle"))
            self._agent_scope = nursery.cancel_scope
            nursery.start_soon(self._apply_inputs)

    async def _apply_inputs(self) -> None:
        while True:
            try:
                item = self._inbox_recv.receive_nowait()
            except trio.WouldBlock:
                self._inbox_idle = True
                try:
                    item = await self._inbox_recv.receive()
                except trio.EndOfChannel:
                    return
                finally:
                    self._inbox_idle = False
            except trio.EndOfChannel:
                return
            await self._apply(item)

    def _send_now(self, item: wire.SendMessage) -> bool:
        """Apply a message to an idle agent here and now, its line written without waiting
        for a scheduler pass (the agent is what waits for it); False when it must take the
        inputs' task (a turn runs, or the line does not go at once): nothing happened."""
        handle = self.handle
        if (
            handle is None
            or self._in_turn
            or self._queued
            or self._stop_asked
            or self._exited is not None
            or self._scope.cancel_called
            or self._agent_scope.cancel_called
        ):
            return False
        if item.input_id in self._applied:
            return True
        if not handle.send_message_now(item.text):
            return False
        self._applied.add(item.input_id)
        self._start_turn(item)
        return True

    async def _apply(self, item: UserInput) -> None:
        handle = self.handle
        assert handle is not None
        if isinstance(item, wire.SendMessage):
            if self._stop_asked:
                self._not_sent(item)
                return
            if item.input_id in self._applied:
                return
            self._applied.add(item.input_id)
            self._queued.append(item)
            await self._send_next()
        elif isinstance(item, wire.DecidePermission):
            if item.request_id not in self._permissions:
                log.info("permission_unknown", request_id=item.request_id)
                return
            self._permissions.discard(item.request_id)
            # Logged before the agent hears it: a quick agent's reply (its tool's result,
            # its answer, the turn's end) can be read while this write is still returning,
            # and the log must show the decision first.
            self._emit(
                wire.PermissionResolved(
                    request_id=item.request_id, decision=item.decision, origin=item.origin
                )
            )
            self._refresh_state()
            await handle.answer_permission(item.request_id, item.decision, item.message)
        elif isinstance(item, wire.Interrupt):
            if self._in_turn:
                await handle.interrupt()
        elif isinstance(item, wire.StopSession):
            self._stop_asked = self._stop_asked or trio.current_time()
            if self.end_reason is None:
                self.end_reason = "stopped" if item.origin != "daemon_stopped" else item.origin
            self._set_state("ending")
            if self._in_turn:
                # A busy agent given only EOF finishes its turn first (minutes, maybe);
                # interrupted, it stops within milliseconds and its transcript stays whole.
                await handle.interrupt()
            await handle.stop(self.stop_grace)

    async def _send_next(self) -> None:
        # One message per turn: the next waits for the previous turn's result, so each
        # turn_result answers exactly one user_message and the state is always true.
        if self._in_turn or not self._queued or self.handle is None:
            return
        item = self._queued.popleft()
        if self._stop_asked:
            self._not_sent(item, *self._queued)
            self._queued.clear()
            return
        self._start_turn(item)
        await self.handle.send_message(item.text)

    def _not_sent(self, *items: wire.SendMessage) -> None:
        """Messages that came, or waited, until a stop: the agent never gets them, and the
        session's log says so (the relay took them)."""
        for item in items:
            log.info("input_after_stop", session_id=self.session_id, input_id=item.input_id)
            self._emit(
                wire.Error(
                    code="message_not_sent",
                    message=f"not sent to the agent, the session was stopping: {item.text[:200]}",
                )
            )

    def _start_turn(self, item: wire.SendMessage) -> None:
        self._in_turn = True
        self._emit(wire.UserMessage(text=item.text, input_id=item.input_id, origin=item.origin))
        self._refresh_state()

    async def _on_agent(self, event: AgentEvent) -> None:
        if isinstance(event, AgentExited):
            # adapter.run returns right after this; nothing more to apply inputs to.
            self._exited = event
            self._agent_scope.cancel()
            return
        if isinstance(event, Streaming):
            self._streaming(event)
            return
        if isinstance(event, PermissionCancelled):
            if event.request_id in self._permissions:
                self._permissions.discard(event.request_id)
                self._emit(
                    wire.PermissionResolved(
                        request_id=event.request_id, decision="deny", origin="agent_cancelled"
                    )
                )
                self._refresh_state()
            return
        if isinstance(event, wire.ToolUse):
            self.activity = tool_summary(event)
        elif isinstance(event, wire.TurnResult):
            self.activity = None
        if isinstance(event, wire.PermissionRequest):
            if await self._granted(event):
                return
            self.activity = f"waiting for approval: {event.description}"
            self._permissions.add(event.request_id)
            self._emit(event)
            self._refresh_state()
            return
        if isinstance(event, wire.TurnResult):
            for request_id in sorted(self._permissions):
                # The turn is over (interrupted or failed): its open prompts are moot, and
                # close before its end shows.
                self._emit(
                    wire.PermissionResolved(
                        request_id=request_id, decision="deny", origin="turn_ended"
                    )
                )
            self._permissions.clear()
        self._emit(event)
        if isinstance(event, wire.TurnResult):
            self._in_turn = False
            self._refresh_state()
            await self._send_next()

    async def _granted(self, request: wire.PermissionRequest) -> bool:
        """Answer ``request`` "allow" if an approval grant covers it (logged as by that
        grant); False when it must be asked."""
        if self.handle is None or self.workspace is None:
            return False
        try:
            grant = self.approve(self.workspace.cwd, request)
        except Exception:  # a grant it cannot judge must not end the daemon: ask
            log.exception("grant_check_failed", request=request.request_id, tool=request.tool)
            return False
        if grant is None:
            return False
        log.info(
            "permission_granted", request_id=request.request_id, tool=request.tool, grant=grant
        )
        self._emit(
            wire.PermissionResolved(
                request_id=request.request_id, decision="allow", origin="grant", grant=grant
            )
        )
        await self.handle.answer_permission(request.request_id, "allow", None)
        return True

    def _streaming(self, piece: Streaming) -> None:
        """Hand a piece of the block being written on, placed after the log's last event
        and the block's text so far. A block that outlives an event of the log (its state
        changed, say) goes again whole, placed after that event."""
        if self.publish_partial is None:
            return
        now = self._writing  # the block so far: offset 0, its whole text
        if piece.start or now is None or now.block != piece.block:
            now = wire.AssistantPartial(
                after_seq=self.seq, block=piece.block, kind=piece.kind, name=piece.name,
                offset=0, text="",
            )  # fmt: skip
        room = max(0, wire.MAX_PARTIAL_TEXT - len(now.text))
        text = piece.text[:room]
        moved = now.after_seq != self.seq
        self._writing = attrs.evolve(now, after_seq=self.seq, text=now.text + text)
        if moved:
            self.publish_partial(self._writing)
        elif text:
            self.publish_partial(attrs.evolve(now, offset=len(now.text), text=text))

    async def _finish(self) -> None:
        exited = self._exited
        if exited is not None and not exited.expected and self.end_reason is None:
            detail = f": {exited.detail}" if exited.detail else ""
            self._emit(
                wire.Error(
                    code="agent_exited",
                    message=f"{self.adapter.name} exited with code {exited.returncode}{detail}",
                )
            )
            self.end_reason = "agent_exited"
        finishing = self._stop_asked or trio.current_time()
        grace = FORCED_GRACE if self._forced else self.stop_grace
        if self.handle is not None:
            with trio.move_on_after(grace * 2 + 1):
                await self.handle.stop(grace)
        self._set_state("ending")
        agent_gone = trio.current_time()
        kept = Kept(kept=False)
        if self.workspace is not None:
            # Until release says otherwise, the workspace is there: a release that times out,
            # fails or is skipped must not be reported as a clean removal.
            kept = Kept(kept=True, reasons=("not released",))
            try:
                with trio.move_on_after(FORCED_RELEASE if self._forced else 30):
                    kept = await self.release(self.workspace)
                if kept.failure is not None:
                    self._emit(wire.Error(code="workspace_release_failed", message=kept.failure))
            except SpawnError as exc:
                self._emit(wire.Error(code="workspace_release_failed", message=str(exc)))
        self._emit(
            wire.SessionEnded(
                reason=self.end_reason or "ended",
                worktree_kept=kept.kept,
                branch=self.workspace.branch if self.workspace else None,
                kept_reasons=list(kept.reasons),
            )
        )
        self.state = "ended"
        self._inbox_send.close()
        self.ended.set()
        log.info(
            "session_ended",
            reason=self.end_reason,
            forced=self._forced,
            # How long the agent took to go (from the stop asked for), then the release.
            agent_ms=round((agent_gone - finishing) * 1000),
            release_ms=round((trio.current_time() - agent_gone) * 1000),
        )

    def cancel(self) -> None:
        """Force the session down (second signal, or a stop past its deadline): the agent
        gets :data:`FORCED_GRACE` seconds, is killed and reaped; its workspace's release
        gets :data:`FORCED_RELEASE` seconds, past which it is reported as kept, unreleased
        (a daemon's next start removes it if it holds nothing)."""
        self._forced = True
        self._scope.cancel()
