"""A scripted OpenAI Responses API (``POST /v1/responses``, streamed as server-sent
events) for running the real Codex (``codex-acp``) offline, as ``messages_api.py`` is for
Claude Code. What it answers depends on the newest input item:

* the output of a tool call → ``done: <its first line>``;
* a user message ``write PATH CONTENT`` → one ``exec_command`` function call that writes
  ``CONTENT`` to ``PATH``, asking to run outside Codex's own sandbox (so Codex asks for
  approval before running it);
* ``slow SECONDS`` → ``t0001 t0002 …``, a word every 100 ms for SECONDS;
* anything else → ``echo: TEXT``.

Codex reaches it through its config (``model_provider`` with this ``base_url``; see
:func:`codex_home`).
"""

from __future__ import annotations

import itertools
import json
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .messages_api import ClosingStream, serve_fake

__all__ = ["FakeResponsesAPI", "codex_home"]

_ids = itertools.count(1)


def codex_home(home: Path, base_url: str) -> Path:
    """``home/.codex`` with a config that sends Codex to the fake at ``base_url`` (with
    ``OPENAI_API_KEY`` from the environment as its key); returns it (``CODEX_HOME``)."""
    directory = home / ".codex"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.toml").write_text(
        'model_provider = "fake"\n'
        'model = "gpt-5"\n'
        "[model_providers.fake]\n"
        'name = "fake"\n'
        f'base_url = "{base_url}/v1"\n'
        'env_key = "OPENAI_API_KEY"\n'
        'wire_api = "responses"\n'
    )
    return directory


def _event(kind: str, **data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


def _last_input(body: dict[str, Any]) -> dict[str, Any]:
    items = body.get("input")
    return items[-1] if isinstance(items, list) and items else {}


def _text_of(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict))


class FakeResponsesAPI:
    """Serve with :meth:`run`; ``requests`` holds every body it got."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def app(self) -> Starlette:
        responses = Route("/v1/responses", self._responses, methods=["POST"])
        return Starlette(routes=[responses, Route("/{path:path}", self._other)])

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(base_url)`` once listening."""
        await serve_fake(self.app(), task_status.started)

    async def _other(self, request: Request) -> Response:
        return JSONResponse({"error": {"message": "not here"}}, status_code=404)

    async def _responses(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.requests.append(body)
        return ClosingStream(self._stream(body), media_type="text/event-stream")

    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        n = next(_ids)
        response = {"id": f"resp_{n}", "object": "response", "status": "in_progress"}
        yield _event("response.created", response=response)
        last = _last_input(body)
        if last.get("type") == "function_call_output":
            output = last.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            first = text.strip().splitlines()[0] if text.strip() else "(no output)"
            items = [item async for item in self._message(n, [f"done: {first}"])]
        else:
            said = _text_of(last).strip()
            words = said.split()
            if words[:1] == ["write"] and len(words) >= 3:
                path, content = words[1], " ".join(words[2:])
                items = [self._write_call(n, path, content)]
            elif words[:1] == ["slow"] and len(words) == 2:
                count = int(float(words[1]) * 10)
                pieces = [f"t{i:04d} " for i in range(1, count + 1)]
                items = [item async for item in self._message(n, pieces, pause=0.1)]
            else:
                items = [item async for item in self._message(n, [f"echo: {said}"])]
        for chunk in items:
            yield chunk
        usage = {
            "input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        }  # fmt: skip
        yield _event("response.completed", response={**response, "status": "completed",
                                                      "output": [], "usage": usage})  # fmt: skip

    async def _message(self, n: int, pieces: list[str], pause: float = 0.0) -> AsyncIterator[bytes]:
        item_id = f"msg_{n}"
        item = {"type": "message", "id": item_id, "role": "assistant", "status": "in_progress",
                "content": []}  # fmt: skip
        yield _event("response.output_item.added", output_index=0, item=item)
        for piece in pieces:
            if pause:
                await trio.sleep(pause)  # clock: the pace of a slow reply
            yield _event("response.output_text.delta", item_id=item_id, output_index=0,
                         content_index=0, delta=piece)  # fmt: skip
        text = {"type": "output_text", "text": "".join(pieces), "annotations": []}
        done = {**item, "status": "completed", "content": [text]}
        yield _event("response.output_item.done", output_index=0, item=done)

    def _write_call(self, n: int, path: str, content: str) -> bytes:
        arguments = {
            "cmd": f"printf %s {shlex.quote(content)} > {shlex.quote(path)}",
            "sandbox_permissions": "require_escalated",
            "justification": f"write {path}",
        }
        item = {
            "type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}",
            "name": "exec_command", "arguments": json.dumps(arguments), "status": "completed",
        }  # fmt: skip
        return _event("response.output_item.done", output_index=0, item=item)
