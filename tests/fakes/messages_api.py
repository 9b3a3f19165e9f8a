"""A scripted fake of the Anthropic Messages API, for driving the real Claude Code CLI.

The fake answers by *content*, never from a shared queue, so any number of concurrent
sessions can use one instance. For every ``POST /v1/messages`` it looks at the request and
asks its rules, in order, for a reply; the first rule returning something wins:

- the last user message carries a ``tool_result`` → text ``"done: <first 200 chars>"``;
- ``write FILENAME CONTENT...`` → a ``Write`` tool_use ``{"file_path": FILENAME, "content": CONTENT}``
  (pass absolute paths: the API never learns the CLI's working directory);
- ``run COMMAND...`` → a ``Bash`` tool_use ``{"command": COMMAND, "description": "run a command"}``;
- ``sleep SECONDS`` → text streamed slowly, one delta every 100 ms for SECONDS (interrupt tests);
- anything else → text ``"echo: <user text>"``.

Requests that are not a conversation turn (the CLI's side requests, see ``is_side_request``)
always get a short plain text answer and never reach the rules.

Usage::

    api = FakeMessagesAPI()
    async with trio.open_nursery() as nursery:
        base_url = await nursery.start(api.run)
        ...  # run the CLI with ANTHROPIC_BASE_URL=base_url
        nursery.cancel_scope.cancel()

Tests extend the script with ``FakeMessagesAPI(rules=[my_rule, *DEFAULT_RULES])``; a rule is
any callable ``(Turn) -> Reply | None``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "DEFAULT_RULES",
    "FakeMessagesAPI",
    "RecordedRequest",
    "Reply",
    "Rule",
    "TextReply",
    "ToolUseReply",
    "Turn",
    "echo_rule",
    "is_side_request",
    "last_user_text",
    "parse_turn",
    "run_rule",
    "sleep_rule",
    "tool_result_rule",
    "write_rule",
]

SYSTEM_REMINDER = "<system-reminder>"
INTERRUPTED_MARKER = "[Request interrupted by user"
SIDE_REPLY_TEXT = "ok"
DELTA_INTERVAL_S = 0.1


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """One HTTP request the fake received, in arrival order."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any  # the decoded JSON body, or None when there was none / it was not JSON
    side: bool = False  # True for a non-conversation request (see is_side_request)


@attrs.frozen(kw_only=True)
class Turn:
    """What a rule sees of one ``/v1/messages`` request."""

    body: dict[str, Any]
    user_text: str | None  # last user message's own text (system reminders stripped)
    tool_results: tuple[dict[str, Any], ...]  # tool_result blocks of the last user message


@attrs.frozen(kw_only=True)
class TextReply:
    """Answer with text; with ``duration_s`` > 0 it is streamed in 100 ms deltas over that time."""

    text: str
    duration_s: float = 0.0


@attrs.frozen(kw_only=True)
class ToolUseReply:
    """Answer with one ``tool_use`` block (stop_reason ``tool_use``), optionally after some text."""

    name: str
    input: dict[str, Any]
    text: str | None = None


Reply = TextReply | ToolUseReply
Rule = Callable[[Turn], Reply | None]


