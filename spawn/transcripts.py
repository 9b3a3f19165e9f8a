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

import itertools
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
    "MAX_IMPORTED_TEXT",
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
#: The CLI's conversation ids: lower-case uuids (``--resume`` finds no other spelling).
_UUID = re.compile(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}")
#: The CLI cuts a longer key and adds a hash: such directories are found by this prefix.
_KEY_PREFIX = 200
#: How far into a conversation its first prompt is looked for (entries).
_FIRST_PROMPT_WITHIN = 500
#: The most characters of one earlier message or tool result shown (the log holds a
#: conversation's whole history in one go; the local transcript keeps it all).
MAX_IMPORTED_TEXT = 32 * 1024


def check_conversation_id(value: str) -> str:
    """``value`` if it is a Claude Code conversation id (a lower-case uuid), else
    ImportRefused."""
    if not _UUID.fullmatch(value):
        raise ImportRefused(f"{value!r} is not a Claude Code conversation id (a lower-case uuid)")
    return value


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
            except (ValueError, RecursionError):
                continue
            if isinstance(entry, dict):
                yield entry


def _typed_text(entry: dict[str, Any]) -> str | None:
    """What the user typed, for a ``user`` entry that is a prompt (not a tool's result, a
    command's wrapper or the CLI's own note); else None."""
    if entry.get("type") != "user" or any(
        entry.get(mark) for mark in ("isSidechain", "isMeta", "isCompactSummary")
    ):
        return None
    message = entry.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        blocks = [b for b in content if isinstance(b, dict)]
        if any(b.get("type") == "tool_result" for b in blocks):
            return None
        content = "\n".join(
            str(b.get("text", "")) if b.get("type") == "text" else f"[{b.get('type')}]"
            for b in blocks
        )
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
                head = itertools.islice(_entries(path), _FIRST_PROMPT_WITHIN)
                prompt = next((t for e in head if (t := _typed_text(e)) is not None), None)
            except OSError:
                continue
            if prompt is not None:
                found.append(
                    Conversation(id=path.stem, path=path, modified=modified, first_prompt=prompt)
                )
    return sorted(found, key=lambda c: c.modified, reverse=True)


def conversation_path(
    conversation_id: str, env: Mapping[str, str], directory: str | None = None
) -> Path:
    """The transcript of ``conversation_id``: one the CLI had in ``directory``, or (None)
    in any directory; ImportRefused saying where it was looked for."""
    conversation_id = check_conversation_id(conversation_id)
    root = config_dir(env) / "projects"
    folders = _project_dirs(directory, env) if directory is not None else root.glob("*")
    for folder in sorted(folders):
        path = folder / f"{conversation_id}.jsonl"
        if path.is_file():
            return path
    where = f" of {directory}" if directory is not None else ""
    raise ImportRefused(f"no Claude Code conversation {conversation_id}{where} in {root}")


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
        events.extend(_cut(p) for p in payloads if isinstance(p, _SHOWN))
    return events


_SHOWN = (wire.AssistantText, wire.ToolUse, wire.ToolResult)


def _cut_text(text: str) -> str:
    if len(text) <= MAX_IMPORTED_TEXT:
        return text
    more = len(text) - MAX_IMPORTED_TEXT
    return text[:MAX_IMPORTED_TEXT] + f"\n… ({more} more characters in the local transcript)"


def _cut(payload: wire.EventData) -> wire.EventData:
    if isinstance(payload, wire.AssistantText):
        return attrs.evolve(payload, text=_cut_text(payload.text))
    if isinstance(payload, wire.ToolResult):
        return attrs.evolve(payload, content=_cut_text(payload.content))
    if isinstance(payload, wire.ToolUse) and len(json.dumps(payload.input)) > MAX_IMPORTED_TEXT:
        return attrs.evolve(payload, input={"note": "cut: too large to show"})
    return payload


def earlier(
    conversation_id: str, env: Mapping[str, str], directory: str | None = None
) -> list[wire.EventData]:
    """The events of conversation ``conversation_id``, one the CLI had in ``directory``,
    to continue it in a session; with ``directory`` None, none (a session resumed: its
    history is in the log already). Refused (ImportRefused) when it is unknown, unreadable,
    or open in a running CLI (whose turns would interleave with the session's in one
    transcript)."""
    conversation_id = check_conversation_id(conversation_id)
    pid = holder(conversation_id, env)
    if pid is not None:
        raise ImportRefused(
            f"the conversation {conversation_id} is open in a running claude (pid {pid}):"
            " leave it there first (/exit), then try again"
        )
    if directory is None:
        return []
    path = conversation_path(conversation_id, env, directory)
    try:
        return earlier_events(path)
    except (OSError, ValueError, RecursionError) as exc:
        why = f"cannot read the conversation {conversation_id} ({path}): {exc}"
        raise ImportRefused(why) from exc
