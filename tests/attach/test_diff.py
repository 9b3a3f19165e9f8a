"""``/diff`` in ``rcd attach``: against a real relay and daemon (tiny agent, one worktree per
session), the work left in a session's worktree (an edit, a new file, a deleted one, a
binary, a large one, hostile names) is listed with statuses and counts, then diffed file by
file with line numbers and colours; ``/diff PATH`` shows one file; landing it shows in the
log; a session whose worktree is gone says so in one line and the view goes on."""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

import wire
from attach.api import parse_entry
from attach.diffview import render_changes, render_file_diff, sizes_of
from attach.render import Style, render_entry
from attach.state import SessionView
from testkit.harness import REPO, Daemon, Relay, start_daemon
from tests.attach.conftest import device_token, new_session
from tests.attach.pty_client import GUARD, attach_argv, open_attach

HOSTILE = "-rf new ü.txt"
NEWLINE = "-rf new\nline ü.txt"
SHOWN_NEWLINE = "-rf new\\nline ü.txt"  # as attach prints it (and as it is typed)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@pytest.fixture
async def daemon(relay: Relay, tmp_path: Path) -> AsyncIterator[Daemon]:
    """A daemon that starts each session in a worktree of its own (no spares made ahead)."""
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Dev")
    git(repo, "config", "user.email", "dev@example.invalid")
    (repo / "lib.py").write_text("one\ntwo\nthree\n")
    (repo / "gone.txt").write_text("bye\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "start")
    daemon = await start_daemon(
        relay, tmp_path / "daemon-home", repo, "--spawn", "worktree", "--spare-worktrees", "0"
    )
    yield daemon
    await daemon.stop()


async def started(relay: Relay, session_id: str) -> dict[str, str]:
    events = await relay.events(session_id)
    data: dict[str, str] = next(e for e in events if e["kind"] == "session_started")["data"]
    return data


def make_changes(cwd: Path) -> None:
    """The session's work, left by hand in its worktree."""
    # Not the same size as before: see the report on git's racy timestamps.
    (cwd / "lib.py").write_text("one\nTWO!\nthree\n")
    (cwd / "notes.md").write_text("hello\nworld\n")
    (cwd / "gone.txt").unlink()
    (cwd / "logo.png").write_bytes(b"PNG\x00\x01\x02")
    (cwd / "big.log").write_text("a log line\n" * 200_000)  # 2.1 MB: summarised
    (cwd / HOSTILE).write_text("hostile\n")
    (cwd / NEWLINE).write_text("two lines\n")


def block(lines: list[str], first: str) -> list[str]:
    """The lines from the last one equal to ``first`` up to the next blank line."""
    start = len(lines) - 1 - lines[::-1].index(first)
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


async def test_diff_lists_the_work_then_each_file_s_diff(
    relay: Relay, daemon: Daemon, attach_env: dict[str, str]
) -> None:
    session_id = await new_session(relay, daemon, "hello", "diff me")
    info = await started(relay, session_id)
    cwd, branch = Path(info["cwd"]), info["branch"]
    assert cwd != daemon.directory and branch
    make_changes(cwd)
    token = await device_token(relay, "term")
    async with open_attach(attach_argv(session_id, "--relay", relay.url, "--token", token),
                           attach_env) as term:  # fmt: skip
        await term.expect("live from here")
        await term.type_line("/diff")
        header = f"━━ changes: {branch} → main · 0 commits · uncommitted changes ━━"
        await term.expect(header)
        await term.expect("      2 +world")  # notes.md's diff, the last one
        lines = term.lines()
        listed = block(lines, header)[1:]
        assert sorted(listed) == sorted(
            [
                f"  added     {SHOWN_NEWLINE}  +1 -0",
                f"  added     {HOSTILE}  +1 -0",
                "  added     big.log  large, 2.1 MB",
                "  deleted   gone.txt  +0 -1",
                "  modified  lib.py  +1 -1",
                "  added     logo.png  binary, 6 B",
                "  added     notes.md  +2 -0",
            ]
        ), lines
        assert block(lines, "── modified lib.py  +1 -1 ──") == [
            "── modified lib.py  +1 -1 ──",
            "@@ -1,3 +1,3 @@",
            "  1   1  one",
            "  2     -two",
            "      2 +TWO!",
            "  3   3  three",
        ]
        gone = block(lines, "── deleted gone.txt  +0 -1 ──")
        assert gone[1:] == ["@@ -1 +0,0 @@", "  1     -bye"]
        assert block(lines, "── added logo.png  binary, 6 B ──")[1:] == ["  binary, 6 B"]
        assert block(lines, "── added big.log  large, 2.1 MB ──")[1:] == ["  large, 2.1 MB"]
        assert block(lines, f"── added {SHOWN_NEWLINE}  +1 -0 ──")[2:] == ["      1 +two lines"]
        assert block(lines, f"── added {HOSTILE}  +1 -0 ──")[2:] == ["      1 +hostile"]
        # Removals red, additions green, hunk headers cyan (stdout is a terminal).
        assert "\x1b[31m  2     -two\x1b[0m" in term.raw
        assert "\x1b[32m      2 +TWO!\x1b[0m" in term.raw
        assert "\x1b[36m@@ -1,3 +1,3 @@\x1b[0m" in term.raw

        # One file, by its name (dash, spaces, unicode), or as the list shows it.
        await term.type_line(f"/diff {HOSTILE}")
        await term.expect(f"── added {HOSTILE}  +1 -0 ──\n@@ -0,0 +1 @@\n      1 +hostile\n")
        await term.type_line(f"/diff {SHOWN_NEWLINE}")
        await term.expect(f"── added {SHOWN_NEWLINE}  +1 -0 ──\n@@ -0,0 +1 @@\n      1 +two lines")
        await term.type_line("/diff lib.py")
        await term.expect("── modified lib.py  +1 -1 ──\n@@ -1,3 +1,3 @@\n  1   1  one\n")
        await term.type_line("/diff nope.txt")
        await term.expect("no diff: 'nope.txt' is not among the changed files\n")

        # Landed from elsewhere (the phone): one line in the log, and /diff follows.
        committed = await relay.client.post(
            f"/api/sessions/{session_id}/changes/commit", json={"message": "Land it"}
        )
        assert committed.status_code == 200, committed.text
        await term.expect(r"⎇ committed [0-9a-f]{7,}[^\n]* \(from tests\)\n", regex=True)
        await term.type_line("/diff")
        await term.expect(f"━━ changes: {branch} → main · 1 commit ━━\n")
        await term.expect("      2 +world")
        await term.type_line("/quit")
        assert await term.wait() == 0
    assert git(cwd, "status", "--porcelain") == ""


async def test_no_changes_and_a_worktree_gone_are_one_line(
    relay: Relay, daemon: Daemon, attach_env: dict[str, str]
) -> None:
    session_id = await new_session(relay, daemon, "hello", "clean one")
    branch = (await started(relay, session_id))["branch"]
    token = await device_token(relay, "script")
    argv = attach_argv(session_id, "--relay", relay.url, "--token", token)
    # Off a terminal: the history, then the diff, then it leaves.
    with trio.fail_after(GUARD):
        result = await trio.run_process(
            argv, env=attach_env, stdin=b"/diff\n", capture_stdout=True, capture_stderr=True,
            check=False, cwd=str(REPO),
        )  # fmt: skip
    assert result.returncode == 0, result
    out = result.stdout.decode()
    assert "\x1b" not in out
    assert out.endswith(
        "live from here ──\n"
        f"━━ changes: {branch} → main · 0 commits ━━\n"
        "no changes since the session started\n"
    ), out

    # Ended with nothing in it: its worktree and branch are released.
    assert (await relay.client.post(f"/api/sessions/{session_id}/stop")).status_code == 202
    events = await relay.wait_kind(session_id, "session_ended")
    assert next(e for e in events if e["kind"] == "session_ended")["data"]["worktree_kept"] is False
    async with open_attach(argv, attach_env) as term:
        await term.expect("live from here")
        await term.type_line("/diff")
        await term.expect(
            "no diff: the session's worktree and branch are gone: its work was clean, landed or"
            " discarded\n"
        )
        # The session view goes on.
        await term.type_line("/help")
        await term.expect("  /diff [PATH]   the session's changes since it started")
        await term.type_line("/quit")
        assert await term.wait() == 0
    assert "Traceback" not in term.text


def test_renames_more_files_and_sizes_are_named() -> None:
    def change(**fields: object) -> wire.FileChange:
        base: dict[str, object] = {"path": "a", "status": "modified", "added": 1, "removed": 0}
        return wire.decode(wire.FileChange, base | fields)

    changes = wire.Changes(
        cwd="/w", spawn="worktree", base="b", head="h", branch="rcd/x", target=None,
        commits=2, uncommitted=False, more_files=5,
        files=[
            change(path="new\x1b[2J.py", old_path="old.py", status="renamed"),
            change(path="run.sh", status="type_changed", added=0),
            change(path="img", binary=True, added=None, removed=None, size=2048, old_size=10),
            change(path="blob", binary=True, added=None, removed=None, size=None, old_size=3),
        ],
    )  # fmt: skip
    assert render_changes(changes, Style()) == [
        "━━ changes: rcd/x · 2 commits ━━",
        "  renamed       old.py → new\\x1b[2J.py  +1 -0",
        "  type changed  run.sh  +0 -0",
        "  modified      img  binary, 10 B → 2.0 KB",
        "  modified      blob  binary, was 3 B",
        "  … and 5 more file(s), not listed",
    ]
    assert sizes_of(change(size=3 * 1024 * 1024, old_size=None)) == "large, 3.0 MB"
    assert sizes_of(change(size=100)) is None


def test_a_diff_s_lines_are_numbered_and_shown_safely() -> None:
    diff = wire.FileDiff(
        file=wire.FileChange(path="x.py", status="modified", added=2, removed=1),
        hunks=[
            wire.Hunk(
                header="@@ -99,2 +99,3 @@ def f():",
                old_start=99,
                new_start=99,
                lines=[
                    " \tkeep",
                    "-old\x1b]0;owned\x07",
                    "+new",
                    "+more",
                    "\\ No newline at end of file",
                ],
            )
        ],
        truncated=True,
    )
    assert render_file_diff(diff, Style()) == [
        "── modified x.py  +2 -1 ──",
        "@@ -99,2 +99,3 @@ def f():",
        " 99  99  \tkeep",
        "100     -old\\x1b]0;owned\\x07",
        "    100 +new",
        "    101 +more",
        "        \\ No newline at end of file",
        "  … the rest of this file's diff is left out (too long)",
    ]
    colored = render_file_diff(diff, Style(color=True))
    assert colored[3] == "\x1b[31m100     -old\\x1b]0;owned\\x07\x1b[0m"
    assert colored[4] == "\x1b[32m    100 +new\x1b[0m"


def test_a_git_action_is_one_line_in_the_log() -> None:
    view = SessionView()
    action = wire.GitAction(
        action="merge", origin="phone", summary="merged rcd/x into main\n(fast-forward)"
    )
    e = parse_entry(wire.encode(wire.make_event(1, 1.0, action)))
    assert view.accept(e)
    assert render_entry(e, view, Style()) == [
        "⎇ merged rcd/x into main\\n(fast-forward) (from phone)"
    ]
    assert re.fullmatch(r"\x1b\[36m⎇ .*\x1b\[0m", render_entry(e, view, Style(color=True))[0])
