"""Worktrees.inspect and Worktrees.release: work is never lost."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio

from worktrees import Released, Worktree, WorktreeError, Worktrees

from .gitrepo import TIMEOUT, commit_file, git, rcd_branches, recorded_bases, registered_worktrees


async def fresh(repo: Path, title: str = "task") -> tuple[Worktrees, Worktree]:
    manager = await Worktrees.open(repo)
    return manager, await manager.create(title, "s1")


async def branch_exists(repo: Path, branch: str) -> bool:
    return branch in await rcd_branches(repo)


async def test_clean_worktree_is_removed_and_its_branch_deleted(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        state = await manager.inspect(wt)
        assert (state.exists, state.registered, state.uncommitted, state.untracked) == (
            True,
            True,
            False,
            False,
        )
        assert state.commits_ahead == 0
        assert state.head == wt.base_commit
        assert state.kept_reasons == ()

        released = await manager.release(wt)
        assert released == Released(removed=True, branch_deleted=True, kept_reasons=())
        assert not released.kept
        assert not wt.path.exists()
        assert await registered_worktrees(repo) == set()
        assert not await branch_exists(repo, wt.branch)
        assert await recorded_bases(repo) == {}  # the record went with its branch

        # Releasing again is harmless: everything is already gone.
        assert await manager.release(wt) == released
        stats = manager.statistics()
        assert (stats.released, stats.removed, stats.branches_deleted, stats.kept) == (2, 1, 1, 0)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("modify", "uncommitted changes"),
        ("stage", "uncommitted changes"),
        ("new", "untracked files"),
    ],
)
async def test_dirty_worktree_and_branch_are_kept(repo: Path, change: str, reason: str) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        if change == "modify":
            (wt.path / "README.md").write_text("edited by the agent\n")
        elif change == "stage":
            (wt.path / "staged.txt").write_text("staged\n")
            await git(wt.path, "add", "staged.txt")
        else:
            (wt.path / "notes.txt").write_text("new file\n")

        released = await manager.release(wt)
        assert released == Released(removed=False, branch_deleted=False, kept_reasons=(reason,))
        assert released.kept
        assert wt.path.is_dir()
        assert await registered_worktrees(repo) == {wt.path}
        assert await branch_exists(repo, wt.branch)
        if change == "modify":
            assert (wt.path / "README.md").read_text() == "edited by the agent\n"
        elif change == "stage":
            assert (wt.path / "staged.txt").read_text() == "staged\n"
        else:
            assert (wt.path / "notes.txt").read_text() == "new file\n"


async def test_a_staged_rename_is_read_as_one_change(repo: Path) -> None:
    # git status -z prints a rename as two fields: the old name ("? odd.md") must not be
    # read as an entry of its own (here, as an untracked file).
    with trio.fail_after(TIMEOUT):
        await commit_file(repo, "? odd.md")
        manager, wt = await fresh(repo)
        await git(wt.path, "mv", "? odd.md", "even.md")
        state = await manager.inspect(wt)
        assert (state.uncommitted, state.untracked) == (True, False)
        assert state.head == wt.base_commit


async def test_untracked_names_with_newlines_are_read(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        (wt.path / "new\n1 file.txt").write_text("x\n")
        state = await manager.inspect(wt)
        assert (state.uncommitted, state.untracked) == (False, True)
        assert state.kept_reasons == ("untracked files",)


async def test_a_worktree_on_another_branch_is_read_against_its_own_branch(repo: Path) -> None:
    # The agent switched branches: rcd's branch is still judged by its own commits.
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        await git(wt.path, "switch", "-q", "-c", "elsewhere")
        await commit_file(wt.path, "other.txt", "on another branch\n")
        state = await manager.inspect(wt)
        assert state.branch_exists
        assert state.commits_ahead == 0
        assert state.head != wt.base_commit
        assert state.kept_reasons == ()


async def test_ignored_files_do_not_keep_a_worktree(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        with (repo / ".git" / "info" / "exclude").open("a") as f:
            f.write("*.log\n")
        (wt.path / "build.log").write_text("output\n")
        assert not (await manager.inspect(wt)).untracked
        assert not (await manager.release(wt)).kept


async def test_commits_keep_the_branch_but_not_a_clean_directory(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        work = await commit_file(wt.path, "feature.py")
        state = await manager.inspect(wt)
        assert state.commits_ahead == 1
        assert state.head == work

        released = await manager.release(wt)
        assert released == Released(
            removed=True, branch_deleted=False, kept_reasons=("1 commit not in its base",)
        )
        assert not wt.path.exists()
        assert await git(repo, "rev-parse", wt.branch) == work
        assert await recorded_bases(repo) == {wt.branch: wt.base_commit}


async def test_dirty_worktree_with_commits_keeps_both(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        await commit_file(wt.path, "one.py")
        await commit_file(wt.path, "two.py")
        (wt.path / "one.py").write_text("changed\n")
        released = await manager.release(wt)
        assert released == Released(
            removed=False,
            branch_deleted=False,
            kept_reasons=("uncommitted changes", "2 commits not in its base"),
        )
        assert (wt.path / "one.py").read_text() == "changed\n"
        assert await git(wt.path, "rev-list", "--count", f"{wt.base_commit}..{wt.branch}") == "2"


async def test_merged_commits_still_keep_the_branch(repo: Path) -> None:
    # `git branch -d` would delete it (it is merged into HEAD); the rule is "commits not in
    # its base", so the branch stays until someone deletes it on purpose.
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        await commit_file(wt.path, "feature.py")
        await git(repo, "merge", "-q", "--ff-only", wt.branch)
        released = await manager.release(wt)
        assert (released.removed, released.branch_deleted) == (True, False)


async def test_branch_without_commits_is_deleted_even_when_head_moved_away(repo: Path) -> None:
    # `git branch -d` would refuse here (rcd/task is not merged into the orphan HEAD).
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        await git(repo, "checkout", "-q", "--orphan", "elsewhere")
        await git(repo, "commit", "-q", "-m", "unrelated")
        assert not (await manager.release(wt)).kept
        assert not await branch_exists(repo, wt.branch)


async def test_commits_on_a_detached_head_keep_the_directory(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        await git(wt.path, "checkout", "-q", "--detach")
        lone = await commit_file(wt.path, "lone.py")
        state = await manager.inspect(wt)
        assert (state.detached_commits, state.commits_ahead, state.head) == (1, 0, lone)
        released = await manager.release(wt)
        assert released.kept_reasons == ("1 commit on a detached HEAD that no branch contains",)
        assert not released.removed
        assert await git(wt.path, "rev-parse", "HEAD") == lone


async def test_unknown_base_keeps_the_branch(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        await git(repo, "config", "--unset", f"branch.{wt.branch}.rcdbase")
        (found,) = await manager.leftovers()
        assert found.worktree.base_commit is None
        assert found.state.commits_ahead is None
        released = await manager.release(found.worktree)
        assert released == Released(
            removed=True, branch_deleted=False, kept_reasons=("its base commit is not recorded",)
        )


async def test_directory_deleted_by_hand_is_forgotten_and_branch_released(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        await trio.to_thread.run_sync(shutil.rmtree, wt.path)
        state = await manager.inspect(wt)
        assert (state.exists, state.registered) == (False, True)
        assert not (await manager.release(wt)).kept
        assert await registered_worktrees(repo) == set()
        assert not await branch_exists(repo, wt.branch)


async def test_locked_worktree_is_kept_with_gits_reason(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        await git(repo, "worktree", "lock", "--reason", "mine", str(wt.path))
        released = await manager.release(wt)
        assert (released.removed, released.branch_deleted) == (False, False)
        (reason,) = released.kept_reasons
        assert reason.startswith("git would not remove it (") and "locked" in reason
        assert wt.path.is_dir()


async def test_restore_brings_back_a_removed_worktree_on_its_kept_branch(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        work = await commit_file(wt.path, "feature.py")
        assert (await manager.release(wt)).removed
        restored = await manager.restore(wt.path)
        assert restored == wt  # same path, branch and recorded base
        assert await git(wt.path, "rev-parse", "HEAD") == work
        assert (wt.path / "feature.py").exists()
        # Released again, it is judged as before: the commit keeps the branch.
        assert (await manager.release(restored)).kept_reasons == ("1 commit not in its base",)


async def test_restore_makes_a_deleted_branch_again_from_head(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        assert (await manager.release(wt)).branch_deleted
        head = await commit_file(repo, "later.py")  # the repository moved on meanwhile
        restored = await manager.restore(wt.path)
        assert (restored.path, restored.branch) == (wt.path, wt.branch)
        assert restored.base_commit == head
        assert await git(wt.path, "rev-parse", "HEAD") == head
        assert await recorded_bases(repo) == {wt.branch: head}


async def test_restore_never_touches_an_existing_directory_or_a_foreign_path(
    repo: Path, tmp_path: Path
) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await fresh(repo)
        (wt.path / "draft.txt").write_text("mine")
        with pytest.raises(WorktreeError, match="exists"):
            await manager.restore(wt.path)
        assert (wt.path / "draft.txt").read_text() == "mine"
        for foreign in (tmp_path / "elsewhere", repo / "src", manager.directory):
            with pytest.raises(WorktreeError, match="not a worktree rcd made"):
                await manager.restore(foreign)
