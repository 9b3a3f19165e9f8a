"""The Agent Client Protocol adapter: any agent that speaks ACP on its stdio.

ACP is JSON-RPC 2.0, one message per line, both ways (https://agentclientprotocol.com).
rcd is the *client*: it starts the agent, sends ``initialize`` and ``session/new`` (or
``session/load`` to resume), then one ``session/prompt`` per user message; the agent
reports its work as ``session/update`` notifications and asks before a tool runs with a
``session/request_permission`` request, which waits for the phone's answer.

The small JSON-RPC layer is written here, on trio, rather than taken from the Python SDK
(``agent-client-protocol``), which runs on asyncio: rcd's daemon is trio throughout, and
the client side needs a dozen lines of framing, not a second event loop.

Mapping onto rcd's events:

* ``agent_message_chunk`` → the reply being written (:class:`~spawn.adapter.Streaming`),
  and ``assistant_text`` once a tool call or the turn's end closes it;
* ``tool_call`` → ``tool_use`` (its id, a short name, ``rawInput``); a ``tool_call_update``
  with status ``completed`` or ``failed`` → ``tool_result``;
* ``plan`` → ``assistant_text`` listing its entries;
* ``session/request_permission`` → ``permission_request`` (the options the agent offers
  are named in its description); "allow" selects the agent's ``allow_once`` option (else
  ``allow_always``), "deny" its ``reject_once`` (else ``reject_always``); an interrupt
  (``session/cancel``) answers every open one ``cancelled``;
* the ``session/prompt`` answer → ``turn_result`` (``ok`` for ``end_turn``).

What breaks the protocol — a line that is not JSON, a request or notification rcd does
not know (other than the ``_``-prefixed extensions, which are refused and ignored), a
line past 64 MiB, the agent exiting mid-turn — gives an ``error`` event and ends the
session: never one left waiting on an agent that will not answer.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import attrs
import structlog
import trio

import wire

from .acp_rpc import PROTOCOL_VERSION, AcpHandle, AgentRefused, ProtocolBroken
from .adapter import (
    AgentExited,
    AgentHandle,
    AgentLaunch,
    EventSink,
)
from .errors import AgentProtocolError
from .process import AgentProcess, open_agent_process
from .sandbox import git_dirs, wrapped

__all__ = ["AcpAgent", "AcpHandle", "PROTOCOL_VERSION"]

log = structlog.get_logger("spawn.acp")

#: Seconds the agent gets to answer ``initialize`` and to open (or load) its session.
HANDSHAKE_TIMEOUT = 60.0
#: The modes an agent may offer in which it asks before acting (Claude's ACP adapter
#: starts some versions in a mode that does not): the session is put in the first found.
ASKING_MODES = ("default", "ask")
#: ACP's error code for "authenticate first".
AUTH_REQUIRED = -32000


def _under_tmp(argv: list[str]) -> list[str]:
    """The directories of ``argv``'s words that are files under /tmp (blocking)."""
    return sorted({os.path.dirname(a) for a in argv if a.startswith("/tmp/") and os.path.exists(a)})


def _set_in(method: dict[str, Any], env: dict[str, str]) -> bool:
    """Whether every variable an ``env_var`` auth method names is set in ``env``."""
    wanted = method.get("vars")
    names = (
        [v.get("name") for v in wanted if isinstance(v, dict)] if isinstance(wanted, list) else []
    )
    return bool(names) and all(isinstance(n, str) and env.get(n) for n in names)


