"""What ``rcd import`` reads of the claude CLI's own conversations: made by the real pinned
CLI against the fake Messages API (listed by directory, newest first, with their first
prompt; their turns as session events; held while a CLI has one open), and the rules the
CLI's format needs written by hand (a rewound branch, a torn line, a stale announcement)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

import wire
from spawn import ImportRefused
from spawn.transcripts import (
    IMPORTED_ORIGIN,
    MAX_IMPORTED_TEXT,
    conversation_path,
    earlier,
    earlier_events,
    holder,
    list_conversations,
    project_key,
)
from testkit.fakes import FakeMessagesAPI, claude_env, local_conversation, open_conversation


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        url: str = await nursery.start(FakeMessagesAPI().run)
        yield url
        nursery.cancel_scope.cancel()


def test_the_project_key_is_the_directory_with_every_other_character_a_dash() -> None:
    # Observed with the pinned CLI (NOTES.md): "/tmp/clx/my.proj_x y" → "-tmp-clx-my-proj-x-y".
    assert project_key("/tmp/clx/my.proj_x y") == "-tmp-clx-my-proj-x-y"


async def test_conversations_made_by_the_cli_are_listed_and_read_back(
    base_url: str, tmp_path: Path
) -> None:
    home, project, other = tmp_path / "home", tmp_path / "my.proj", tmp_path / "other"
    project.mkdir()
    other.mkdir()
    env = claude_env(home, base_url)
    older = await trio.to_thread.run_sync(
        local_conversation, home, base_url, project, ["echo first words", "run echo hi"]
    )
    newer = await trio.to_thread.run_sync(
        local_conversation, home, base_url, project, ["echo later"]
    )
    await trio.to_thread.run_sync(local_conversation, home, base_url, other, ["elsewhere"])

    listed = list_conversations(str(project), env)
    assert [(c.id, c.first_prompt) for c in listed] == [
        (newer, "echo later"),
        (older, "echo first words"),
    ]
    assert listed[0].path.parent.name == project_key(str(project))
    assert conversation_path(older, env) == listed[1].path

    events = earlier_events(listed[1].path)
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "UserMessage", "AssistantText", "UserMessage", "ToolUse", "ToolResult", "AssistantText",
    ]  # fmt: skip
    first, reply, second, use, result, done = events
    assert isinstance(first, wire.UserMessage) and first.text == "echo first words"
    assert first.origin == IMPORTED_ORIGIN
    assert isinstance(reply, wire.AssistantText) and reply.text == "echo: echo first words"
    assert isinstance(second, wire.UserMessage) and second.text == "run echo hi"
    assert isinstance(use, wire.ToolUse) and use.name == "Bash"
    assert isinstance(result, wire.ToolResult) and result.tool_use_id == use.id
    assert result.content == "hi"
    assert isinstance(done, wire.AssistantText) and done.text == "done: hi"
    # Each message is its own input: ids never collide.
    assert len({first.input_id, second.input_id}) == 2
    assert holder(older, env) is None
    assert earlier(older, env, str(project)) == events
    # Only a conversation of the directory asked for: another's is refused...
    elsewhere = list_conversations(str(other), env)[0].id
    with pytest.raises(ImportRefused, match=f"no Claude Code conversation {elsewhere} of"):
        earlier(elsewhere, env, str(project))
    # ...and a resume (no directory) only checks that nobody has it open.
    assert earlier(elsewhere, env) == []


async def test_a_conversation_open_in_a_running_cli_is_held(base_url: str, tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    env = claude_env(home, base_url)
    conversation = await trio.to_thread.run_sync(
        local_conversation, home, base_url, project, ["echo hello"]
    )
    # A CLI that resumes it and waits for its next message (stdin open).
    async with open_conversation(home, base_url, project, conversation) as cli:
        assert holder(conversation, env) == cli.pid
        with pytest.raises(ImportRefused, match=rf"open in a running claude \(pid {cli.pid}\)"):
            earlier(conversation, env, str(project))
        with pytest.raises(ImportRefused, match="open in a running claude"):
            earlier(conversation, env)  # a resume is refused too
    # Killed, it leaves its announcement behind: a dead pid holds nothing.
    assert list((home / ".claude" / "sessions").glob(f"{cli.pid}.json"))
    assert holder(conversation, env) is None
    assert [type(e).__name__ for e in earlier(conversation, env, str(project))][:2] == [
        "UserMessage", "AssistantText",
    ]  # fmt: skip


def _entry(uuid: str, parent: str | None, kind: str, content: object, **extra: object) -> str:
    message = {"role": kind, "content": content}
    return json.dumps(
        {"type": kind, "uuid": uuid, "parentUuid": parent, "message": message, **extra}
    )


def test_only_the_branch_that_stands_is_shown_and_torn_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    lines = [
        json.dumps({"type": "queue-operation", "operation": "enqueue"}),
        _entry("u1", None, "user", "first"),
        _entry("a1", "u1", "assistant", [{"type": "text", "text": "one"}]),
        # Rewound: the user went back and asked again from u1's answer.
        _entry("u2", "a1", "user", "dropped question"),
        _entry("a2", "u2", "assistant", [{"type": "text", "text": "dropped answer"}]),
        _entry("u3", "a1", "user", "asked instead"),
        _entry("s1", "u3", "user", "a subagent's prompt", isSidechain=True),
        _entry("m1", "u3", "user", "<command-name>/model</command-name>"),
        _entry("x1", "m1", "user", "caveat", isMeta=True),
        _entry("a3", "x1", "assistant", [{"type": "text", "text": "three"}]),
        '{"type": "assistant", "uuid": "a4", "parentUuid": "a3", "mess',
    ]
    path.write_text("\n".join(lines) + "\n")
    shown = [(type(e).__name__, getattr(e, "text", "")) for e in earlier_events(path)]
    assert shown == [
        ("UserMessage", "first"),
        ("AssistantText", "one"),
        ("UserMessage", "asked instead"),
        ("AssistantText", "three"),
    ]


def test_bad_ids_unknown_conversations_and_stale_announcements(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    with pytest.raises(ImportRefused, match="not a Claude Code conversation id"):
        earlier("../../etc/passwd", env)
    unknown = "0b4c8a37-3d0e-4d61-9a55-5d7e0f1a2b3c"
    with pytest.raises(ImportRefused, match="lower-case uuid"):
        earlier(unknown.upper(), env)
    with pytest.raises(ImportRefused, match=f"no Claude Code conversation {unknown} of /p"):
        earlier(unknown, env, "/p")
    # Unreadable: an error that says so, never an exception of another kind.
    (tmp_path / ".claude" / "projects" / "-p" / f"{unknown}.jsonl").mkdir(parents=True)
    with pytest.raises(ImportRefused, match=f"no Claude Code conversation {unknown} of /p"):
        earlier(unknown, env, "/p")  # a directory is no transcript
    path = tmp_path / ".claude" / "projects" / "-q" / f"{unknown}.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"[" * 100_000 + b"\n")  # nesting past what json parses: skipped
    assert earlier(unknown, env, "/q") == []
    path.unlink()
    path.symlink_to("/proc/self/mem")  # a file whose reading fails, even for root
    with pytest.raises(ImportRefused, match=f"cannot read the conversation {unknown}"):
        earlier(unknown, env, "/q")
    sessions = tmp_path / ".claude" / "sessions"
    sessions.mkdir(parents=True)
    # This very process, but announced with another start time: a pid reused since.
    mine = {"pid": os.getpid(), "sessionId": unknown, "procStart": "1"}
    (sessions / f"{os.getpid()}.json").write_text(json.dumps(mine))
    (sessions / "bad.json").write_text("{not json")
    assert holder(unknown, env) is None
    # CLAUDE_CONFIG_DIR wins over the home.
    assert list_conversations(str(tmp_path), {**env, "CLAUDE_CONFIG_DIR": str(tmp_path)}) == []


def test_long_texts_are_cut_and_prompts_with_images_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    big = "x" * (MAX_IMPORTED_TEXT + 10)
    lines = [
        _entry("u1", None, "user", [{"type": "text", "text": "see"}, {"type": "image"}]),
        _entry("a1", "u1", "assistant", [{"type": "text", "text": big}]),
        _entry("s1", "a1", "user", "summary of before", isCompactSummary=True),
    ]
    path.write_text("\n".join(lines) + "\n")
    prompt, reply = earlier_events(path)
    assert isinstance(prompt, wire.UserMessage) and prompt.text == "see\n[image]"
    assert isinstance(reply, wire.AssistantText)
    cut = "\n… (10 more characters in the local transcript)"
    assert reply.text == "x" * MAX_IMPORTED_TEXT + cut
