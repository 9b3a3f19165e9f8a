"""One Agent Client Protocol agent's side of the conversation (see :mod:`spawn.acp`): the
JSON-RPC framing on its stdio, and its messages mapped onto rcd's events. An
:class:`AcpHandle` is what the session runtime drives; :class:`~spawn.acp.AcpAgent` starts
the agent and opens its session."""

from __future__ import annotations

import itertools
import secrets
import time
from contextlib import aclosing
from typing import Any

import attrs
import structlog
import trio

import wire

from .acp_content import offered, text_of, tool_output, tool_use
from .adapter import (
    EventSink,
    PermissionCancelled,
    Streaming,
)
from .lines import LineTooLong, iter_lines, json_line, load_line
from .process import AgentProcess

__all__ = ["AcpHandle", "AgentRefused", "PROTOCOL_VERSION", "ProtocolBroken"]

log = structlog.get_logger("spawn.acp")

PROTOCOL_VERSION = 1
_ALLOW = ("allow_once", "allow_always")
_REJECT = ("reject_once", "reject_always")


class ProtocolBroken(Exception):
    """The agent said something ACP does not allow: the session ends with this message."""


class AgentRefused(Exception):
    """The agent answered a request of ours with a JSON-RPC error."""

    def __init__(self, method: str, error: Any) -> None:
        message = error.get("message") if isinstance(error, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        self.code: int | None = code if isinstance(code, int) else None
        super().__init__(f"{method}: {message or error}")


@attrs.define(eq=False)
class _Permission:
    rpc_id: Any
    options: list[dict[str, Any]]


@attrs.define(eq=False)
class AcpHandle:
    """One running ACP agent and its one session."""

    proc: AgentProcess
    name: str
    sink: EventSink
    partial: bool = True
    stopping: bool = False
    session: str | None = None
    _ids: itertools.count[int] = attrs.Factory(lambda: itertools.count(1))
    #: Our requests waiting for their answer: id → (method, where the answer goes).
    _calls: dict[int, tuple[str, trio.MemorySendChannel[dict[str, Any]]]] = attrs.Factory(dict)
    #: The prompt in flight (its request id) and when it went.
    _prompt: tuple[int, float] | None = None
    #: Open permission requests, by the request id rcd shows.
    _permissions: dict[str, _Permission] = attrs.Factory(dict)
    #: The reply being written in this turn: its block number and its text so far.
    _block: int = 0
    _text: list[str] = attrs.Factory(list)
    #: ``session/load`` replays the conversation: nothing of it is new.
    _loading: bool = False
    #: The turn was interrupted and its answer has not come yet.
    _cancelled: bool = False
    #: What the agent's ``usage_update`` says the session has cost so far (USD), and what
    #: of it earlier turns' results counted: a turn's cost is the difference.
    _cost: float | None = None
    _cost_counted: float = 0.0
    #: Tool calls announced without their input yet (Claude's adapter sends it in a later
    #: ``tool_call_update``): shown once it comes, or when anything about them happens.
    _held: dict[str, dict[str, Any]] = attrs.Factory(dict)
    #: Tool names by tool call id, as ``tool_call`` gave them (a permission request's own
    #: copy of the call may lack it).
    _tools: dict[str, str] = attrs.Factory(dict)
    #: Makes this process's permission request ids unique in the session's log (a resumed
    #: session's new agent process counts its JSON-RPC ids from the start again).
    _nonce: str = attrs.Factory(lambda: secrets.token_hex(4))

    @property
    def agent_session_id(self) -> str | None:
        return self.session

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    # -- JSON-RPC ---------------------------------------------------------------------

    async def _write(self, message: dict[str, Any]) -> None:
        try:
            await self.proc.write_line(json_line({"jsonrpc": "2.0", **message}))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.info("agent_stdin_closed", pid=self.proc.pid)

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """Send a request and wait for its result (AgentRefused for an error answer)."""
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        request_id = next(self._ids)
        self._calls[request_id] = (method, send)
        await self._write({"id": request_id, "method": method, "params": params})
        answer = await receive.receive()
        if "error" in answer:
            raise AgentRefused(method, answer["error"])
        return answer.get("result")

    async def _answer(self, rpc_id: Any, result: Any = None, error: Any = None) -> None:
        body = {"error": error} if error is not None else {"result": result}
        await self._write({"id": rpc_id, **body})

    # -- what the session runtime calls ---------------------------------------------

    def send_message_now(self, text: str) -> bool:
        return False  # a prompt is a request whose answer ends the turn: it goes in order

    async def send_message(self, text: str) -> None:
        if self.session is None:
            return
        request_id = next(self._ids)
        self._prompt = (request_id, time.monotonic())
        self._block += 1
        self._text.clear()
        params = {"sessionId": self.session, "prompt": [{"type": "text", "text": text}]}
        await self._write({"id": request_id, "method": "session/prompt", "params": params})

    async def answer_permission(
        self, request_id: str, decision: wire.Decision, message: str | None
    ) -> None:
        asked = self._permissions.pop(request_id, None)
        if asked is None:
            return
        kinds = _ALLOW if decision == "allow" else _REJECT
        chosen = next((o for kind in kinds for o in asked.options if o.get("kind") == kind), None)
        if chosen is None:
            outcome: dict[str, Any] = {"outcome": "cancelled"}
            # The log says who decided what; this says what the agent was told instead.
            said = f"{self.name} offers no option to {decision} this (it offers: "
            said += f"{offered(asked.options) or 'none'}): it was answered cancelled"
            await self.sink(wire.Error(code="decision_not_offered", message=said))
        else:
            outcome = {"outcome": "selected", "optionId": chosen.get("optionId")}
        await self._answer(asked.rpc_id, {"outcome": outcome})

    async def interrupt(self) -> None:
        if self.session is None or self._prompt is None:
            return
        # Until the prompt's answer comes, whatever the agent still asks is answered
        # cancelled at once: it crossed the cancel, and the turn is over for the phone.
        self._cancelled = True
        await self._write({"method": "session/cancel", "params": {"sessionId": self.session}})
        await self._cancel_open()

    async def _cancel_open(self) -> None:
        """Answer every open permission request ``cancelled`` (the protocol's rule once a
        turn is cancelled or over), and withdraw it from the session."""
        for request_id in list(self._permissions):
            # Another task (the turn's end, an interrupt) may have withdrawn it meanwhile.
            asked = self._permissions.pop(request_id, None)
            if asked is None:
                continue
            # The session hears of it before the agent does: a quick agent's reply to the
            # answer (its turn's end) must not reach the log ahead of the withdrawal.
            await self.sink(PermissionCancelled(request_id=request_id))
            await self._answer(asked.rpc_id, {"outcome": {"outcome": "cancelled"}})

    async def stop(self, grace: float) -> None:
        self.stopping = True
        await self.proc.terminate(grace)

    # -- what the agent says --------------------------------------------------------

    async def pump(self) -> None:
        """Read the agent's messages until it closes stdout; ProtocolBroken when one
        breaks the protocol."""
        stdout = self.proc.process.stdout
        assert stdout is not None
        try:
            async with aclosing(iter_lines(stdout)) as lines:
                async for raw in lines:
                    if raw.strip():
                        await self._line(raw)
        except LineTooLong as exc:
            raise ProtocolBroken(str(exc)) from None

    async def _line(self, raw: bytes) -> None:
        try:
            # As the relay will store it (no NaN, integers that fit: see lines.load_line).
            message = load_line(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            snippet = raw[:200].decode("utf-8", "replace")
            raise ProtocolBroken(f"a line that is not JSON ({exc}): {snippet}") from None
        if not isinstance(message, dict):
            raise ProtocolBroken(f"a message that is not an object: {str(message)[:200]}")
        try:
            await self._receive(message)
        except ProtocolBroken:
            raise
        except Exception as exc:  # a shape rcd cannot read: the session ends, not the daemon
            what = f"{type(exc).__name__}: {exc}"[:200]
            raise ProtocolBroken(f"a message rcd cannot read ({what})") from exc

    async def _receive(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:
            await self._response(message)
        elif not isinstance(method, str):
            raise ProtocolBroken(f"a method that is not a name: {str(method)[:80]}")
        elif "id" in message:
            await self._request(message["id"], method, message.get("params"))
        else:
            await self._notification(method, message.get("params"))

    async def _response(self, message: dict[str, Any]) -> None:
        rpc_id = message.get("id")
        if self._prompt is not None and rpc_id == self._prompt[0]:
            await self._turn_ended(message)
            return
        waiting = self._calls.pop(rpc_id, None) if isinstance(rpc_id, int) else None
        if waiting is None:
            raise ProtocolBroken(f"an answer to no request of rcd's (id {str(rpc_id)[:40]})")
        waiting[1].send_nowait(message)

    async def _request(self, rpc_id: Any, method: str, params: Any) -> None:
        if method == "session/request_permission":
            if not isinstance(params, dict):
                raise ProtocolBroken("session/request_permission without its params")
            await self._permission(rpc_id, params)
        elif method.startswith("_") or method.startswith(("fs/", "terminal/")):
            # Extensions, and what rcd did not offer in its capabilities: refused, harmless.
            error = {"code": -32601, "message": f"rcd does not offer {method}"}
            await self._answer(rpc_id, error=error)
        else:
            await self._answer(
                rpc_id, error={"code": -32601, "message": f"unknown method {method}"}
            )
            raise ProtocolBroken(f"a request rcd does not know: {method[:80]}")

    async def _notification(self, method: str, params: Any) -> None:
        if method == "session/update" and isinstance(params, dict):
            update = params.get("update")
            if isinstance(update, dict) and not self._loading:
                await self._update(update)
        elif not method.startswith("_"):
            raise ProtocolBroken(f"a notification rcd does not know: {method[:80]}")

    async def _update(self, update: dict[str, Any]) -> None:
        kind = update.get("sessionUpdate")
        if kind == "agent_message_chunk":
            text = text_of(update.get("content"))
            if text:
                first = not self._text
                self._text.append(text)
                if self.partial:
                    await self.sink(
                        Streaming(block=self._block, kind="text", text=text, start=first)
                    )
        elif kind == "tool_call":
            await self._flush()
            use = tool_use(update)
            self._tools[use.id] = use.name
            if use.input:
                await self.sink(use)
            else:
                self._held[use.id] = dict(update)
        elif kind == "tool_call_update":
            call_id = str(update.get("toolCallId", ""))
            if call_id in self._held and update.get("rawInput") not in (None, {}):
                self._held[call_id]["rawInput"] = update["rawInput"]
                await self._release_tools(call_id)
            if update.get("status") not in ("completed", "failed"):
                return
            await self._release_tools(call_id)
            await self.sink(
                wire.ToolResult(
                    tool_use_id=str(update.get("toolCallId", "")),
                    content=tool_output(update),
                    is_error=update.get("status") == "failed",
                )
            )
        elif kind == "plan":
            await self._flush()
            entries = update.get("entries")
            entries = entries if isinstance(entries, list) else []
            lines = [
                f"- [{'x' if e.get('status') == 'completed' else ' '}] {e.get('content', '')}"
                for e in entries
                if isinstance(e, dict)
            ]
            if lines:
                await self.sink(wire.AssistantText(text="Plan:\n" + "\n".join(lines)))
        elif kind == "usage_update":
            cost = update.get("cost")
            amount = cost.get("amount") if isinstance(cost, dict) else None
            if isinstance(amount, int | float) and cost.get("currency") == "USD":  # type: ignore[union-attr]
                self._cost = float(amount)
        # Thoughts, available commands, mode changes: nothing rcd shows yet.

    async def _release_tools(self, call_id: str | None = None) -> None:
        """Show the held tool call ``call_id`` (every one, with None) as it is now."""
        for held in [call_id] if call_id is not None else list(self._held):
            call = self._held.pop(held, None)
            if call is not None:
                use = tool_use(call)
                await self.sink(attrs.evolve(use, name=self._tools.get(use.id, use.name)))

    async def _flush(self) -> None:
        if self._text:
            text = "".join(self._text)
            self._text.clear()
            self._block += 1
            await self.sink(wire.AssistantText(text=text))

    async def _turn_ended(self, message: dict[str, Any]) -> None:
        assert self._prompt is not None
        started = self._prompt[1]
        self._prompt = None
        self._cancelled = False
        await self._cancel_open()
        await self._release_tools()
        await self._flush()
        ms = int((time.monotonic() - started) * 1000)
        if "error" in message:
            error = message["error"]
            text = error.get("message") if isinstance(error, dict) else str(error)
            await self.sink(wire.Error(code="agent_error", message=f"{self.name}: {text}"))
            await self.sink(wire.TurnResult(ok=False, duration_ms=ms, cost_usd=None))
            return
        result = message.get("result")
        reason = result.get("stopReason") if isinstance(result, dict) else None
        cost = None
        if self._cost is not None:  # the session's total so far: this turn's share
            cost = round(max(0.0, self._cost - self._cost_counted), 9)
            self._cost_counted = self._cost
        await self.sink(wire.TurnResult(ok=reason == "end_turn", duration_ms=ms, cost_usd=cost))

    async def _permission(self, rpc_id: Any, params: dict[str, Any]) -> None:
        if self._cancelled:
            await self._answer(rpc_id, {"outcome": {"outcome": "cancelled"}})
            return
        call = params.get("toolCall")
        call = call if isinstance(call, dict) else {}
        given = params.get("options")
        options = [o for o in given if isinstance(o, dict)] if isinstance(given, list) else []
        # 1 and "1" are two ids: kept apart.
        kind = "n" if isinstance(rpc_id, int) else "s"
        request_id = f"acp-{self._nonce}-{kind}{rpc_id}"
        await self._release_tools(str(call.get("toolCallId", "")))
        self._permissions[request_id] = _Permission(rpc_id=rpc_id, options=options)
        await self._flush()
        title = str(call.get("title") or "")
        named = offered(options)
        use = tool_use(call)
        await self.sink(
            wire.PermissionRequest(
                request_id=request_id,
                tool=self._tools.get(use.id, use.name),
                input=use.input,
                description=f"{title} (the agent offers: {named})" if named else title,
            )
        )
