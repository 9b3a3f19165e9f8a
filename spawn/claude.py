"""Claude Code through its stream-json protocol: one long-lived CLI process per session.

``claude -p --input-format stream-json --output-format stream-json --verbose
--permission-prompt-tool stdio`` reads one JSON object per stdin line and writes one per
stdout line. See ``testkit/fakes/NOTES.md`` for the shapes observed on the pinned version.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any, TypeGuard

import attrs
import structlog
import trio

import wire

from .adapter import (
    AgentEvent,
    AgentExited,
    AgentHandle,
    AgentLaunch,
    EventSink,
    PermissionCancelled,
    Streaming,
)
from .lines import LineTooLong, iter_lines, json_line, load_line
from .process import AgentProcess, open_agent_process
from .sandbox import claude_settings, git_dirs, wrapped

__all__ = ["PARTIAL_ARGS", "STREAM_JSON_ARGS", "ClaudeCode", "ClaudeHandle", "parse_line"]

log = structlog.get_logger("spawn.claude")

#: The long-lived stream-json session: prompts on stdin, events on stdout, permission
#: prompts asked of us over stdio (``--resume ID`` continues one).
STREAM_JSON_ARGS: tuple[str, ...] = (
    "-p",
    "--input-format",
    "stream-json",
    "--output-format",
    "stream-json",
    "--verbose",
    "--permission-prompt-tool",
    "stdio",
)

#: Replies as they are written: ``stream_event`` lines, each one event of the Messages
#: API's stream (see ``testkit/fakes/NOTES.md``).
PARTIAL_ARGS: tuple[str, ...] = ("--include-partial-messages",)

INSTALL_HINT = "install Claude Code (npm install -g @anthropic-ai/claude-code) or pass --agent-bin"
SANDBOX_HINT = "the sandbox needs bubblewrap and socat: sudo apt install bubblewrap socat"


def _user_message(text: str) -> dict[str, Any]:
    return {"type": "user", "message": {"role": "user", "content": text}}


@attrs.define(eq=False)
class ClaudeHandle:
    """Controls one ``claude`` process (see :class:`spawn.adapter.AgentHandle`)."""

    proc: AgentProcess
    agent_session_id: str
    #: Permission requests not answered yet: request_id → the tool input the agent proposed.
    pending: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    #: The CLI reports the conversation's cumulative cost; turns get the difference.
    cost_so_far: float = 0.0
    stopping: bool = False
    #: Under ``--sandbox``: the CLI's own prompts to reach a host the policy left out are
    #: refused here (the policy is the answer), not asked of the user.
    sandboxed: bool = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    async def _send(self, obj: dict[str, Any]) -> None:
        try:
            await self.proc.write_line(json_line(obj))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.info("agent_stdin_closed", pid=self.proc.pid)

    async def send_message(self, text: str) -> None:
        await self._send(_user_message(text))

    def send_message_now(self, text: str) -> bool:
        return self.proc.write_line_now(json_line(_user_message(text)))

    async def answer_permission(
        self, request_id: str, decision: wire.Decision, message: str | None
    ) -> None:
        proposed = self.pending.pop(request_id, None)
        if proposed is None:
            return
        response: dict[str, Any]
        if decision == "allow":
            response = {"behavior": "allow", "updatedInput": proposed}
        else:
            response = {"behavior": "deny", "message": message or "The user denied this."}
        await self._send(
            {
                "type": "control_response",
                "response": {"subtype": "success", "request_id": request_id, "response": response},
            }
        )

    async def interrupt(self) -> None:
        await self._send(
            {
                "type": "control_request",
                "request_id": f"rcd-{uuid.uuid4().hex}",
                "request": {"subtype": "interrupt"},
            }
        )

    async def stop(self, grace: float) -> None:
        self.stopping = True
        await self.proc.terminate(grace)


def _tool_result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif isinstance(block, dict):
                parts.append(f"[{block.get('type', 'content')}]")
        return "\n".join(parts)
    return "" if content is None else json.dumps(content)


def _describe(tool: str, tool_input: dict[str, Any], request: dict[str, Any]) -> str:
    for key in ("description", "title", "decision_reason"):
        value = request.get(key)
        if isinstance(value, str) and value:
            return value
    if tool == "Bash" and isinstance(tool_input.get("command"), str):
        desc = tool_input.get("description")
        return f"Run: {tool_input['command']}" + (f" ({desc})" if isinstance(desc, str) else "")
    for key in ("file_path", "path", "url", "pattern"):
        if isinstance(tool_input.get(key), str):
            return f"{tool} {tool_input[key]}"
    return f"Use the {tool} tool"


def parse_line(obj: Any) -> list[AgentEvent]:
    """Normalise one decoded stdout object of the CLI into wire payloads.

    Unknown ``type`` values produce nothing (the CLI grows new ones); a known type with a
    wrong shape raises ``ValueError`` naming what was wrong.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    out: list[AgentEvent] = []
    if kind == "assistant":
        for block in _content_blocks(obj):
            btype = block.get("type")
            if btype == "text" and isinstance(block.get("text"), str) and block["text"]:
                out.append(wire.AssistantText(text=block["text"]))
            elif btype == "tool_use":
                tool_input = block.get("input")
                out.append(
                    wire.ToolUse(
                        id=str(block.get("id", "")),
                        name=str(block.get("name", "")),
                        input=tool_input if isinstance(tool_input, dict) else {},
                    )
                )
    elif kind == "user":
        for block in _content_blocks(obj):
            if block.get("type") == "tool_result":
                out.append(
                    wire.ToolResult(
                        tool_use_id=str(block.get("tool_use_id", "")),
                        content=_tool_result_text(block.get("content")),
                        is_error=bool(block.get("is_error", False)),
                    )
                )
    elif kind == "result":
        # is_error is the truth: an API error still says subtype "success" (see NOTES.md).
        is_error = bool(obj.get("is_error", False))
        duration = obj.get("duration_ms", 0)
        cost = obj.get("total_cost_usd")  # cumulative for the conversation
        out.append(
            wire.TurnResult(
                ok=not is_error,
                duration_ms=int(duration) if isinstance(duration, int | float) else 0,
                cost_usd=float(cost) if isinstance(cost, int | float) else None,
            )
        )
        reason = obj.get("terminal_reason")
        interrupted = isinstance(reason, str) and reason.startswith("aborted")
        if is_error and not interrupted:
            errors = obj.get("errors")
            detail = obj.get("result") or (
                "; ".join(map(str, errors)) if isinstance(errors, list) else ""
            )
            what = reason or obj.get("subtype") or "error"
            out.append(wire.Error(code="turn_failed", message=f"{what}: {detail}".rstrip(": ")))
    elif kind == "stream_event":
        out.extend(_streaming(obj))
    elif kind == "control_cancel_request":
        request_id = obj.get("request_id")
        if isinstance(request_id, str):
            out.append(PermissionCancelled(request_id=request_id))
    elif kind == "control_request":
        request = obj.get("request")
        request_id = obj.get("request_id")
        if not isinstance(request, dict) or not isinstance(request_id, str):
            raise ValueError("control_request without request or request_id")
        if request.get("subtype") == "can_use_tool":
            tool = str(request.get("tool_name", ""))
            tool_input = request.get("input")
            tool_input = tool_input if isinstance(tool_input, dict) else {}
            out.append(
                wire.PermissionRequest(
                    request_id=request_id,
                    tool=tool,
                    input=tool_input,
                    description=_describe(tool, tool_input, request),
                )
            )
    return out


