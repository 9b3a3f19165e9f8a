"""worktrees.changes: a session's work against its start, read from real repositories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from worktrees import GitFailed, Worktrees
from worktrees.changes import DIFF_LIMIT, WorktreeError, file_diff, readable, snapshot

from .gitrepo import TIMEOUT, git

#: Names a session may leave behind that a careless tool would misread.
HOSTILE = [
    "with space.txt",
    "new\nline.txt",
    "-rf",
    "..x",
    "x..",
    "ünïcødé €.txt",
    ":(glob)*",
    "--help",
]


async def _work(path: Path) -> None:
    """Edit, add, delete and rename (committed and not), one binary, one 5 MB file."""
    await trio.Path(path / "lib.py").write_text("one\nTWO\nthree\nfour\n")
    await git(path, "rm", "-q", "gone.txt")
    await git(path, "commit", "-q", "-am", "edit lib, delete gone")
    await git(path, "mv", "old name.txt", "renamed.txt")
    await git(path, "commit", "-q", "-m", "rename")
    await trio.Path(path / "README.md").write_text("hello\nmore\n")  # uncommitted edit
    await trio.Path(path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x01\x02" * 10)
    await trio.Path(path / "big.txt").write_text("x" * 99 + "\n" * 1 + ("y" * 99 + "\n") * 52_428)


@pytest.fixture
async def seeded(repo: Path) -> Path:
    await trio.Path(repo / "lib.py").write_text("one\ntwo\nthree\n")
    await trio.Path(repo / "gone.txt").write_text("bye\n")
    await trio.Path(repo / "old name.txt").write_text("".join(f"line {i}\n" for i in range(40)))
    await git(repo, "add", ".")
    await git(repo, "commit", "-q", "-m", "seed")
    return repo


async def test_committed_and_uncommitted_work_show_together(seeded: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(seeded)
        wt = await manager.create("task", "s1")
        assert wt.base_commit is not None
        await _work(wt.path)
        agent_status = await git(wt.path, "status", "--porcelain")

        now = await snapshot(wt.path, wt.base_commit)
        shown = {f.path: f for f in now.files}
        assert set(shown) == {
            "lib.py",
            "gone.txt",
            "renamed.txt",
            "README.md",
            "logo.png",
            "big.txt",
        }
        assert (shown["lib.py"].status, shown["lib.py"].added, shown["lib.py"].removed) == (
            "modified", 2, 1,
        )  # fmt: skip
        assert shown["gone.txt"].status == "deleted" and shown["gone.txt"].size is None
        assert shown["renamed.txt"].status == "renamed"
        assert shown["renamed.txt"].old_path == "old name.txt"
        assert shown["README.md"].status == "modified"
        assert shown["logo.png"].binary and shown["logo.png"].added is None
        big = shown["big.txt"]
        assert big.status == "added" and big.size is not None and big.size > 5_000_000
        assert big.too_large and not big.binary
        assert now.commits == 2 and now.uncommitted
        # Reading the work changed nothing the agent sees.
        assert await git(wt.path, "status", "--porcelain") == agent_status

        edit = await file_diff(wt.path, wt.base_commit, "lib.py")
        assert edit.hunks is not None and edit.summary is None
        assert edit.hunks[0].lines == [" one", "-two", "+TWO", " three", "+four"]
        assert (edit.hunks[0].old_start, edit.hunks[0].new_start) == (1, 1)
        moved = await file_diff(wt.path, wt.base_commit, "renamed.txt")
        assert moved.hunks == [] and moved.change.old_path == "old name.txt"
        binary = await file_diff(wt.path, wt.base_commit, "logo.png")
        assert binary.hunks is None and binary.summary == "binary, 110 B"
        huge = await file_diff(wt.path, wt.base_commit, "big.txt")
        assert huge.hunks is None and huge.summary == "large, 5.0 MB"
        assert big.size > DIFF_LIMIT


async def test_only_changed_files_are_ever_read(seeded: Path) -> None:
    with trio.fail_after(TIMEOUT):
        base = await git(seeded, "rev-parse", "HEAD")
        await trio.Path(seeded / "lib.py").write_text("changed\n")
        for asked in ("gone.txt", "../etc/passwd", "/etc/passwd", ".git/config", "*"):
            with pytest.raises(WorktreeError, match="not among the changed files"):
                await file_diff(seeded, base, asked)


async def test_a_history_git_cannot_walk_fails_as_git_failed(seeded: Path) -> None:
    """Both ends exist (the first check passes) but a commit between them is gone: the
    count of commits fails inside the snapshot's concurrent reads, and comes out as the
    promised :class:`GitFailed`, not an exception group."""
    with trio.fail_after(TIMEOUT):
        base = await git(seeded, "rev-parse", "HEAD")
        for n in (1, 2):
            await trio.Path(seeded / "lib.py").write_text(f"edit {n}\n")
            await git(seeded, "commit", "-q", "-am", f"edit {n}")
        middle = await git(seeded, "rev-parse", "HEAD~1")
        await trio.Path(seeded / ".git" / "objects" / middle[:2] / middle[2:]).unlink()
        with pytest.raises(GitFailed, match="rev-list"):
            await snapshot(seeded, base)


async def test_hostile_names_are_only_names(seeded: Path) -> None:
    with trio.fail_after(TIMEOUT):
        base = await git(seeded, "rev-parse", "HEAD")
        for name in HOSTILE:
            await trio.Path(seeded / name).write_text("x\n")
        now = await snapshot(seeded, base)
        assert sorted(f.path for f in now.files) == sorted(HOSTILE)
        for name in HOSTILE:
            diff = await file_diff(seeded, base, name)
            assert diff.hunks is not None and diff.hunks[0].lines == ["+x"], name


async def test_a_name_that_is_not_utf8_is_shown_and_diffed(seeded: Path) -> None:
    with trio.fail_after(TIMEOUT):
        base = await git(seeded, "rev-parse", "HEAD")
        raw = os.fsdecode(b"caf\xe9.txt")
        await trio.Path(seeded / raw).write_bytes(b"caf\xe9\n")
        now = await snapshot(seeded, base)
        (change,) = now.files
        shown = readable(change.path)
        assert shown == "caf\ufffd.txt"
        diff = await file_diff(seeded, base, shown)
        assert diff.hunks is not None and diff.hunks[0].lines == ["+caf\ufffd"]


async def test_a_racily_clean_file_is_still_seen(seeded: Path) -> None:
    """A file rewritten at the same size in the second its index was written: git's stat
    data cannot tell, so git reads it — and so must the snapshot's copy of the index."""
    with trio.fail_after(TIMEOUT):
        base = await git(seeded, "rev-parse", "HEAD")
        index = seeded / ".git" / "index"
        lib = seeded / "lib.py"
        # As on many machines (and as within one second anyway): ctime is not compared.
        await git(seeded, "config", "core.trustctime", "false")
        long_ago = os.stat(lib).st_mtime_ns - 100 * 10**9
        os.utime(lib, ns=(long_ago, long_ago))
        await git(seeded, "update-index", "--refresh")  # the index vouches for lib.py
        await trio.Path(lib).write_text("one\nTWO\nthree\n")  # the same size...
        for path in (lib, index):  # ...and in the second the index was written
            os.utime(path, ns=(long_ago, long_ago))
        assert "lib.py" in await git(seeded, "--no-optional-locks", "status", "--porcelain")
        now = await snapshot(seeded, base)
        assert [f.path for f in now.files] == ["lib.py"]
