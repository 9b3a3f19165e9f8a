"""The stream-json reader: known lines become events; anything else never crashes it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wire
from spawn import PermissionCancelled, parse_line
from spawn.adapter import Streaming

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "message",
                    "content",
                    "request",
                    "request_id",
                    "subtype",
                    "text",
                    "tool_name",
                    "input",
                    "is_error",
                    "event",
                    "index",
                    "delta",
                    "content_block",
                    "partial_json",
                ]
            )
            | st.text(max_size=6),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)
line_types = st.sampled_from(
    ["assistant", "user", "result", "control_request", "stream_event", "system", "x"]
)


@given(obj=json_values)
def test_arbitrary_json_is_an_event_list_or_a_value_error(obj: Any) -> None:
    try:
        events = parse_line(obj)
    except ValueError as exc:
        assert str(exc)
    else:
        assert isinstance(events, list)
        for event in events:
            # Whatever comes out must be a valid wire payload.
            wire.decode(type(event), wire.encode(event))


@given(kind=line_types, body=st.dictionaries(st.text(max_size=8), json_values, max_size=4))
def test_typed_lines_with_junk_never_crash(kind: str, body: dict[str, Any]) -> None:
    obj = {**body, "type": kind}
    try:
        parse_line(obj)
    except ValueError as exc:
        assert str(exc)


def test_assistant_text_and_tool_use() -> None:
    line = {
        "type": "assistant",
        "message": {
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "thinking", "thinking": "..."},
                {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}},
            ]
        },
    }
    assert parse_line(line) == [
        wire.AssistantText(text="hi"),
        wire.ToolUse(id="t1", name="Bash", input={"command": "ls"}),
    ]


def test_tool_result_content_list_is_flattened() -> None:
    line = {
        "type": "user",
        "message": {
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "is_error": True,
                    "content": [{"type": "text", "text": "a"}, {"type": "image"}],
                }
            ]
        },
    }
    assert parse_line(line) == [
        wire.ToolResult(tool_use_id="t1", content="a\n[image]", is_error=True)
    ]


@pytest.mark.parametrize(
    ("subtype", "is_error", "reason", "error"),
    [
        ("success", False, "completed", None),
        ("error_during_execution", True, "aborted_streaming", None),  # an interrupt
        ("error_during_execution", True, "aborted_tools", None),
        ("success", True, "api_error", "api_error: API Error: 529 overloaded"),
        ("error_max_turns", True, None, "error_max_turns: API Error: 529 overloaded"),
    ],
)
def test_result(subtype: str, is_error: bool, reason: str | None, error: str | None) -> None:
    line = {
        "type": "result",
        "subtype": subtype,
        "is_error": is_error,
        "duration_ms": 12,
        "total_cost_usd": 0.5,
        "result": "API Error: 529 overloaded" if is_error else "ok",
    }
    if reason:
        line["terminal_reason"] = reason
    events = parse_line(line)
    assert events[0] == wire.TurnResult(ok=not is_error, duration_ms=12, cost_usd=0.5)
    assert events[1:] == ([wire.Error(code="turn_failed", message=error)] if error else [])


def test_control_cancel_request_withdraws_a_permission() -> None:
    assert parse_line({"type": "control_cancel_request", "request_id": "r9"}) == [
        PermissionCancelled(request_id="r9")
    ]


def test_can_use_tool_becomes_a_permission_request() -> None:
    line = json.loads(
        '{"type":"control_request","request_id":"r1","request":{"subtype":"can_use_tool",'
        '"tool_name":"Bash","input":{"command":"rm -rf build","description":"clean"},'
        '"tool_use_id":"t"}}'
    )
    assert parse_line(line) == [
        wire.PermissionRequest(
            request_id="r1",
            tool="Bash",
            input={"command": "rm -rf build", "description": "clean"},
            description="Run: rm -rf build (clean)",
        )
    ]


def test_unknown_types_are_ignored_and_non_objects_refused() -> None:
    assert parse_line({"type": "system", "subtype": "init", "session_id": "x"}) == []
    with pytest.raises(ValueError, match="JSON object"):
        parse_line([1, 2])


def stream_event(event: dict[str, Any], parent: str | None = None) -> dict[str, Any]:
    """A ``stream_event`` line as the pinned CLI writes it (``testkit/fakes/NOTES.md``)."""
    return {
        "type": "stream_event",
        "event": event,
        "session_id": "s",
        "parent_tool_use_id": parent,
        "uuid": "u",
        "api_message_id": "msg_1",
    }


def test_stream_events_become_pieces_of_the_block_being_written() -> None:
    text_start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
    tool_start = {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "t", "name": "Write", "input": {}},
    }
    text = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "hi"},
    }
    tool = {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"file_path":'},
    }
    assert parse_line(stream_event(text_start)) == [
        Streaming(block=0, kind="text", text="", start=True)
    ]
    assert parse_line(stream_event(text)) == [Streaming(block=0, kind="text", text="hi")]
    assert parse_line(stream_event(tool_start)) == [
        Streaming(block=1, kind="tool_input", name="Write", text="", start=True)
    ]
    assert parse_line(stream_event(tool)) == [
        Streaming(block=1, kind="tool_input", text='{"file_path":')
    ]
    # A subagent's stream, thinking and the message's own events show nothing.
    assert parse_line(stream_event(text, parent="toolu_1")) == []
    thinking = {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta"}}
    assert parse_line(stream_event(thinking)) == []
    for kind in ("message_start", "message_delta", "message_stop", "content_block_stop"):
        assert parse_line(stream_event({"type": kind, "index": 0})) == []


def test_a_stream_event_without_its_event_is_refused() -> None:
    with pytest.raises(ValueError, match="stream_event line without an event"):
        parse_line({"type": "stream_event", "event": "nope"})
    with pytest.raises(ValueError, match="without a delta"):
        parse_line(stream_event({"type": "content_block_delta", "index": 0, "delta": 3}))
