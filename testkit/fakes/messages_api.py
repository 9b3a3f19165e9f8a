"""A scripted fake of the Anthropic Messages API, for driving the real Claude Code CLI.

The fake answers by *content*, never from a shared queue, so any number of concurrent
sessions can share one instance. For each main-conversation ``POST /v1/messages`` it parses
the request into a ``Turn`` and asks its rules, in order; the first non-None ``Reply`` wins.
``DEFAULT_RULES``:

- the last user message ends with ``tool_result`` blocks → text ``"done: <first 200 chars>"``;
- ``write FILENAME CONTENT...`` → ``Write`` tool_use ``{"file_path": FILENAME, "content": CONTENT}``
  (pass an absolute FILENAME: the API never learns the CLI's working directory);
- ``run COMMAND...`` → ``Bash`` tool_use ``{"command": COMMAND, "description": "run a command"}``;
- ``sleep SECONDS`` → text ``"slept SECONDS"`` streamed over SECONDS, one delta per 100 ms;
- ``slow SECONDS`` → text ``"t0001 t0002 …"`` streamed over SECONDS, one word per 100 ms
  (every delta adds text: a reply that visibly grows);
- anything else → text ``"echo: <user text>"``.

Side requests (not a turn of the conversation, see ``is_side_request``) get the plain text
``"ok"`` and never reach the rules. Every request is recorded in ``requests``.

Usage::

    api = FakeMessagesAPI()                       # or FakeMessagesAPI(rules=[mine, *DEFAULT_RULES])
    async with trio.open_nursery() as nursery:
        base_url = await nursery.start(api.run)   # "http://127.0.0.1:<port>"
        ...                                       # run claude with ANTHROPIC_BASE_URL=base_url
        nursery.cancel_scope.cancel()

By hand: ``python -m testkit.fakes.messages_api --port 8123 [--log]``.

(Over 400 lines on purpose: one fake server, its script language and the streaming it
answers with, which must change together.)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
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
    "ErrorReply",
    "FakeMessagesAPI",
    "RecordedRequest",
    "Reply",
    "Rule",
    "TextReply",
    "ToolUseReply",
    "Turn",
    "echo_rule",
    "recall_rule",
    "is_side_request",
    "parse_turn",
    "run_rule",
    "sleep_rule",
    "slow_rule",
    "tool_result_rule",
    "write_rule",
]

SYSTEM_REMINDER = "<system-reminder>"
INTERRUPTED_MARKER = "[Request interrupted by user"
SIDE_REPLY_TEXT = "ok"
DELTA_INTERVAL_S = 0.1
TOOL_RESULT_PREFIX_CHARS = 200

JSON = dict[str, Any]


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """One HTTP request the fake received, in arrival order."""

    method: str
    path: str  # without the query, e.g. "/v1/messages"
    query: str  # e.g. "beta=true"
    headers: dict[str, str]
    body: Any  # decoded JSON body; None when empty or not JSON
    side: bool  # True for anything that is not a main-conversation /v1/messages request


@attrs.frozen(kw_only=True)
class Turn:
    """What a rule sees of one main-conversation ``/v1/messages`` request."""

    body: JSON
    user_text: str | None  # what the user typed last, stripped; None when tool results are last
    tool_results: tuple[JSON, ...]  # the tool_result blocks, when they end the last user message


@attrs.frozen(kw_only=True)
class TextReply:
    """Answer with text. With ``duration_s`` > 0 the stream lasts that long, one delta per 100 ms
    (deltas past the end of the text are empty), so a client can interrupt it midway."""

    text: str
    duration_s: float = 0.0


@attrs.frozen(kw_only=True)
class ToolUseReply:
    """Answer with one ``tool_use`` block (stop_reason ``tool_use``), after ``text`` if given."""

    name: str
    input: JSON
    text: str | None = None


@attrs.frozen(kw_only=True)
class ErrorReply:
    """Answer with an HTTP error in the API's shape, e.g. ``ErrorReply(status=400,
    error_type="invalid_request_error")``. The CLI retries 408/409/429/5xx (see NOTES.md)."""

    status: int
    error_type: str
    message: str = "scripted error from the fake Messages API"


Reply = TextReply | ToolUseReply | ErrorReply
Rule = Callable[[Turn], Reply | None]


# -- reading requests --------------------------------------------------------------------


def _last_user_message(body: JSON) -> JSON | None:
    # Claude Code puts "role": "system" messages (environment, deferred tools) after the user's
    # message, so skip those; an assistant message last means there is no user turn.
    for message in reversed(body.get("messages") or []):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            return message  # type: ignore[no-any-return]
        if role == "assistant":
            return None
    return None


def _is_noise(block: JSON) -> bool:
    if block.get("type") != "text":
        return False
    text = str(block.get("text", "")).lstrip()
    return text.startswith((SYSTEM_REMINDER, INTERRUPTED_MARKER))


def parse_turn(body: JSON) -> Turn:
    """Find what the user said last in a request body.

    Claude Code adds ``<system-reminder>`` text blocks and ``[Request interrupted by user...]``
    markers to user messages, and after an interrupted or denied tool use it sends the
    tool_result and the next prompt in ONE user message. So noise is skipped and whichever
    comes last, typed text or tool results, decides the turn.
    """
    message = _last_user_message(body)
    content: Any = message.get("content") if message is not None else None
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    blocks = [b for b in content or [] if isinstance(b, dict) and not _is_noise(b)]
    if blocks and blocks[-1].get("type") == "tool_result":
        results = tuple(b for b in blocks if b.get("type") == "tool_result")
        return Turn(body=body, user_text=None, tool_results=results)
    texts = [str(b.get("text", "")) for b in blocks if b.get("type") == "text"]
    return Turn(body=body, user_text=texts[-1].strip() if texts else None, tool_results=())


def is_side_request(body: JSON) -> bool:
    """True for a ``/v1/messages`` request that is not a turn of the main conversation.

    Main-loop requests always carry Claude Code's ``tools``; its side requests (title/topic
    generation, ``max_tokens: 1`` quota probes, summaries) carry none. None were observed with
    ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` and ``-p`` (see NOTES.md).
    """
    return not body.get("tools") or body.get("max_tokens") == 1


def _tool_result_text(block: JSON) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [b for b in content if isinstance(b, dict) and b.get("type") == "text"]
        return "".join(str(b.get("text", "")) for b in texts)
    return ""


# -- the default script ------------------------------------------------------------------


def tool_result_rule(turn: Turn) -> Reply | None:
    """A tool ran (or was denied) → ``done: <first 200 chars of the first result>``."""
    if not turn.tool_results:
        return None
    result = _tool_result_text(turn.tool_results[0])
    return TextReply(text="done: " + result[:TOOL_RESULT_PREFIX_CHARS])


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
    return ToolUseReply(
        name="Bash", input={"command": text.removeprefix("run "), "description": "run a command"}
    )


def _seconds(turn: Turn, verb: str) -> float | None:
    """SECONDS of a user text ``VERB SECONDS``, else None."""
    words = (turn.user_text or "").split()
    if len(words) != 2 or words[0] != verb:
        return None
    try:
        return float(words[1])
    except ValueError:
        return None


def sleep_rule(turn: Turn) -> Reply | None:
    """``sleep SECONDS`` → text ``slept SECONDS`` streamed over SECONDS."""
    seconds = _seconds(turn, "sleep")
    if seconds is None:
        return None
    return TextReply(text=f"slept {(turn.user_text or '').split()[1]}", duration_s=seconds)


def slow_rule(turn: Turn) -> Reply | None:
    """``slow SECONDS`` → one word per delta (``t0001 t0002 …``) over SECONDS."""
    seconds = _seconds(turn, "slow")
    if seconds is None:
        return None
    ticks = max(1, round(seconds / DELTA_INTERVAL_S))
    return TextReply(text="".join(f"t{n:04d} " for n in range(1, ticks + 1)), duration_s=seconds)


def _typed(message: JSON) -> str | None:
    content = message.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    blocks = [b for b in content or [] if isinstance(b, dict) and not _is_noise(b)]
    if not blocks or any(b.get("type") != "text" for b in blocks):
        return None
    return str(blocks[-1].get("text", "")).strip() or None


def recall_rule(turn: Turn) -> Reply | None:
    """``recall`` → ``recalled: A | B`` with what the user typed in every earlier turn of
    the conversation the request carries (what an agent that kept the context knows)."""
    if turn.user_text != "recall":
        return None
    messages = [m for m in turn.body.get("messages") or [] if isinstance(m, dict)]
    typed = [t for m in messages if m.get("role") == "user" and (t := _typed(m))]
    return TextReply(text="recalled: " + " | ".join(t for t in typed if t != "recall"))


def echo_rule(turn: Turn) -> Reply | None:
    """Anything else → ``echo: <user text>``."""
    return TextReply(text=f"echo: {turn.user_text or ''}")


DEFAULT_RULES: tuple[Rule, ...] = (
    tool_result_rule,
    write_rule,
    run_rule,
    sleep_rule,
    slow_rule,
    recall_rule,
    echo_rule,
)


# -- writing responses -------------------------------------------------------------------


def _sse(event: str, data: JSON) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _usage(input_tokens: int, output_tokens: int) -> JSON:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _split(text: str, pieces: int) -> list[str]:
    """``text`` in exactly ``pieces`` consecutive parts (trailing ones empty if it is short)."""
    size = -(-len(text) // pieces) if text else 0
    return [text[i * size : (i + 1) * size] if size else "" for i in range(pieces)]


@attrs.frozen(kw_only=True)
class _Answer:
    reply: TextReply | ToolUseReply
    message_id: str
    model: str
    input_tokens: int

    @property
    def tool_use_id(self) -> str:
        return "toolu_" + self.message_id.removeprefix("msg_")

    @property
    def stop_reason(self) -> str:
        return "tool_use" if isinstance(self.reply, ToolUseReply) else "end_turn"

    def message(self, content: list[JSON], stop_reason: str | None, output_tokens: int) -> JSON:
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": _usage(self.input_tokens, output_tokens),
        }

    def content(self) -> list[JSON]:
        blocks: list[JSON] = []
        if self.reply.text is not None:
            blocks.append({"type": "text", "text": self.reply.text})
        if isinstance(self.reply, ToolUseReply):
            blocks.append(
                {
                    "type": "tool_use",
                    "id": self.tool_use_id,
                    "name": self.reply.name,
                    "input": self.reply.input,
                }
            )
        return blocks

    async def stream(self) -> AsyncGenerator[bytes, None]:
        """The SSE events of a streamed answer, paced as the reply asks."""
        yield _sse("message_start", {"type": "message_start", "message": self.message([], None, 1)})
        index = 0
        if self.reply.text is not None:
            duration = self.reply.duration_s if isinstance(self.reply, TextReply) else 0.0
            ticks = max(1, round(duration / DELTA_INTERVAL_S))
            yield _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for n, piece in enumerate(_split(self.reply.text, ticks)):
                if n:
                    await trio.sleep(DELTA_INTERVAL_S)
                yield _sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
        if isinstance(self.reply, ToolUseReply):
            yield _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {
                        "type": "tool_use",
                        "id": self.tool_use_id,
                        "name": self.reply.name,
                        "input": {},
                    },
                },
            )
            for piece in _split(json.dumps(self.reply.input), 2):  # two deltas, like the real API
                yield _sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        yield _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
        )
        yield _sse("message_stop", {"type": "message_stop"})


# -- the service -------------------------------------------------------------------------


async def serve_fake(
    app: Starlette, started: Callable[[str], None], *, host: str = "127.0.0.1", port: int = 0
) -> None:
    """Serve ``app`` (a fake service) with Hypercorn until cancelled, calling
    ``started(base_url)`` once it listens; cancelling drops open streams at once."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.0

    async def serving(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(app, config, task_status=task_status)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        # hypercorn reports its binds ("http://127.0.0.1:<port>") once its sockets listen.
        binds: list[str] = await nursery.start(serving)
        started(binds[0])


class ClosingStream(StreamingResponse):
    """A streamed answer whose generator is closed however the stream ends: a client that
    goes away mid-answer (an interrupted turn) leaves none for the garbage collector."""

    async def stream_response(self, send: Any) -> None:
        body = self.body_iterator
        try:
            await super().stream_response(send)
        finally:
            close = getattr(body, "aclose", None)
            if close is not None:
                with trio.CancelScope(shield=True):
                    await close()


@attrs.define(eq=False)
class FakeMessagesAPI:
    """The fake server (a resource: one per test, or shared by concurrent sessions).

    ``requests`` records every request; ``messages_count`` counts ``POST /v1/messages``
    requests, side requests included. ``side_request`` picks the requests that bypass the
    rules. ``base_url`` is set once ``run`` listens.
    """

    rules: Sequence[Rule] = DEFAULT_RULES
    side_request: Callable[[JSON], bool] = is_side_request
    requests: list[RecordedRequest] = attrs.field(factory=list)
    #: When each streamed text delta went out: (message id, its index, ``time.monotonic()``,
    #: a clock every process of the machine shares), the newest 10,000; served at
    #: ``GET /_fake/deltas`` for benchmarks in other processes.
    deltas: collections.deque[tuple[str, int, float]] = attrs.field(
        factory=lambda: collections.deque(maxlen=10_000)
    )
    messages_count: int = 0
    base_url: str | None = None  # set by run() once listening

    def messages_bodies(self, *, include_side: bool = False) -> list[JSON]:
        """Bodies of the ``/v1/messages`` requests in order (main-conversation ones by default)."""
        return [
            r.body
            for r in self.requests
            if r.path == "/v1/messages"
            and isinstance(r.body, dict)
            and (include_side or not r.side)
        ]

    def app(self) -> Starlette:
        """The ASGI app; also usable in-process through ``httpx.ASGITransport``."""
        return Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", self._count_tokens, methods=["POST"]),
                Route("/_fake/deltas", self._deltas, methods=["GET"]),
                Route("/{rest:path}", self._other, methods=["GET", "HEAD", "POST", "PUT"]),
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

        ``base_url`` is ``"http://127.0.0.1:<bound port>"`` (no trailing slash). Cancelling
        stops at once: open streams are dropped, with no graceful wait.
        """

        def started(base_url: str) -> None:
            self.base_url = base_url
            task_status.started(base_url)

        await serve_fake(self.app(), started, host=host, port=port)

    async def _record(self, request: Request, *, side: bool | None = None) -> RecordedRequest:
        raw = await request.body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        if side is None:
            side = not isinstance(body, dict) or self.side_request(body)
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers=dict(request.headers),
            body=body,
            side=side,
        )
        self.requests.append(record)
        return record

    async def _deltas(self, request: Request) -> Response:
        return JSONResponse(
            {"deltas": [{"message_id": m, "n": n, "at": at} for m, n, at in self.deltas]}
        )

    async def _timed(self, answer: _Answer) -> AsyncIterator[bytes]:
        """``answer.stream()``, noting when each text delta goes out (see ``deltas``)."""
        n = 0
        # Closed when the client goes away mid-stream (an interrupted turn), not left to
        # the garbage collector.
        async with aclosing(answer.stream()) as chunks:
            async for chunk in chunks:
                if b'"text_delta"' in chunk:
                    self.deltas.append((answer.message_id, n, time.monotonic()))
                    n += 1
                yield chunk

    async def _count_tokens(self, request: Request) -> Response:
        record = await self._record(request, side=True)
        return JSONResponse({"input_tokens": max(1, len(json.dumps(record.body)) // 4)})

    async def _other(self, request: Request) -> Response:
        await self._record(request, side=True)
        if request.method in ("GET", "HEAD"):  # e.g. HEAD /api/hello, a connectivity check
            return JSONResponse({})
        return _error_response(ErrorReply(status=404, error_type="not_found_error"))

    async def _messages(self, request: Request) -> Response:
        record = await self._record(request)
        self.messages_count += 1
        body: JSON = record.body if isinstance(record.body, dict) else {}
        reply = self._reply_for(body, side=record.side)
        if isinstance(reply, ErrorReply):
            return _error_response(reply)
        messages_json = json.dumps(body.get("messages"), sort_keys=True)
        answer = _Answer(
            reply=reply,
            # Deterministic ids: the same conversation state always gets the same answer.
            message_id="msg_" + hashlib.sha256(messages_json.encode()).hexdigest()[:24],
            model=str(body.get("model") or "claude-fake"),
            input_tokens=max(1, len(messages_json) // 4),
        )
        if body.get("stream"):
            return ClosingStream(
                self._timed(answer),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        if isinstance(reply, TextReply) and reply.duration_s > 0:
            await trio.sleep(reply.duration_s)
        return JSONResponse(answer.message(answer.content(), answer.stop_reason, 5))

    def _reply_for(self, body: JSON, *, side: bool) -> Reply:
        if side:
            return TextReply(text=SIDE_REPLY_TEXT)
        turn = parse_turn(body)
        for rule in self.rules:
            reply = rule(turn)
            if reply is not None:
                return reply
        return TextReply(text=SIDE_REPLY_TEXT)


def _error_response(reply: ErrorReply) -> Response:
    return JSONResponse(
        {"type": "error", "error": {"type": reply.error_type, "message": reply.message}},
        status_code=reply.status,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m testkit.fakes.messages_api [--host H] [--port N] [--log]``: serve until Ctrl-C.

    Prints ``ANTHROPIC_BASE_URL=...`` once listening; ``--log`` prints each request as JSON.
    """
    parser = argparse.ArgumentParser(description="Scripted fake Anthropic Messages API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", action="store_true", help="print each request as a JSON line")
    args = parser.parse_args(argv)
    api = FakeMessagesAPI()

    async def serve_forever() -> None:
        async with trio.open_nursery() as nursery:
            base_url = await nursery.start(
                lambda task_status: api.run(host=args.host, port=args.port, task_status=task_status)
            )
            print(f"ANTHROPIC_BASE_URL={base_url}", flush=True)
            seen = 0
            while True:
                await trio.sleep(0.2)
                if args.log:
                    for record in api.requests[seen:]:
                        print(json.dumps(attrs.asdict(record)), flush=True)
                seen = len(api.requests)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve_forever)


if __name__ == "__main__":
    main()
