"""Rendering events as lines, and the view the log builds (dedup, gaps, open requests)."""

from __future__ import annotations

from typing import Any

import pytest

import wire
from attach.api import LogEntry, parse_entry
from attach.render import Style, clean, render_entry
from attach.state import Gap, SessionView


def entry(seq: int, payload: wire.EventData) -> LogEntry:
    return parse_entry(wire.encode(wire.make_event(seq, 1.0, payload)))


def show(view: SessionView, *payloads: wire.EventData, color: bool = False) -> list[str]:
    lines: list[str] = []
    for payload in payloads:
        e = entry(view.last_seq + 1, payload)
        assert view.accept(e)
        lines += render_entry(e, view, Style(color=color), width=80)
    return lines


def test_a_turn_with_a_tool_call_and_a_permission() -> None:
    view = SessionView()
    write = {"file_path": "/tmp/a.txt", "content": "hi"}
    lines = show(
        view,
        wire.UserMessage(text="make a file\nplease", input_id="m1", origin="phone"),
        wire.Status(state="busy"),
        wire.AssistantText(text="Sure."),
        wire.ToolUse(id="t1", name="Write", input=write),
        wire.PermissionRequest(
            request_id="r1", tool="Write", input=write, description="Write /tmp/a.txt"
        ),
    )
    assert lines == [
        "you (phone): make a file",
        "  please",
        "· state: busy",
        "Sure.",
        "⚙ Write /tmp/a.txt",
        "⚠ permission: Write /tmp/a.txt",
        "    file_path: /tmp/a.txt",
        "    content: hi",
    ]
    assert view.next_request() is not None and view.working
    lines = show(
        view,
        wire.PermissionResolved(request_id="r1", decision="deny", origin="laptop"),
        wire.ToolResult(
            tool_use_id="t1", content="\n".join(f"l{i}" for i in range(10)), is_error=True
        ),
        wire.TurnResult(ok=True, duration_ms=61500, cost_usd=0.01234),
        wire.Error(code="agent_crashed", message="exit 3"),
        wire.SessionEnded(reason="stopped", worktree_kept=True, branch="rcd/x"),
    )
    assert lines == [
        "✗ Write denied by laptop",
        "  ⎿ l0",
        "  ⎿ l1",
        "  ⎿ l2",
        "  ⎿ l3",
        "  … 6 more lines",
        "── turn done in 1m01s · $0.0123",
        "✗ error agent_crashed: exit 3",
        "■ session ended: stopped; its worktree was kept (branch rcd/x)",
    ]
    assert view.next_request() is None and view.ended


def test_colours_only_when_asked() -> None:
    [red] = show(SessionView(), wire.Error(code="x", message="y"), color=True)
    assert red == "\x1b[31m✗ error x: y\x1b[0m"
    [plain] = show(SessionView(), wire.Error(code="x", message="y"))
    assert "\x1b" not in plain


def test_agent_output_cannot_reach_the_terminal_as_escape_sequences() -> None:
    assert clean("a\x1b]0;pwned\x07b\r\nc\x9bd") == "a\\x1b]0;pwned\\x07b\nc\\x9bd"
    lines = show(SessionView(), wire.AssistantText(text="\x1b[2Jgone"))
    assert lines == ["\\x1b[2Jgone"]


def test_duplicates_are_dropped_and_gaps_refused() -> None:
    view = SessionView()
    first = entry(1, wire.Status(state="idle"))
    assert view.accept(first)
    assert not view.accept(first)
    with pytest.raises(Gap):
        view.accept(entry(3, wire.Status(state="busy")))
    assert view.last_seq == 1


def test_own_message_is_pending_until_its_echo() -> None:
    view = SessionView()
    view.pending_messages["m1"] = "hello"
    show(view, wire.UserMessage(text="hello", input_id="other", origin="web"))
    assert view.pending_messages == {"m1": "hello"}
    show(view, wire.UserMessage(text="hello", input_id="m1", origin="attach@box"))
    assert view.pending_messages == {}


def test_an_answered_request_is_skipped_until_resolved() -> None:
    view = SessionView()
    for rid in ("r1", "r2"):
        show(view, wire.PermissionRequest(request_id=rid, tool="Bash", input={}, description="d"))
    view.answered.add("r1")
    request = view.next_request()
    assert request is not None and request.request_id == "r2"


def test_an_unknown_kind_is_shown_generically_and_advances_seq() -> None:
    raw: dict[str, Any] = {"seq": 1, "kind": "hologram", "at": 1.0, "data": {"x": 1}}
    e = parse_entry(raw)
    assert e.payload is None
    view = SessionView()
    assert view.accept(e) and view.last_seq == 1
    assert render_entry(e, view, Style()) == ['· hologram {"x": 1}']
    assert parse_entry("not json", fallback_seq=7).seq == 7
    with pytest.raises(ValueError):
        parse_entry("not json")
