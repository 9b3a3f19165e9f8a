#!/usr/bin/env python3
"""A tiny agent that speaks Claude Code's stream-json protocol and answers instantly.

It stands in for the real CLI where a test (or a benchmark) must measure rcd rather than a
model. Accepts the same flags as ``claude -p ... --permission-prompt-tool stdio`` and:

* ``write PATH CONTENT`` asks ``can_use_tool`` for ``Write``; allowed → writes the file;
* ``run COMMAND`` asks for ``Bash``; allowed → runs it in the agent's directory;
* ``sleep SECONDS`` works that long (an ``interrupt`` control request cuts it short);
* ``stream SECONDS RATE`` works that long too, saying something ``RATE`` times a second (a
  model streaming its work: one ``assistant`` text message of about 200 bytes each time);
* ``abandon`` asks for ``Bash`` and ends its turn (failed) without waiting for the answer;
* ``crash`` exits with status 3 at once; ``pid`` answers with its own process id;
* anything else is answered ``echo: <text>``.

Nothing here imports rcd: it is a separate program, as a real agent is.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid

STATE: dict[str, str | int] = {"session_id": str(uuid.uuid4()), "turn": 0}


def emit(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def assistant(blocks: list[dict[str, object]]) -> None:
    emit(
        {
            "type": "assistant",
            "session_id": STATE["session_id"],
            "message": {"role": "assistant", "content": blocks},
        }
    )


def result(ok: bool, started: float, subtype: str = "success") -> None:
    emit(
        {
            "type": "result",
            "subtype": subtype if not ok else "success",
            "is_error": not ok,
            "duration_ms": int((time.monotonic() - started) * 1000),
            "total_cost_usd": 0.0,
            "session_id": STATE["session_id"],
            "result": "",
        }
    )


INBOX: queue.Queue[dict[str, object] | None] = queue.Queue()


def _reader() -> None:
    for line in sys.stdin:
        obj = json.loads(line)
        assert isinstance(obj, dict)
        INBOX.put(obj)
    INBOX.put(None)


def read_line(timeout: float | None = None) -> dict[str, object] | None:
    """The next stdin object, or None at EOF. Raises queue.Empty after ``timeout``."""
    return INBOX.get(timeout=timeout)


def wait_control_response(request_id: str) -> dict[str, object] | None:
    while True:
        obj = read_line()
        if obj is None:
            return None
        if obj.get("type") == "control_response":
            response = obj["response"]
            assert isinstance(response, dict)
            if response.get("request_id") == request_id:
                inner = response["response"]
                assert isinstance(inner, dict)
                return inner


def run_tool(name: str, tool_input: dict[str, object]) -> tuple[str, bool]:
    """Do what an allowed tool does; returns (result text, is_error)."""
    if name == "Write":
        with open(str(tool_input["file_path"]), "w") as f:
            f.write(str(tool_input["content"]))
        return f"File created successfully at: {tool_input['file_path']}", False
    done = subprocess.run(
        str(tool_input["command"]), shell=True, capture_output=True, text=True, check=False
    )
    return (done.stdout + done.stderr).strip() or f"exit {done.returncode}", done.returncode != 0


def ask(name: str, tool_input: dict[str, object]) -> tuple[str, str]:
    """Propose a tool use and ask for permission as Claude Code does; returns the tool use's
    id and the request's."""
    tool_use_id = f"toolu_{uuid.uuid4().hex[:12]}"
    assistant([{"type": "tool_use", "id": tool_use_id, "name": name, "input": tool_input}])
    request_id = str(uuid.uuid4())
    emit(
        {
            "type": "control_request",
            "request_id": request_id,
            "request": {
                "subtype": "can_use_tool",
                "tool_name": name,
                "input": tool_input,
                "tool_use_id": tool_use_id,
                "permission_suggestions": [],
            },
        }
    )
    return tool_use_id, request_id


def use_tool(name: str, tool_input: dict[str, object], started: float) -> bool:
    """Propose a tool use, ask for permission, run it if allowed."""
    tool_use_id, request_id = ask(name, tool_input)
    answer = wait_control_response(request_id)
    if answer is None:
        return False
    if answer.get("behavior") == "allow":
        updated = answer.get("updatedInput") or tool_input
        assert isinstance(updated, dict)
        content_out, is_error = run_tool(name, updated)
    else:
        content_out, is_error = str(answer.get("message", "denied")), True
    emit(
        {
            "type": "user",
            "session_id": STATE["session_id"],
            "message": {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": tool_use_id,
                        "content": content_out,
                        "is_error": is_error,
                    }
                ],
            },
        }
    )
    denied = answer.get("behavior") != "allow"
    assistant([{"type": "text", "text": "not written" if denied else "done"}])
    result(True, started)
    return True


def turn(text: str) -> bool:
    started = time.monotonic()
    STATE["turn"] = int(STATE["turn"]) + 1
    if text == "crash":
        sys.exit(3)
    if text == "abandon":
        ask("Bash", {"command": "true", "description": "never run"})
        result(False, started, "error_during_execution")
        return True
    if text == "pid":
        assistant([{"type": "text", "text": f"pid {os.getpid()}"}])
        result(True, started)
        return True
    if text.startswith(("sleep ", "stream ")):
        words = text.split()
        deadline = started + float(words[1])
        interval = 1 / float(words[2]) if words[0] == "stream" else float("inf")
        said = 0
        while time.monotonic() < deadline:
            wake = min(deadline, started + (said + 1) * interval)
            try:
                obj = read_line(timeout=max(0.0, wake - time.monotonic()))
            except queue.Empty:
                if wake < deadline:
                    said += 1
                    assistant([{"type": "text", "text": f"working, step {said}: " + "." * 160}])
                    continue
                break
            if obj is None:
                return False
            request = obj.get("request")
            if (
                obj.get("type") == "control_request"
                and isinstance(request, dict)
                and request.get("subtype") == "interrupt"
            ):
                emit(
                    {
                        "type": "control_response",
                        "response": {
                            "subtype": "success",
                            "request_id": obj.get("request_id"),
                            "response": {},
                        },
                    }
                )
                result(False, started, "error_during_execution")
                return True
        assistant([{"type": "text", "text": "slept"}])
        result(True, started)
        return True
    if text.startswith("write "):
        _, path, content = text.split(" ", 2)
        return use_tool("Write", {"file_path": path, "content": content}, started)
    if text.startswith("run "):
        command = text.removeprefix("run ")
        return use_tool("Bash", {"command": command, "description": "run a command"}, started)
    assistant([{"type": "text", "text": f"echo: {text}"}])
    result(True, started)
    return True


def main() -> int:
    args = sys.argv[1:]
    for flag in ("--session-id", "--resume"):
        if flag in args:
            STATE["session_id"] = args[args.index(flag) + 1]
    threading.Thread(target=_reader, daemon=True).start()
    while True:
        obj = read_line()
        if obj is None:
            return 0
        if obj.get("type") != "user":
            continue
        message = obj["message"]
        assert isinstance(message, dict)
        if not turn(str(message["content"])):
            return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # No interpreter teardown: a stand-in should cost nothing when it stops, so benchmarks
    # of many sessions measure rcd rather than 32 Python shutdowns.
    os._exit(code)
