"""What an earlier run left is found by a new manager (a daemon restart) and only reported."""

from __future__ import annotations

from pathlib import Path

import trio

from worktrees import Worktrees

from .gitrepo import TIMEOUT, commit_file, git, rcd_branches, registered_worktrees, worktree_dirs


async def test_leftovers_are_found_after_a_restart_and_nothing_is_deleted(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        before = await Worktrees.open(repo)
        clean = await before.create("clean", "s1")
        dirty = await before.create("dirty", "s2")
        committed = await before.create("committed", "s3")
        (dirty.path / "scratch.txt").write_text("unsaved thoughts\n")
        work = await commit_file(committed.path, "feature.py")
        assert (await before.release(committed)).removed  # branch kept, directory gone
        stray = repo / ".rcd" / "worktrees" / "stray"
        stray.mkdir()
        (stray / "file.txt").write_text("not a worktree\n")

        # "Restart": a new manager, opened from a subdirectory, knows nothing in memory.
        after = await Worktrees.open(repo / ".rcd")
        found = {leftover.worktree.slug: leftover for leftover in await after.leftovers()}
        assert list(found) == ["clean", "committed", "dirty", "stray"]

        assert found["clean"].worktree == clean  # base commit recovered from git config
        assert found["clean"].state.kept_reasons == ()
        assert found["dirty"].worktree == dirty
        assert found["dirty"].state.kept_reasons == ("untracked files",)
        assert found["committed"].worktree == committed
        assert not found["committed"].state.exists
        assert found["committed"].state.commits_ahead == 1
        assert found["committed"].summary == (
            "rcd/committed at (no directory): 1 commit not in its base"
        )
        assert (found["stray"].state.exists, found["stray"].state.registered) == (True, False)
        assert found["stray"].worktree.base_commit is None
        assert found["stray"].summary == (
            f"rcd/stray at {stray.resolve()}: a directory that git does not know as a "
            "worktree; untracked files"
        )

        # Reporting deleted nothing.
        assert await registered_worktrees(repo) == {clean.path, dirty.path}
        assert await rcd_branches(repo) == {clean.branch, dirty.branch, committed.branch}
        assert await worktree_dirs(repo) == {"clean", "dirty", "stray"}
        assert (dirty.path / "scratch.txt").read_text() == "unsaved thoughts\n"

        # The new run can release what is safe to release, and keeps the rest.
        assert not (await after.release(found["clean"].worktree)).kept
        assert (await after.release(found["stray"].worktree)).kept_reasons == (
            "a directory that git does not know as a worktree",
            "untracked files",
        )
        assert (stray / "file.txt").read_text() == "not a worktree\n"
        assert (await after.release(found["committed"].worktree)).kept_reasons == (
            "1 commit not in its base",
        )
        assert await git(repo, "rev-parse", committed.branch) == work


async def test_find_rebuilds_a_worktree_from_its_path(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        created = await (await Worktrees.open(repo)).create("resume me", "s1")
        manager = await Worktrees.open(repo)
        assert await manager.find(str(created.path)) == created
        assert await manager.find(repo) is None
        assert await manager.find(repo / ".rcd" / "worktrees" / "nothing-here") is None


async def test_no_leftovers_in_a_fresh_repository(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        assert await (await Worktrees.open(repo)).leftovers() == []
