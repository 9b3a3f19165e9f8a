"""How ``rcd attach`` shows a session: plain lines, coloured only on a terminal.

Everything in an event is untrusted text: control characters (escape sequences included)
are shown escaped by :func:`daemon.visible.visible`, never sent to the terminal, so a tool
result or a session title cannot reprogram it. Fields that are one line (titles, names,
paths) keep no newline either.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

import wire
from common.visible import visible

from .api import LogEntry
from .state import SessionView

__all__ = [
    "Style",
    "abbreviate",
    "clean",
    "one",
    "render_entry",
    "render_header",
    "summarise_input",
    "writing_preview",
]

#: Lines of a tool result shown before "… N more lines".
RESULT_LINES = 4
#: Input fields that best say what a tool call does, in order of preference.
_SUMMARY_KEYS = ("file_path", "path", "command", "pattern", "url", "query", "description")


@attrs.frozen
class Style:
    """ANSI colours when ``color`` (stdout is a terminal), the bare text otherwise."""

    color: bool = False

    def _sgr(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and text else text

    def bold(self, text: str) -> str:
        return self._sgr("1", text)

    def dim(self, text: str) -> str:
        return self._sgr("2", text)

    def red(self, text: str) -> str:
        return self._sgr("31", text)

    def green(self, text: str) -> str:
        return self._sgr("32", text)

    def yellow(self, text: str) -> str:
        return self._sgr("1;33", text)

    def cyan(self, text: str) -> str:
        return self._sgr("36", text)


def clean(text: str) -> str:
    """Multi-line ``text`` made safe to print: CRLF as LF, tabs and newlines kept, every
    other control character escaped (``\\x1b``); see :func:`daemon.visible.visible`."""
    return visible(text, multiline=True)


def one(text: str) -> str:
    """``text`` shown on one line: every control character escaped, newlines included."""
    return visible(text)


def _one_line(text: str, width: int) -> str:
    text = " ".join(clean(text).split())
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def summarise_input(tool_input: dict[str, Any], width: int = 80) -> str:
    """The one field that says what a tool call does (``/path``, ``ls -la``), else JSON."""
    for key in _SUMMARY_KEYS:
        value = tool_input.get(key)
        if isinstance(value, str) and value.strip():
            return _one_line(value, width)
    if not tool_input:
        return ""
    return _one_line(json.dumps(tool_input, ensure_ascii=False), width)


#: Characters of the reply being written shown on the prompt line (its newest ones).
PREVIEW_CHARS = 40


def writing_preview(writing: wire.Shown) -> str:
    """The reply being written, as it grows, for the prompt line: its newest words on one
    line (a tool's input says whose)."""
    text = " ".join(clean(writing.text).split())
    if len(text) > PREVIEW_CHARS:
        text = "…" + text[-(PREVIEW_CHARS - 1) :]
    if writing.kind == "tool_input":
        return f"{one(writing.name or 'tool')} input: {text}"
    return f"writing: {text}"


def abbreviate(text: str, lines: int = RESULT_LINES) -> tuple[list[str], int]:
    """The first ``lines`` lines of ``text`` and how many more there are."""
    all_lines = clean(text).rstrip("\n").split("\n") if text.strip() else []
    return all_lines[:lines], max(0, len(all_lines) - lines)


def duration(ms: int) -> str:
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def render_header(info: wire.SessionInfo, relay: str, style: Style) -> list[str]:
    title = one(info.title) if info.title else "(untitled)"
    where = [f"cwd {one(info.cwd)}" if info.cwd else "cwd not known yet"]
    if info.branch:
        where.append(f"branch {one(info.branch)}")
    return [
        style.bold(f"━━ {title} ━━"),
        f"session {one(info.id)} on {one(relay)} · state {one(info.state)}",
        " · ".join(where),
        style.dim(
            "type a message and press Enter · y/n answers a permission request · "
            "/help lists commands · Ctrl-D leaves"
        ),
        "",
    ]


def _indented(text: str, prefix: str = "  ") -> list[str]:
    return [prefix + line for line in clean(text).rstrip("\n").split("\n")]


def render_entry(entry: LogEntry, view: SessionView, style: Style, width: int = 100) -> list[str]:
    """The lines that show one event. ``view`` (already updated with it) names tools."""
    p = entry.payload
    match p:
        case wire.UserMessage():
            said = clean(p.text).split("\n")
            head = style.bold(style.cyan(f"you ({one(p.origin)}):"))
            return [f"{head} {said[0]}", *("  " + line for line in said[1:])]
        case wire.AssistantText():
            return clean(p.text).rstrip("\n").split("\n")
        case wire.ToolUse():
            what = summarise_input(p.input, max(20, width - len(p.name) - 4))
            return [style.dim(f"⚙ {one(p.name)} {what}".rstrip())]
        case wire.ToolResult():
            shown, more = abbreviate(p.content)
            paint = style.red if p.is_error else style.dim
            lines = [paint(f"  ⎿ {line}") for line in shown] or [paint("  ⎿ (no output)")]
            if more:
                lines.append(paint(f"  … {more} more line{'s' if more != 1 else ''}"))
            return lines
        case wire.PermissionRequest():
            what = f"{one(p.tool)} {summarise_input(p.input)}".rstrip()
            lines = [style.yellow(f"⚠ permission: {what}")]
            for key, value in list(p.input.items())[:6]:
                text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                lines.append(style.yellow(f"    {one(key)}: {_one_line(text, width - 8)}"))
            if clean(p.description) != what:
                lines.append(style.yellow(f"  {clean(p.description)}"))
            return lines
        case wire.PermissionResolved():
            request = view.requests.get(p.request_id)
            tool = f"{one(request.tool)} " if request else ""
            by = one(p.origin)
            if p.origin == "grant" and p.grant:
                by = f"grant {one(p.grant)}"  # the daemon answered: nobody was asked
            if p.decision == "allow":
                return [style.green(f"✓ {tool}allowed by {by}")]
            return [style.red(f"✗ {tool}denied by {by}")]
        case wire.TurnResult():
            cost = f" · ${p.cost_usd:.4f}" if p.cost_usd else ""
            if p.ok:
                return [style.dim(f"── turn done in {duration(p.duration_ms)}{cost}")]
            return [style.red(f"── turn failed after {duration(p.duration_ms)}{cost}")]
        case wire.Status():
            return [style.dim(f"· state: {one(p.state)}")]
        case wire.Error():
            return [style.red(f"✗ error {one(p.code)}: {clean(p.message)}")]
        case wire.SessionStarted():
            branch = f" on branch {one(p.branch)}" if p.branch else ""
            return [style.dim(f"● {one(p.agent)} started in {one(p.cwd)}{branch}")]
        case wire.SessionEnded():
            kept = ""
            if p.worktree_kept:
                kept = f"; its worktree was kept (branch {one(p.branch or '?')})"
            elif p.branch:
                kept = f" (branch {one(p.branch)})"
            return [style.bold(f"■ session ended: {one(p.reason)}{kept}")]
        case wire.GitAction():
            return [style.cyan(f"⎇ {one(p.summary)} (from {one(p.origin)})")]
        case _:
            data = json.dumps(entry.data, ensure_ascii=False)
            return [style.dim(f"· {one(entry.kind)} {_one_line(data, width - 20)}")]
