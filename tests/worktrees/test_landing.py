"""worktrees.landing: commit, merge, push and discard a session's work in real repositories,
never touching the main checkout's own work."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from worktrees import Worktree, Worktrees
from worktrees.changes import snapshot
from worktrees.landing import (
    LandingRefused,
    commit_all,
    discard,
    discard_loss,
    merge,
    merge_target,
    push,
)

from .gitrepo import TIMEOUT, commit_file, git, rcd_branches

HOSTILE = ["with space.txt", "new\nline.txt", "-rf", "..x", "ünïcødé €.txt", ":(glob)*"]


async def session(repo: Path, title: str = "task") -> tuple[Worktrees, Worktree]:
    manager = await Worktrees.open(repo)
    return manager, await manager.create(title, "s-" + title)


async def main_status(repo: Path) -> tuple[str, str, str]:
    """Everything a merge must leave alone when it refuses."""
    return (
        await git(repo, "status", "--porcelain=v2", "--branch", "--untracked-files=all"),
        await git(repo, "rev-parse", "main"),
        await git(repo, "stash", "list"),
    )


async def test_commit_takes_everything_uncommitted(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        _, wt = await session(repo)
        await trio.Path(wt.path / "new.txt").write_text("new\n")
        await trio.Path(wt.path / "README.md").write_text("changed\n")
        landed = await commit_all(wt.path, "Add new.txt")
        assert landed.commit == await git(wt.path, "rev-parse", "HEAD")
        assert landed.summary.endswith(f"on {wt.branch}")
        assert await git(wt.path, "status", "--porcelain") == ""
        assert await git(wt.path, "log", "-1", "--format=%s") == "Add new.txt"
        with pytest.raises(LandingRefused) as refused:
            await commit_all(wt.path, "again")
        assert refused.value.code == "nothing_to_commit"


async def test_fast_forward_updates_the_main_checkout(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await session(repo)
        assert await merge_target(manager, wt) == "main"
        tip = await commit_file(wt.path, "feature.txt")
        landed = await merge(manager, wt, "main")
        assert landed.commit == tip and "fast-forwarded main" in landed.summary
        assert await git(repo, "rev-parse", "main") == tip
        assert (repo / "feature.txt").read_text() == "work\n"
        assert await git(repo, "status", "--porcelain") == ""
        # Landed: the usual rules now let the clean worktree and its branch go.
        released = await manager.release(wt)
        assert released.removed and released.branch_deleted
        assert wt.branch not in await rcd_branches(repo)


async def test_the_target_is_the_main_checkouts_branch_by_its_whole_name(repo: Path) -> None:
    """A worktree made on a detached HEAD has no recorded target: the main checkout's
    branch now is, by its whole name (not `heads/v1`, git's short form when a tag `v1`
    exists too), and the work merges there."""
    with trio.fail_after(TIMEOUT):
        await git(repo, "checkout", "--quiet", "--detach")
        manager, wt = await session(repo)
        await git(repo, "tag", "v1")
        await git(repo, "checkout", "--quiet", "-b", "v1")
        assert await git(repo, "symbolic-ref", "--short", "HEAD") == "heads/v1"
        assert await merge_target(manager, wt) == "v1"
        tip = await commit_file(wt.path, "feature.txt")
        landed = await merge(manager, wt, "v1")
        assert landed.commit == tip
        assert await git(repo, "rev-parse", "refs/heads/v1") == tip


async def test_diverged_work_gets_a_merge_commit(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await session(repo)
        tip = await commit_file(wt.path, "feature.txt")
        main_tip = await commit_file(repo, "other.txt")
        await trio.Path(repo / "notes.txt").write_text("mine, uncommitted\n")  # untouched by it
        landed = await merge(manager, wt, "main")
        merged = await git(repo, "rev-parse", "main")
        assert landed.commit == merged and "merge commit" in landed.summary
        assert (await git(repo, "log", "-1", "--format=%P", merged)).split() == [main_tip, tip]
        assert (repo / "feature.txt").exists() and (
            repo / "notes.txt"
        ).read_text() == "mine, uncommitted\n"
        assert await git(repo, "status", "--porcelain") == "?? notes.txt"
        again = await merge(manager, wt, "main")
        assert "already in main" in again.summary


async def test_a_conflict_is_refused_with_its_files_and_nothing_moves(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await session(repo)
        await commit_file(wt.path, "README.md", "theirs\n")
        await commit_file(wt.path, "both.txt", "theirs\n")
        await commit_file(repo, "README.md", "ours\n")
        await commit_file(repo, "both.txt", "ours\n")
        await trio.Path(repo / "scratch.txt").write_text("wip\n")
        before = await main_status(repo)
        with pytest.raises(LandingRefused) as refused:
            await merge(manager, wt, "main")
        assert refused.value.code == "conflicts"
        assert refused.value.files == ["README.md", "both.txt"]
        assert "README.md, both.txt" in str(refused.value)
        assert await main_status(repo) == before
        assert not (repo / ".git" / "MERGE_HEAD").exists()


async def test_a_dirty_main_checkout_in_the_merged_files_is_refused(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await session(repo)
        await commit_file(wt.path, "README.md", "theirs\n")
        await trio.Path(repo / "README.md").write_text("my own edit\n")
        before = await main_status(repo)
        with pytest.raises(LandingRefused) as refused:
            await merge(manager, wt, "main")
        assert refused.value.code == "checkout_dirty" and refused.value.files == ["README.md"]
        assert await main_status(repo) == before
        assert (repo / "README.md").read_text() == "my own edit\n"


async def test_uncommitted_session_work_must_be_committed_first(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await session(repo)
        await trio.Path(wt.path / "wip.txt").write_text("wip\n")
        with pytest.raises(LandingRefused) as refused:
            await merge(manager, wt, "main")
        assert refused.value.code == "uncommitted_changes"


async def test_hostile_names_merge_safely(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await session(repo)
        for name in HOSTILE:
            await trio.Path(wt.path / name).write_text(f"{name!r}\n")
        await commit_all(wt.path, "hostile names")
        await commit_file(repo, "other.txt")  # a real merge, not a fast-forward
        await merge(manager, wt, "main")
        for name in HOSTILE:
            assert (repo / name).read_text() == f"{name!r}\n"
        assert await git(repo, "status", "--porcelain") == ""


async def test_a_dirty_hostile_name_blocks_its_merge(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await session(repo)
        await commit_file(wt.path, "new\nline.txt", "theirs\n")
        await trio.Path(repo / "new\nline.txt").write_text("mine\n")
        with pytest.raises(LandingRefused) as refused:
            await merge(manager, wt, "main")
        assert refused.value.files == ["new\nline.txt"]


async def test_push_to_the_configured_remote(repo: Path, tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        _, wt = await session(repo)
        with pytest.raises(LandingRefused) as refused:
            await push(wt.path, wt.branch)
        assert refused.value.code == "no_remote"
        remote = tmp_path / "remote.git"
        await git(tmp_path, "init", "-q", "--bare", str(remote))
        await git(repo, "remote", "add", "origin", str(remote))
        tip = await commit_file(wt.path, "feature.txt")
        landed = await push(wt.path, wt.branch)
        assert landed.commit == tip
        assert await git(remote, "rev-parse", wt.branch) == tip


async def test_discard_needs_the_token_of_what_it_loses(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await session(repo)
        await commit_file(wt.path, "feature.txt")
        await trio.Path(wt.path / "wip.txt").write_text("wip\n")
        loss = await discard_loss(manager, wt)
        assert "1 uncommitted file(s): wip.txt" in loss.text
        assert f"1 commit(s) on {wt.branch} not landed" in loss.text
        with pytest.raises(LandingRefused) as refused:
            await discard(manager, wt, None)
        assert refused.value.code == "confirmation_required" and loss.token in str(refused.value)
        await trio.Path(wt.path / "more.txt").write_text("more\n")  # the work changed since
        with pytest.raises(LandingRefused, match="changed since"):
            await discard(manager, wt, loss.token)
        assert wt.path.exists()
        token = (await discard_loss(manager, wt)).token
        landed = await discard(manager, wt, token)
        assert "discarded" in landed.summary
        assert not wt.path.exists()
        assert wt.branch not in await rcd_branches(repo)
        assert await git(repo, "config", "--get-regexp", "^branch\\.rcd/", check=False) == ""
        assert (await manager.leftovers()) == []


async def test_a_merge_never_overwrites_the_user_s_ignored_files(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        await commit_file(repo, ".gitignore", "config.local\n")
        manager, wt = await session(repo)
        await trio.Path(repo / "config.local").write_text("my secret\n")
        await trio.Path(wt.path / ".gitignore").write_text("")
        await trio.Path(wt.path / "config.local").write_text("the agent's template\n")
        await commit_all(wt.path, "un-ignore and add config.local")
        with pytest.raises(LandingRefused) as refused:
            await merge(manager, wt, "main")
        assert refused.value.code == "checkout_dirty"
        assert (repo / "config.local").read_text() == "my secret\n"


async def test_a_rebase_of_the_target_in_progress_stops_the_merge(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await session(repo)
        await commit_file(wt.path, "feature.txt")
        await commit_file(repo, "a.txt")
        await commit_file(repo, "b.txt")
        before = await git(repo, "rev-parse", "main")
        await git(
            repo, "-c", "sequence.editor=sed -i s/^pick/edit/", "rebase", "-q", "-i", "HEAD~2"
        )
        with pytest.raises(LandingRefused) as refused:
            await merge(manager, wt, "main")
        assert refused.value.code == "checkout_busy" and "rebased" in str(refused.value)
        assert await git(repo, "rev-parse", "main") == before
        await git(repo, "rebase", "--abort")


async def test_a_failed_commit_leaves_the_index_as_it_was(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        hook = repo / ".git" / "hooks" / "pre-commit"
        hook.write_text("#!/bin/sh\necho no >&2\nexit 1\n")
        hook.chmod(0o755)
        await trio.Path(repo / "README.md").write_text("staged\n")
        await git(repo, "add", "README.md")
        await trio.Path(repo / "README.md").write_text("staged, then more\n")
        await trio.Path(repo / "private notes.txt").write_text("mine\n")
        before = await git(repo, "status", "--porcelain")
        with pytest.raises(LandingRefused) as refused:
            await commit_all(repo, "from the phone")
        assert refused.value.code == "commit_failed"
        assert await git(repo, "status", "--porcelain") == before


async def test_hooks_in_a_working_tree_are_not_run_from_the_phone(
    repo: Path, tmp_path: Path
) -> None:
    with trio.fail_after(TIMEOUT):
        await git(repo, "config", "core.hooksPath", ".hooks")  # as husky sets it
        _, wt = await session(repo)
        ran = tmp_path / "ran"
        hooks = wt.path / ".hooks"
        await trio.Path(hooks).mkdir()
        (hooks / "pre-commit").write_text(f"#!/bin/sh\ntouch {ran}\n")
        (hooks / "pre-commit").chmod(0o755)
        landed = await commit_all(wt.path, "with hooks the agent wrote")
        assert not ran.exists()
        assert "hooks not run" in landed.summary
        # A hook of the repository's own git directory runs, as for any commit.
        own = repo / ".git" / "hooks" / "pre-commit"
        own.write_text(f"#!/bin/sh\ntouch {ran}\n")
        own.chmod(0o755)
        await git(repo, "config", "--unset", "core.hooksPath")
        await trio.Path(wt.path / "more.txt").write_text("more\n")
        await commit_all(wt.path, "with the repository's hook")
        assert ran.exists()


async def test_discard_names_commits_on_a_detached_head(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager, wt = await session(repo)
        await git(wt.path, "checkout", "-q", "--detach")
        await commit_file(wt.path, "lost.txt")
        loss = await discard_loss(manager, wt)
        assert "1 commit(s) on a detached HEAD no branch holds" in loss.lost
        await commit_file(wt.path, "later.txt")  # made after the token: it no longer holds
        with pytest.raises(LandingRefused, match="changed since"):
            await discard(manager, wt, loss.token)


async def test_a_subdirectory_sees_and_commits_only_its_own_work(repo: Path) -> None:
    """A daemon started in a subdirectory of a repository: its same-dir sessions' work is
    that directory's, and a commit from the phone takes nothing else."""
    with trio.fail_after(TIMEOUT):
        for name in ("sub/a.txt", "other/b.txt"):
            await trio.Path(repo / name).parent.mkdir(exist_ok=True)
            await commit_file(repo, name, "first\n")
        base = await git(repo, "rev-parse", "HEAD")
        await trio.Path(repo / "sub" / "a.txt").write_text("the session's\n")
        await trio.Path(repo / "sub" / "new.txt").write_text("new\n")
        await trio.Path(repo / "other" / "b.txt").write_text("the user's, staged\n")
        await git(repo, "add", "other/b.txt")
        await trio.Path(repo / "outside.txt").write_text("the user's, untracked\n")
        seen = await snapshot(repo / "sub", base)
        assert [f.path for f in seen.files] == ["sub/a.txt", "sub/new.txt"]
        assert seen.uncommitted
        await commit_all(repo / "sub", "the session's work")
        shown = await git(repo, "show", "--name-only", "--format=", "HEAD")
        assert shown.splitlines() == ["sub/a.txt", "sub/new.txt"]
        assert await git(repo, "status", "--porcelain") == "M  other/b.txt\n?? outside.txt"
        assert not (await snapshot(repo / "sub", base)).uncommitted


async def test_staging_done_meanwhile_is_never_undone(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        hook = repo / ".git" / "hooks" / "pre-commit"
        # Someone stages a file while the commit runs, and the commit fails.
        hook.write_text("#!/bin/sh\necho theirs > theirs.txt\ngit add theirs.txt\nexit 1\n")
        hook.chmod(0o755)
        await trio.Path(repo / "README.md").write_text("mine\n")
        with pytest.raises(LandingRefused):
            await commit_all(repo, "from the phone")
        assert "A  theirs.txt" in (await git(repo, "status", "--porcelain")).splitlines()


async def test_a_hooks_path_git_cannot_name_runs_no_hook(repo: Path, tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        await git(repo, "config", "core.hooksPath", ".git/hooks")  # a file in a worktree
        _, wt = await session(repo)
        await trio.Path(wt.path / "work.txt").write_text("work\n")
        landed = await commit_all(wt.path, "committed anyway")
        assert "hooks not run" in landed.summary