@attrs.define(kw_only=True)
class AcpAgent:
    """Agents that speak ACP: ``argv`` starts one (``npx … claude-agent-acp``, ``gemini
    --acp``); ``name`` is what ``session_started.agent`` says."""

    argv: Sequence[str]
    name: str = "acp"
    partial: bool = True

    async def run(
        self,
        launch: AgentLaunch,
        sink: EventSink,
        *,
        task_status: trio.TaskStatus[AgentHandle] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        argv = list(self.argv)
        argv[0] = shutil.which(argv[0], path=launch.env.get("PATH")) or argv[0]
        hint = f"rcd start --agent {self.name} runs `{' '.join(self.argv)[:200]}`: install it"
        options = launch.options
        sandbox = (
            options.sandbox if options.sandbox is not None and options.sandbox.enabled else None
        )
        async with AsyncExitStack() as stack:
            if sandbox is not None:
                # An ACP agent has no sandbox rcd can configure: the whole process is
                # wrapped, as --sandbox promises (spawn/sandbox.py).
                writable = await trio.to_thread.run_sync(git_dirs, launch.cwd)
                # Its programs and scripts may live under /tmp, which is private there.
                own = await trio.to_thread.run_sync(_under_tmp, argv)
                argv = (
                    await stack.enter_async_context(wrapped(sandbox, launch.cwd, writable, own))
                    + argv
                )
            proc = await open_agent_process(
                argv, cwd=launch.cwd, env=launch.env, not_found_hint=hint
            )
            await self._run(proc, launch, sink, task_status)

    async def _run(
        self,
        proc: AgentProcess,
        launch: AgentLaunch,
        sink: EventSink,
        task_status: trio.TaskStatus[AgentHandle],
    ) -> None:
        handle = AcpHandle(proc=proc, name=self.name, sink=sink, partial=self.partial)
        log.info("agent_started", pid=proc.pid, cwd=launch.cwd, resume=launch.resume)
        broken: str | None = None
        failure: AgentProtocolError | None = None
        opened = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(proc.drain_stderr)
                pumped = trio.Event()

                async def pump() -> None:
                    nonlocal broken
                    try:
                        await handle.pump()
                    except ProtocolBroken as exc:
                        broken = str(exc)
                    finally:
                        pumped.set()
                        nursery.cancel_scope.cancel()

                nursery.start_soon(pump)
                try:
                    with trio.fail_after(HANDSHAKE_TIMEOUT):
                        await self._open(handle, launch)
                except AgentProtocolError as exc:
                    failure = exc
                except AgentRefused as exc:
                    failure = AgentProtocolError(f"{self.name} did not open a session: {exc}")
                except trio.TooSlowError:
                    failure = AgentProtocolError(
                        f"{self.name} did not open a session within {HANDSHAKE_TIMEOUT:g} s"
                    )
                else:
                    opened = True
                    task_status.started(handle)
                    await pumped.wait()
                nursery.cancel_scope.cancel()
        finally:
            returncode = await proc.terminate()
        detail = "; ".join(proc.stderr_tail)
        if not opened:
            # Raised before started(): the session says why at once and ends (never a
            # session left waiting on an agent that is gone).
            why = failure or AgentProtocolError(
                f"{self.name}: {broken}"
                if broken
                else f"{self.name} exited (code {returncode}) before its session was open"
            )
            if detail:
                why = AgentProtocolError(f"{why}; it said: {detail[-500:]}", code=why.code)
            raise why
        if broken is not None:
            await sink(wire.Error(code="agent_protocol", message=f"{self.name}: {broken}"))
        expected = handle.stopping and broken is None
        await sink(AgentExited(returncode=returncode, expected=expected, detail=detail))

    async def _open(self, handle: AcpHandle, launch: AgentLaunch) -> None:
        capabilities = {"fs": {"readTextFile": False, "writeTextFile": False}, "terminal": False}
        hello = await handle.call(
            "initialize",
            {"protocolVersion": PROTOCOL_VERSION, "clientCapabilities": capabilities},
        )
        hello = hello if isinstance(hello, dict) else {}
        version = hello.get("protocolVersion")
        if version != PROTOCOL_VERSION:
            raise AgentProtocolError(
                f"{self.name} speaks ACP version {str(version)[:20]}; rcd speaks {PROTOCOL_VERSION}"
            )
        agent_caps = hello.get("agentCapabilities")
        agent_caps = agent_caps if isinstance(agent_caps, dict) else {}
        params = {"cwd": launch.cwd, "mcpServers": []}
        if launch.resume is not None:
            if not agent_caps.get("loadSession"):
                raise AgentProtocolError(
                    f"{self.name} cannot resume a session: it offers no session/load",
                    code="not_resumable",
                )
            handle._loading = True
            try:
                opened = await self._signed_in(
                    handle, hello, launch, "session/load", {**params, "sessionId": launch.resume}
                )
            finally:
                handle._loading = False
            handle.session = launch.resume
        else:
            opened = await self._signed_in(handle, hello, launch, "session/new", params)
            session = opened.get("sessionId") if isinstance(opened, dict) else None
            if not isinstance(session, str):
                raise AgentRefused("session/new", "no sessionId in its answer")
            handle.session = session
        await self._asking_mode(handle, opened, launch.options.permission_mode)

    async def _signed_in(
        self,
        handle: AcpHandle,
        hello: dict[str, Any],
        launch: AgentLaunch,
        method: str,
        params: dict[str, Any],
    ) -> Any:
        """``method`` (opening the session); when the agent answers that it needs a login
        (ACP's ``auth_required``, -32000), ``authenticate`` with the first of its methods
        read from environment variables that the agent's environment sets (an API key:
        ``OPENAI_API_KEY``, ``GEMINI_API_KEY``...), then once again."""
        try:
            return await handle.call(method, params)
        except AgentRefused as refused:
            if refused.code != AUTH_REQUIRED:
                raise
            offered = hello.get("authMethods")
            usable = [
                m for m in (offered if isinstance(offered, list) else [])
                if isinstance(m, dict) and m.get("type") == "env_var" and _set_in(m, launch.env)
            ]  # fmt: skip
            if not usable:
                names = [
                    str(m.get("name", m.get("id")))
                    for m in (offered if isinstance(offered, list) else [])
                    if isinstance(m, dict)
                ]
                raise AgentProtocolError(
                    f"{self.name} needs a login rcd cannot give it: set what one of its ways"
                    f" needs in the daemon's environment ({'; '.join(names) or 'none named'})",
                    code="agent_login_required",
                ) from None
            await handle.call("authenticate", {"methodId": usable[0].get("id")})
            log.info("agent_authenticated", method=usable[0].get("id"))
            return await handle.call(method, params)

    async def _asking_mode(self, handle: AcpHandle, opened: Any, wanted: str | None) -> None:
        """Put the session in the mode the environment's settings name (its permission
        mode, when the agent has a mode of that id), else in one that asks before acting,
        when the agent has modes and starts in another: the phone decides, not the
        agent's default."""
        modes = opened.get("modes") if isinstance(opened, dict) else None
        if not isinstance(modes, dict):
            return
        available = modes.get("availableModes")
        offered = [
            m.get("id") for m in (available if isinstance(available, list) else [])
            if isinstance(m, dict)
        ]  # fmt: skip
        preferred = ((wanted,) if wanted else ()) + ASKING_MODES
        asking = next((m for m in preferred if m in offered), None)
        if asking is not None and modes.get("currentModeId") != asking:
            await handle.call("session/set_mode", {"sessionId": handle.session, "modeId": asking})
            log.info("agent_mode_set", mode=asking, was=modes.get("currentModeId"))
