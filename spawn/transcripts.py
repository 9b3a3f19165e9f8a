"""Claude Code's own record of its conversations on this machine, for ``rcd import``.

The pinned CLI (see ``testkit/fakes/NOTES.md``, "Conversations on disk") keeps each
conversation as JSONL in ``<config>/projects/<key>/<id>.jsonl``: ``<config>`` is
``$CLAUDE_CONFIG_DIR`` or ``~/.claude``, ``<key>`` the directory it ran in with every
character that is not a letter or digit made ``-``, ``<id>`` the conversation's uuid. Each
line is one entry; ``user`` and ``assistant`` entries carry the message as the API saw it
and link to the one before (``parentUuid``). A running CLI announces itself in
``<config>/sessions/<pid>.json`` (``sessionId``, ``procStart``: its start time in clock
ticks, field 22 of ``/proc/<pid>/stat``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

import wire
from common.procs import process_id

from .claude import parse_line
from .errors import ImportRefused

__all__ = [
    "IMPORTED_ORIGIN",
    "Conversation",
    "check_conversation_id",
    "conversation_path",
    "earlier",
    "earlier_events",
    "holder",
    "list_conversations",
    "project_key",
]

#: The ``origin`` of the user messages an imported conversation brings along.
IMPORTED_ORIGIN = "terminal"
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
#: The CLI cuts a longer key and adds a hash: such directories are found by this prefix.
_KEY_PREFIX = 200
#: How far into a conversation its first prompt is looked for (entries).
_FIRST_PROMPT_WITHIN = 500


def check_conversation_id(value: str) -> str:
    """``value`` if it is a Claude Code conversation id (a uuid), else ImportRefused."""
    if not _UUID.fullmatch(value):
        raise ImportRefused(f"{value!r} is not a Claude Code conversation id (a uuid)")
    return value.lower()


def config_dir(env: Mapping[str, str]) -> Path:
    configured = env.get("CLAUDE_CONFIG_DIR")
    if configured:
        return Path(configured)
    return Path(env.get("HOME") or os.path.expanduser("~")) / ".claude"


def project_key(directory: str) -> str:
    """The name of the folder the CLI keeps ``directory``'s conversations in."""
    return re.sub(r"[^A-Za-z0-9]", "-", directory)


def _project_dirs(directory: str, env: Mapping[str, str]) -> list[Path]:
    root = config_dir(env) / "projects"
    key = project_key(directory)
    if len(key) <= _KEY_PREFIX:
        return [root / key] if (root / key).is_dir() else []
    try:
        return sorted(p for p in root.iterdir() if p.name.startswith(key[:_KEY_PREFIX]))
    except OSError:
        return []


def _entries(path: Path) -> Iterator[dict[str, Any]]:
    """The decodable entries of a transcript, in order (a line torn by a killed CLI is
    skipped)."""
    with path.open("rb") as lines:
        for raw in lines:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield entry


def _typed_text(entry: dict[str, Any]) -> str | None:
    """What the user typed, for a ``user`` entry that is a prompt (not a tool's result, a
    command's wrapper or the CLI's own note); else None."""
    if entry.get("type") != "user" or entry.get("isSidechain") or entry.get("isMeta"):
        return None
    message = entry.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        texts = [
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        ]
        if len(texts) != len(content):
            return None
        content = "\n".join(texts)
    if not isinstance(content, str) or not content.strip() or content.lstrip().startswith("<"):
        return None
    return content


@attrs.frozen(kw_only=True)
class Conversation:
    id: str
    path: Path
    #: When it last changed (the file's mtime, seconds since the epoch).
    modified: float
    first_prompt: str


