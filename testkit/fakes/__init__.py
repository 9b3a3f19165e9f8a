"""First-class fakes for the tests and the benchmarks: a scripted Messages API and the
pinned Claude CLI (the flaky proxy and the tiny agent are modules of their own)."""

from testkit.fakes.claude_cli import (
    CLAUDE_BIN_ENV,
    REPO_ROOT,
    STREAM_JSON_ARGS,
    claude_env,
    find_claude,
)
from testkit.fakes.messages_api import (
    DEFAULT_RULES,
    ErrorReply,
    FakeMessagesAPI,
    RecordedRequest,
    Reply,
    Rule,
    TextReply,
    ToolUseReply,
    Turn,
    echo_rule,
    is_side_request,
    parse_turn,
    run_rule,
    sleep_rule,
    tool_result_rule,
    write_rule,
)

__all__ = [
    "CLAUDE_BIN_ENV",
    "DEFAULT_RULES",
    "REPO_ROOT",
    "STREAM_JSON_ARGS",
    "ErrorReply",
    "FakeMessagesAPI",
    "RecordedRequest",
    "Reply",
    "Rule",
    "TextReply",
    "ToolUseReply",
    "Turn",
    "claude_env",
    "echo_rule",
    "find_claude",
    "is_side_request",
    "parse_turn",
    "run_rule",
    "sleep_rule",
    "tool_result_rule",
    "write_rule",
]