#: The tool name of Claude Code's prompt to let a sandboxed command reach a host outside
#: ``sandbox.network.allowedDomains`` (input ``{"host": ...}``; see NOTES.md).
SANDBOX_NETWORK_TOOL = "SandboxNetworkAccess"


def _asks_to_leave_the_sandbox(payload: AgentEvent) -> TypeGuard[wire.PermissionRequest]:
    return isinstance(payload, wire.PermissionRequest) and payload.tool == SANDBOX_NETWORK_TOOL


def _streaming(obj: dict[str, Any]) -> list[AgentEvent]:
    """A ``stream_event`` line: the start of a text or tool_use block, or a piece of it.
    A subagent's stream (``parent_tool_use_id``), thinking and the message's own events
    show nothing."""
    event = obj.get("event")
    if not isinstance(event, dict):
        raise ValueError("stream_event line without an event object")
    index = event.get("index")
    if obj.get("parent_tool_use_id") is not None or type(index) is not int or index < 0:
        return []
    if event.get("type") == "content_block_start":
        block = event.get("content_block")
        btype = block.get("type") if isinstance(block, dict) else None
        if btype == "text":
            return [Streaming(block=index, kind="text", text="", start=True)]
        if btype == "tool_use" and isinstance(block, dict):
            name = block.get("name")
            name = name if isinstance(name, str) else None
            return [Streaming(block=index, kind="tool_input", name=name, text="", start=True)]
    elif event.get("type") == "content_block_delta":
        delta = event.get("delta")
        if not isinstance(delta, dict):
            raise ValueError("content_block_delta without a delta object")
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
            return [Streaming(block=index, kind="text", text=delta["text"])]
        if delta.get("type") == "input_json_delta" and isinstance(delta.get("partial_json"), str):
            return [Streaming(block=index, kind="tool_input", text=delta["partial_json"])]
    return []


def _content_blocks(obj: dict[str, Any]) -> list[dict[str, Any]]:
    message = obj.get("message")
    if not isinstance(message, dict):
        raise ValueError(f"{obj.get('type')} line without a message object")
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, dict)]