def list_conversations(directory: str, env: Mapping[str, str]) -> list[Conversation]:
    """The conversations the CLI had in ``directory``, newest first (those without a prompt
    are left out)."""
    found = []
    for folder in _project_dirs(directory, env):
        for path in folder.glob("*.jsonl"):
            if not _UUID.fullmatch(path.stem):
                continue
            try:
                modified = path.stat().st_mtime
                prompt = next(
                    (
                        text
                        for n, entry in enumerate(_entries(path))
                        if n < _FIRST_PROMPT_WITHIN and (text := _typed_text(entry)) is not None
                    ),
                    None,
                )
            except OSError:
                continue
            if prompt is not None:
                found.append(
                    Conversation(id=path.stem, path=path, modified=modified, first_prompt=prompt)
                )
    return sorted(found, key=lambda c: c.modified, reverse=True)


def conversation_path(conversation_id: str, env: Mapping[str, str]) -> Path:
    """The transcript of ``conversation_id`` (in whichever directory it ran), or
    ImportRefused saying where it was looked for."""
    conversation_id = check_conversation_id(conversation_id)
    root = config_dir(env) / "projects"
    for path in sorted(root.glob(f"*/{conversation_id}.jsonl")):
        return path
    raise ImportRefused(f"no Claude Code conversation {conversation_id} in {root}")


def holder(conversation_id: str, env: Mapping[str, str]) -> int | None:
    """The pid of a running CLI that has ``conversation_id`` open, or None."""
    try:
        announced = list((config_dir(env) / "sessions").glob("*.json"))
    except OSError:
        return None
    for path in announced:
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("sessionId") != conversation_id:
            continue
        pid = data.get("pid")
        if type(pid) is not int or pid <= 0:
            continue
        running = process_id(pid)
        if running is not None:
            if str(running.start) == str(data.get("procStart", running.start)):
                return pid
        elif _exists(pid) and not Path("/proc/self").exists():
            return pid  # no /proc to tell a reused pid apart: a live pid holds it
    return None


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _thread(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as it stands: from its newest message back along ``parentUuid``
    (a rewound branch is left out), oldest first."""
    by_uuid = {e["uuid"]: e for e in entries if isinstance(e.get("uuid"), str)}
    messages = [
        e for e in entries if e.get("type") in ("user", "assistant") and not e.get("isSidechain")
    ]
    if not messages:
        return []
    thread: list[dict[str, Any]] = []
    entry: dict[str, Any] | None = messages[-1]
    seen: set[int] = set()
    while entry is not None and id(entry) not in seen:
        seen.add(id(entry))
        thread.append(entry)
        parent = entry.get("parentUuid") or entry.get("logicalParentUuid")
        entry = by_uuid.get(parent) if isinstance(parent, str) else None
    return [e for e in reversed(thread) if e.get("type") in ("user", "assistant")]


def earlier_events(path: Path) -> list[wire.EventData]:
    """The conversation in ``path`` as the events a session shows: what the user typed
    (``origin`` :data:`IMPORTED_ORIGIN`), the agent's text, its tool uses and their
    results."""
    events: list[wire.EventData] = []
    for entry in _thread(list(_entries(path))):
        text = _typed_text(entry)
        if text is not None:
            uuid = entry.get("uuid")
            events.append(
                wire.UserMessage(
                    text=text,
                    input_id=f"imported-{uuid if isinstance(uuid, str) else len(events)}",
                    origin=IMPORTED_ORIGIN,
                )
            )
            continue
        try:
            payloads = parse_line(entry)
        except ValueError:
            continue
        events.extend(
            p
            for p in payloads
            if isinstance(p, wire.AssistantText | wire.ToolUse | wire.ToolResult)
        )
    return events


def earlier(conversation_id: str, env: Mapping[str, str]) -> list[wire.EventData]:
    """The events of conversation ``conversation_id``, to continue it in a session; refused
    (ImportRefused) when it is unknown, or open in a running CLI (whose turns would
    interleave with the session's in one transcript)."""
    conversation_id = check_conversation_id(conversation_id)
    pid = holder(conversation_id, env)
    if pid is not None:
        raise ImportRefused(
            f"the conversation {conversation_id} is open in a running claude (pid {pid}):"
            " leave it there first (/exit), then import it"
        )
    return earlier_events(conversation_path(conversation_id, env))
