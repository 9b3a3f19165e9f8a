"""A scripted agent speaking the Agent Client Protocol on stdio, for the tests of
``spawn/acp.py`` (run as ``python -m testkit.fakes.acp_agent``). Each prompt's text says
what it does:

* ``write PATH CONTENT`` — a ``tool_call`` (edit, ``rawInput`` ``{file_path, content}``),
  then ``session/request_permission`` with three options (allow once, always, reject);
  writes the file if an allow option was selected; replies ``done`` / ``denied``;
  stop reason ``cancelled`` if the request was answered ``cancelled``. In mode ``auto``
  (its starting mode, like some real adapters) it writes without asking;
* ``slow N`` — N chunks a tenth of a second apart; ``session/cancel`` stops it
  (``cancelled``);
* ``plan`` — a plan of two entries, then ``planned``;
* ``crash`` — exits with status 3 in the middle of the turn;
* ``garbage`` — writes a line that is not JSON; ``deep`` — JSON nested 100,000 deep;
* ``unknown`` — sends a request rcd does not know (``foo/bar``);
* ``huge N`` — one chunk of N characters;
* anything else — ``echo: TEXT``, in two chunks.

With ``$ACP_FAKE_ASK_AGAIN`` set, a write whose request was answered ``cancelled`` asks
again at once (a request crossing the cancel) and writes if that one is allowed. With
``$ACP_FAKE_REJECT_ONLY`` set, a write's request offers only its reject option.
``session/load`` replays the conversation kept in ``$ACP_FAKE_STATE/<session>.json`` (a
user chunk and an agent chunk per turn); ``initialize`` says it can load sessions.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

_out_lock = threading.Lock()
_inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
_answers: dict[int, queue.Queue[dict[str, Any]]] = {}
_cancelled = threading.Event()
_ids = iter(range(1000, 10**9))
_mode = {"id": "auto"}
_spent = {"usd": 0.0}


def send(message: dict[str, Any]) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
        sys.stdout.flush()


def update(session: str, body: dict[str, Any]) -> None:
    send({"method": "session/update", "params": {"sessionId": session, "update": body}})


def chunk(session: str, text: str, kind: str = "agent_message_chunk") -> None:
    update(session, {"sessionUpdate": kind, "content": {"type": "text", "text": text}})


def ask(method: str, params: dict[str, Any]) -> dict[str, Any]:
    rpc_id = next(_ids)
    box: queue.Queue[dict[str, Any]] = queue.Queue()
    _answers[rpc_id] = box
    send({"id": rpc_id, "method": method, "params": params})
    return box.get()


def _state(session: str) -> Path | None:
    directory = os.environ.get("ACP_FAKE_STATE")
    return Path(directory) / f"{session}.json" if directory else None


def _remember(session: str, said: str, answered: str) -> None:
    path = _state(session)
    if path is None:
        return
    turns = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*turns, [said, answered]]))


def prompt(session: str, text: str) -> str:
    words = text.split()
    if words[:1] == ["write"] and len(words) >= 3:
        return write(session, words[1], " ".join(words[2:]))
    if words[:1] == ["slow"]:
        for i in range(int(words[1]) if len(words) > 1 else 10):
            if _cancelled.wait(0.1):
                return "cancelled"
            chunk(session, f"t{i} ")
        return "end_turn"
    if text == "plan":
        entries = [
            {"content": "read the code", "priority": "high", "status": "completed"},
            {"content": "fix it", "priority": "medium", "status": "pending"},
        ]
        update(session, {"sessionUpdate": "plan", "entries": entries})
        chunk(session, "planned")
        return "end_turn"
    if text == "crash":
        chunk(session, "about to go")
        sys.stdout.flush()
        os._exit(3)
    if text == "deep":
        with _out_lock:
            sys.stdout.write("[" * 100_000 + "]" * 100_000 + "\n")
            sys.stdout.flush()
        return "end_turn"
    if text == "garbage":
        with _out_lock:
            sys.stdout.write("this is not json\n")
            sys.stdout.flush()
        return "end_turn"
    if text == "unknown":
        send({"id": next(_ids), "method": "foo/bar", "params": {}})
        return "end_turn"
    if words[:1] == ["huge"]:
        chunk(session, "x" * int(words[1]))
        return "end_turn"
    chunk(session, "echo: ")
    chunk(session, text)
    _remember(session, text, f"echo: {text}")
    # What the session has cost so far, as Claude's ACP adapter says it (a total).
    _spent["usd"] += 0.01
    cost = {"amount": round(_spent["usd"], 4), "currency": "USD"}
    update(session, {"sessionUpdate": "usage_update", "used": 100, "size": 1000, "cost": cost})
    return "end_turn"


def write(session: str, path: str, content: str) -> str:
    call = f"call_{uuid.uuid4().hex[:8]}"
    raw = {"file_path": path, "content": content}
    tool = {"toolCallId": call, "title": f"Write {path}", "kind": "edit", "rawInput": raw}
    # As Claude's ACP adapter does: the call announced with an empty input and the tool's
    # own name in its _meta (which the permission request's copy leaves out), its input
    # in a later update with no status.
    meta = {"_meta": {"claudeCode": {"toolName": "Write"}}}
    announced = {**tool, "rawInput": {}, **meta}
    update(session, {"sessionUpdate": "tool_call", "status": "pending", **announced})
    update(session, {"sessionUpdate": "tool_call_update", "toolCallId": call, "rawInput": raw})
    if _mode["id"] != "auto":
        options = [
            {"optionId": "yes", "name": "Allow", "kind": "allow_once"},
            {"optionId": "always", "name": "Always allow", "kind": "allow_always"},
            {"optionId": "no", "name": "Reject", "kind": "reject_once"},
        ]
        if os.environ.get("ACP_FAKE_REJECT_ONLY"):
            options = options[2:]
        answer = ask(
            "session/request_permission",
            {"sessionId": session, "toolCall": tool, "options": options},
        )
        outcome = answer.get("result", {}).get("outcome", {})
        if outcome.get("outcome") == "cancelled":
            update(session, {"sessionUpdate": "tool_call_update", "toolCallId": call,
                             "status": "failed"})  # fmt: skip
            if os.environ.get("ACP_FAKE_ASK_AGAIN"):
                # A request that crosses the client's session/cancel: it must be answered
                # cancelled at once, never shown.
                asked = {"sessionId": session, "toolCall": tool, "options": options}
                again = ask("session/request_permission", asked)
                if again.get("result", {}).get("outcome", {}).get("outcome") != "cancelled":
                    Path(path).write_text(content)  # what the client must never let happen
            return "cancelled"
        if outcome.get("optionId") not in ("yes", "always"):
            update(session, {"sessionUpdate": "tool_call_update", "toolCallId": call,
                             "status": "failed", "rawOutput": "rejected"})  # fmt: skip
            chunk(session, "denied")
            return "end_turn"
    try:
        Path(path).write_text(content)
    except OSError as exc:  # e.g. outside the sandbox's writable places
        update(session, {"sessionUpdate": "tool_call_update", "toolCallId": call,
                         "status": "failed", "rawOutput": str(exc)})  # fmt: skip
        chunk(session, f"failed: {exc}")
        return "end_turn"
    update(session, {"sessionUpdate": "tool_call_update", "toolCallId": call,
                     "status": "completed", "content": [{"type": "content",
                     "content": {"type": "text", "text": f"wrote {path}"}}]})  # fmt: skip
    chunk(session, "done")
    return "end_turn"


def run_prompts() -> None:
    while True:
        message = _inbox.get()
        if message is None:
            return
        params = message["params"]
        text = "".join(b.get("text", "") for b in params["prompt"] if b.get("type") == "text")
        _cancelled.clear()
        reason = prompt(params["sessionId"], text)
        send({"id": message["id"], "result": {"stopReason": reason}})


def main() -> int:
    threading.Thread(target=run_prompts, daemon=True).start()
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        method, rpc_id = message.get("method"), message.get("id")
        if method is None:
            box = _answers.pop(rpc_id, None)
            if box is not None:
                box.put(message)
        elif method == "initialize":
            send({"id": rpc_id, "result": {"protocolVersion": 1,
                  "agentCapabilities": {"loadSession": True}, "authMethods": []}})  # fmt: skip
        elif method == "session/new":
            modes = {"currentModeId": _mode["id"], "availableModes": [
                {"id": "auto", "name": "Auto"}, {"id": "default", "name": "Ask"}]}  # fmt: skip
            send({"id": rpc_id, "result": {"sessionId": f"fake-{uuid.uuid4().hex[:12]}",
                                           "modes": modes}})  # fmt: skip
        elif method == "session/load":
            session = message["params"]["sessionId"]
            path = _state(session)
            for said, answered in json.loads(path.read_text()) if path and path.exists() else []:
                chunk(session, said, "user_message_chunk")
                chunk(session, answered)
            send({"id": rpc_id, "result": {}})
        elif method == "session/set_mode":
            _mode["id"] = message["params"]["modeId"]
            send({"id": rpc_id, "result": {}})
        elif method == "session/prompt":
            _inbox.put(message)
        elif method == "session/cancel":
            _cancelled.set()
        elif rpc_id is not None:
            send({"id": rpc_id, "error": {"code": -32601, "message": f"no {method}"}})
    _inbox.put(None)
    time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