@attrs.define(eq=False)
class ClaudeCode:
    """The Claude Code adapter. ``binary`` is a path or a name looked up on ``PATH``."""

    binary: str = "claude"
    extra_args: Sequence[str] = ()
    name: str = "claude"
    #: Ask for replies as they are written (:data:`PARTIAL_ARGS`).
    partial: bool = True
    #: The agent sandboxes its own commands (Claude Code: ``sandbox`` settings); False
    #: wraps the whole process instead (:func:`spawn.sandbox.wrap_argv`).
    native_sandbox: bool = True

    def argv(self, agent_session_id: str, resume: str | None) -> list[str]:
        argv = [self.binary, *STREAM_JSON_ARGS, *(PARTIAL_ARGS if self.partial else ())]
        # Choosing the conversation id up front lets session_started carry it at once.
        argv += ["--resume", resume] if resume else ["--session-id", agent_session_id]
        return argv + list(self.extra_args)

    def earlier(
        self, conversation_id: str, env: Mapping[str, str], directory: str | None
    ) -> list[wire.EventData]:
        """A conversation the CLI had in ``directory``, as events; with None, only the
        check that no running claude has it (see :func:`spawn.transcripts.earlier`).
        Blocking file reads."""
        from .transcripts import earlier

        return earlier(conversation_id, env, directory)

    async def run(
        self,
        launch: AgentLaunch,
        sink: EventSink,
        *,
        task_status: trio.TaskStatus[AgentHandle] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        binary = shutil.which(self.binary, path=launch.env.get("PATH")) or self.binary
        agent_session_id = launch.resume or str(uuid.uuid4())
        argv = self.argv(agent_session_id, launch.resume)
        argv[0] = binary
        options = launch.options
        if options.permission_mode is not None:
            argv += ["--permission-mode", options.permission_mode]
        sandbox = (
            options.sandbox if options.sandbox is not None and options.sandbox.enabled else None
        )
        async with AsyncExitStack() as stack:
            if sandbox is not None:
                writable = await trio.to_thread.run_sync(git_dirs, launch.cwd)
                if self.native_sandbox:
                    argv += ["--settings", claude_settings(sandbox, writable)]
                else:
                    # The agent's own program may live under /tmp, which is private there.
                    own = [os.path.dirname(binary)] if binary.startswith("/tmp/") else []
                    wrapper = wrapped(sandbox, launch.cwd, writable, own)
                    argv = await stack.enter_async_context(wrapper) + argv
            if options.allowed_tools:  # last: it takes every word after it
                argv += ["--allowedTools", *options.allowed_tools]
            hint = INSTALL_HINT if argv[0] == binary else SANDBOX_HINT
            proc = await open_agent_process(
                argv, cwd=launch.cwd, env=launch.env, not_found_hint=hint
            )
            handle = ClaudeHandle(
                proc=proc,
                agent_session_id=agent_session_id,
                sandboxed=sandbox is not None and self.native_sandbox,
            )
            log.info("agent_started", pid=proc.pid, cwd=launch.cwd, resume=launch.resume)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(proc.drain_stderr)
                    task_status.started(handle)
                    await self._pump(handle, sink)
            finally:
                returncode = await proc.terminate()
        detail = "; ".join(proc.stderr_tail)
        await sink(AgentExited(returncode=returncode, expected=handle.stopping, detail=detail))

    async def _keep_in(
        self, handle: ClaudeHandle, request: wire.PermissionRequest, sink: EventSink
    ) -> None:
        host = request.input.get("host", "?")
        why = f"the sandbox keeps {host} out: it is not a --sandbox-allow-host"
        handle.pending[request.request_id] = dict(request.input)
        await handle.answer_permission(request.request_id, "deny", why)
        await sink(wire.Error(code="sandbox_refused", message=why))

    async def _pump(self, handle: ClaudeHandle, sink: EventSink) -> None:
        stdout = handle.proc.process.stdout
        assert stdout is not None
        try:
            async for raw in iter_lines(stdout):
                if not raw.strip():
                    continue
                try:
                    payloads = parse_line(load_line(raw))
                except (ValueError, UnicodeDecodeError) as exc:
                    snippet = raw[:200].decode("utf-8", "replace")
                    await sink(
                        wire.Error(
                            code="agent_protocol",
                            message=f"claude wrote a line rcd cannot read ({exc}): {snippet}",
                        )
                    )
                    continue
                for payload in payloads:
                    if handle.sandboxed and _asks_to_leave_the_sandbox(payload):
                        await self._keep_in(handle, payload, sink)
                        continue
                    if isinstance(payload, wire.PermissionRequest):
                        handle.pending[payload.request_id] = dict(payload.input)
                    elif isinstance(payload, PermissionCancelled):
                        handle.pending.pop(payload.request_id, None)
                    elif isinstance(payload, wire.TurnResult) and payload.cost_usd is not None:
                        total = payload.cost_usd
                        turn_cost = max(0.0, total - handle.cost_so_far)
                        handle.cost_so_far = total
                        payload = attrs.evolve(payload, cost_usd=round(turn_cost, 9))
                    await sink(payload)
        except LineTooLong as exc:
            await sink(wire.Error(code="agent_protocol", message=f"claude output: {exc}"))