def _block_text(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                texts.append(str(block.get("text", "")))
    return texts


def _last_user_message(body: dict[str, Any]) -> dict[str, Any] | None:
    # Claude Code appends mid-conversation ``"role": "system"`` messages (environment, deferred
    # tools) after the user's message, so skip those; an assistant message last means no user.
    for message in reversed(body.get("messages") or []):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            return message  # type: ignore[no-any-return]
        if role == "assistant":
            return None
    return None


def _is_noise(block: dict[str, Any]) -> bool:
    if block.get("type") != "text":
        return False
    text = str(block.get("text", "")).lstrip()
    return text.startswith(SYSTEM_REMINDER) or text.startswith(INTERRUPTED_MARKER)


def parse_turn(body: dict[str, Any]) -> Turn:
    """What the rules see of a request: the last user message's own text or tool results.

    Claude Code adds ``<system-reminder>`` text blocks and ``[Request interrupted by user...]``
    markers to user messages, appends ``"role": "system"`` messages after them, and after an
    interrupted tool use sends the tool_result and the next prompt in ONE user message. So:
    noise is skipped, and whichever comes last (typed text or tool_result) decides the turn.
    """
    message = _last_user_message(body)
    content: Any = message.get("content") if message is not None else None
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    blocks = [b for b in content or [] if isinstance(b, dict) and not _is_noise(b)]
    if not blocks:
        return Turn(body=body, user_text=None, tool_results=())
    if blocks[-1].get("type") == "tool_result":
        results = tuple(b for b in blocks if b.get("type") == "tool_result")
        return Turn(body=body, user_text=None, tool_results=results)
    texts = [str(b.get("text", "")) for b in blocks if b.get("type") == "text"]
    return Turn(body=body, user_text=texts[-1].strip() if texts else None, tool_results=())


def last_user_text(body: dict[str, Any]) -> str | None:
    """The text the user typed last in the request (see ``parse_turn``), or None."""
    return parse_turn(body).user_text


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    return "".join(_block_text(content))


def is_side_request(body: dict[str, Any]) -> bool:
    """True for requests that are not a turn of the main conversation.

    Claude Code's main-loop requests always carry its ``tools``; side requests (title or topic
    generation, quota probes with ``max_tokens`` 1, summaries) carry none.
    """
    return not body.get("tools") or body.get("max_tokens") == 1


def tool_result_rule(turn: Turn) -> Reply | None:
    """A tool ran → ``done: <first 200 chars of its result>``."""
    if not turn.tool_results:
        return None
    return TextReply(text="done: " + _tool_result_text(turn.tool_results[0])[:200])


def write_rule(turn: Turn) -> Reply | None:
    """``write FILENAME CONTENT...`` → ``Write`` tool_use (FILENAME should be absolute)."""
    words = (turn.user_text or "").split(" ", 2)
    if len(words) < 2 or words[0] != "write":
        return None
    content = words[2] if len(words) == 3 else ""
    return ToolUseReply(name="Write", input={"file_path": words[1], "content": content})


def run_rule(turn: Turn) -> Reply | None:
    """``run COMMAND...`` → ``Bash`` tool_use."""
    text = turn.user_text or ""
    if not text.startswith("run "):
        return None
    command = text[len("run ") :]
    return ToolUseReply(name="Bash", input={"command": command, "description": "run a command"})


def sleep_rule(turn: Turn) -> Reply | None:
    """``sleep SECONDS`` → text streamed slowly over SECONDS."""
    words = (turn.user_text or "").split()
    if len(words) != 2 or words[0] != "sleep":
        return None
    try:
        seconds = float(words[1])
    except ValueError:
        return None
    return TextReply(text=f"slept {words[1]}", duration_s=seconds)


def echo_rule(turn: Turn) -> Reply | None:
    """Anything else → ``echo: <user text>``."""
    return TextReply(text=f"echo: {turn.user_text or ''}")


DEFAULT_RULES: tuple[Rule, ...] = (tool_result_rule, write_rule, run_rule, sleep_rule, echo_rule)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _chunks(text: str, pieces: int) -> list[str]:
    size = max(1, math.ceil(len(text) / max(1, pieces)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


@attrs.define(eq=False)
class FakeMessagesAPI:
    """The fake server. ``requests`` records every request; ``messages_count`` counts
    ``POST /v1/messages`` requests (side requests included)."""

    rules: Sequence[Rule] = DEFAULT_RULES
    model: str = "claude-fake-1"
    requests: list[RecordedRequest] = attrs.field(factory=list)
    messages_count: int = 0

    # -- queries for tests ---------------------------------------------------------------

    def messages_requests(self, *, include_side: bool = False) -> list[dict[str, Any]]:
        """Bodies of the ``/v1/messages`` requests, main-conversation ones unless asked."""
        return [
            r.body
            for r in self.requests
            if r.path == "/v1/messages" and isinstance(r.body, dict)
            and (include_side or not r.side)
        ]

    # -- the service ---------------------------------------------------------------------

    def app(self) -> Starlette:
        """The ASGI app (usable in-process with ``httpx.ASGITransport`` too)."""
        return Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", self._count_tokens, methods=["POST"]),
                Route("/{rest:path}", self._other, methods=["GET", "POST", "PUT", "HEAD"]),
            ]
        )

    async def run(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; ``task_status.started(base_url)`` once listening.

        ``base_url`` is ``http://127.0.0.1:<port>`` (no trailing slash), ready for
        ``ANTHROPIC_BASE_URL``. Cancelling stops the server and drops open streams.
        """
        config = Config()
        config.bind = [f"{host}:{port}"]
        config.accesslog = None
        config.errorlog = None
        config.loglevel = "WARNING"
        config.graceful_timeout = 0.0

        async def serving(task_status: trio.TaskStatus[list[str]]) -> None:
            await serve(self.app(), config, task_status=task_status)  # type: ignore[arg-type]

        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(serving)
            task_status.started(binds[0])

    # -- handlers ------------------------------------------------------------------------

    async def _record(self, request: Request, *, side: bool = False) -> RecordedRequest:
        raw = await request.body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers=dict(request.headers),
            body=body,
            side=side or (isinstance(body, dict) and is_side_request(body)),
        )
        self.requests.append(record)
        return record

    async def _count_tokens(self, request: Request) -> Response:
        record = await self._record(request, side=True)
        size = len(json.dumps(record.body)) if record.body is not None else 0
        return JSONResponse({"input_tokens": max(1, size // 4)})

    async def _other(self, request: Request) -> Response:
        await self._record(request, side=True)
        return JSONResponse(
            {"type": "error", "error": {"type": "not_found_error", "message": "fake API"}},
            status_code=404,
        )

    async def _messages(self, request: Request) -> Response:
        record = await self._record(request)
        self.messages_count += 1
        body = record.body if isinstance(record.body, dict) else {}
        reply = self._reply_for(body, side=record.side)
        message_id = "msg_" + hashlib.sha256(
            json.dumps(body.get("messages"), sort_keys=True).encode()
        ).hexdigest()[:24]
        model = str(body.get("model") or self.model)
        input_tokens = max(1, len(json.dumps(body.get("messages"))) // 4)
        if body.get("stream"):
            return StreamingResponse(
                self._stream(reply, message_id, model, input_tokens),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        if isinstance(reply, TextReply) and reply.duration_s > 0:
            await trio.sleep(reply.duration_s)
        return JSONResponse(
            {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": _content_blocks(reply, message_id),
                "stop_reason": "tool_use" if isinstance(reply, ToolUseReply) else "end_turn",
                "stop_sequence": None,
                "usage": _usage(input_tokens, 5),
            }
        )

    def _reply_for(self, body: dict[str, Any], *, side: bool) -> Reply:
        if side:
            return TextReply(text=SIDE_REPLY_TEXT)
        turn = parse_turn(body)
        for rule in self.rules:
            reply = rule(turn)
            if reply is not None:
                return reply
        return TextReply(text=SIDE_REPLY_TEXT)

    async def _stream(
        self, reply: Reply, message_id: str, model: str, input_tokens: int
    ) -> AsyncIterator[bytes]:
        yield _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": _usage(input_tokens, 1),
                },
            },
        )
        index = 0
        text = reply.text
        if text is not None:
            duration = reply.duration_s if isinstance(reply, TextReply) else 0.0
            pieces = max(1, round(duration / DELTA_INTERVAL_S)) if duration > 0 else 1
            yield _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index,
                 "content_block": {"type": "text", "text": ""}},
            )
            for n, piece in enumerate(_chunks(text, pieces) if pieces > 1 else [text]):
                if duration > 0 and n > 0:
                    await trio.sleep(DELTA_INTERVAL_S)
                yield _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index,
                     "delta": {"type": "text_delta", "text": piece}},
                )
            if duration > 0:
                # Pad with empty deltas so the stream lasts the whole duration even for short text.
                remaining = pieces - len(_chunks(text, pieces))
                for _ in range(max(0, remaining)):
                    await trio.sleep(DELTA_INTERVAL_S)
                    yield _sse(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index,
                         "delta": {"type": "text_delta", "text": "."}},
                    )
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
        if isinstance(reply, ToolUseReply):
            yield _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index,
                 "content_block": {"type": "tool_use", "id": _tool_use_id(message_id),
                                   "name": reply.name, "input": {}}},
            )
            partial = json.dumps(reply.input)
            for piece in _chunks(partial, 2):
                yield _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index,
                     "delta": {"type": "input_json_delta", "partial_json": piece}},
                )
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        stop_reason = "tool_use" if isinstance(reply, ToolUseReply) else "end_turn"
        yield _sse(
            "message_delta",
            {"type": "message_delta",
             "delta": {"stop_reason": stop_reason, "stop_sequence": None},
             "usage": {"output_tokens": 5}},
        )
        yield _sse("message_stop", {"type": "message_stop"})


def _tool_use_id(message_id: str) -> str:
    return "toolu_" + message_id.removeprefix("msg_")


def _content_blocks(reply: Reply, message_id: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.text is not None:
        blocks.append({"type": "text", "text": reply.text})
    if isinstance(reply, ToolUseReply):
        blocks.append(
            {"type": "tool_use", "id": _tool_use_id(message_id), "name": reply.name,
             "input": reply.input}
        )
    return blocks


def main(argv: Iterable[str] | None = None) -> None:
    """``python -m tests.fakes.messages_api --port N``: serve until Ctrl-C, logging requests."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", action="store_true", help="print each request as a JSON line")
    args = parser.parse_args(list(argv) if argv is not None else None)
    api = FakeMessagesAPI()

    async def serve_forever() -> None:
        async with trio.open_nursery() as nursery:
            base_url = await nursery.start(lambda task_status: api.run(
                host=args.host, port=args.port, task_status=task_status))
            print(f"ANTHROPIC_BASE_URL={base_url}", flush=True)
            if args.log:
                seen = 0
                while True:
                    await trio.sleep(0.2)
                    for record in api.requests[seen:]:
                        print(json.dumps(attrs.asdict(record)), flush=True)
                    seen = len(api.requests)

    try:
        trio.run(serve_forever)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
