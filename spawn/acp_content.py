"""What an ACP agent's messages carry, read into rcd's terms: a tool call as a
:class:`wire.ToolUse`, a tool's output and a content block as text, the options of a
permission request named (pure functions of the agent's JSON, used by :mod:`spawn.acp_rpc`)."""

from __future__ import annotations

import json
from typing import Any

import wire

__all__ = ["KIND_NAMES", "offered", "text_of", "tool_output", "tool_use"]

#: Tool call kinds (ACP ``ToolKind``) as a short tool name.
KIND_NAMES = {
    "read": "Read",
    "edit": "Edit",
    "delete": "Delete",
    "move": "Move",
    "search": "Search",
    "execute": "Execute",
    "think": "Think",
    "fetch": "Fetch",
}


def offered(options: list[dict[str, Any]]) -> str:
    return ", ".join(str(o.get("name", o.get("optionId", "?"))) for o in options)


def text_of(content: Any) -> str:
    if isinstance(content, dict) and content.get("type") == "text":
        return str(content.get("text", ""))
    return ""


def tool_use(call: dict[str, Any]) -> wire.ToolUse:
    meta = call.get("_meta")
    claude = meta.get("claudeCode") if isinstance(meta, dict) else None
    named = claude.get("toolName") if isinstance(claude, dict) else None
    kind = call.get("kind")
    fallback = KIND_NAMES.get(kind, "") if isinstance(kind, str) else ""
    name = named if isinstance(named, str) and named else fallback
    raw = call.get("rawInput")
    return wire.ToolUse(
        id=str(call.get("toolCallId", "")),
        name=name or str(call.get("title") or "tool")[:60],
        input=raw if isinstance(raw, dict) else ({} if raw is None else {"input": raw}),
    )


def tool_output(update: dict[str, Any]) -> str:
    parts = []
    content = update.get("content")
    for item in content if isinstance(content, list) else []:
        if isinstance(item, dict):
            if item.get("type") == "content":
                parts.append(text_of(item.get("content")))
            elif item.get("type") == "diff":
                parts.append(f"edited {item.get('path', '')}")
    if not any(parts) and update.get("rawOutput") is not None:
        raw = update["rawOutput"]
        parts.append(raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False))
    return "\n".join(p for p in parts if p)
