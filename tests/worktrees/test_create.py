"""Worktrees.open and Worktrees.create against real repositories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from testkit.waiting import eventually
from worktrees import (
    EmptyRepository,
    GitFailed,
    NotAGitRepository,
    Worktree,
    Worktrees,
)
from worktrees import manager as manager_module

from .gitrepo import (
    TIMEOUT,
    git,
    make_repo,
    rcd_branches,
    recorded_bases,
    registered_worktrees,
    worktree_dirs,
)


async def assert_nothing_made(repo: Path) -> None:
    assert await registered_worktrees(repo) == set()
    assert await rcd_branches(repo) == set()
    assert await worktree_dirs(repo) == set()
    assert await recorded_bases(repo) == {}


async def test_create_gives_distinct_worktrees_on_new_branches_from_head(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(repo)
        head = await git(repo, "rev-parse", "HEAD")
        first = await manager.create("Fix the login bug", "s1")
        second = await manager.create("Fix the login bug", "s2")

        assert first == Worktree(
            path=repo / ".rcd" / "worktrees" / "fix-the-login-bug",
            branch="rcd/fix-the-login-bug",
            slug="fix-the-login-bug",
            base_commit=head,
        )
        assert (second.slug, second.branch) == ("fix-the-login-bug-2", "rcd/fix-the-login-bug-2")
        assert await registered_worktrees(repo) == {first.path, second.path}
        for wt in (first, second):
            assert await git(wt.path, "rev-parse", "HEAD") == head
            assert await git(wt.path, "symbolic-ref", "--short", "HEAD") == wt.branch
            assert (wt.path / "README.md").read_text() == "hello\n"
        # The base is recorded in the repository's config, next to the branch.
        assert await recorded_bases(repo) == {first.branch: head, second.branch: head}
        assert manager.statistics().created == 2


async def test_slug_avoids_existing_branches_and_directories(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        await git(repo, "branch", "rcd/task")
        (repo / ".rcd" / "worktrees" / "task-2").mkdir(parents=True)
        await git(repo, "branch", "rcd/task-3/nested")  # blocks rcd/task-3 itself
        manager = await Worktrees.open(repo)
        wt = await manager.create("task", "s1")
        assert wt.slug == "task-4"


async def test_empty_title_uses_the_session_id(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(repo)
        wt = await manager.create(None, "sess_01HXYZ")
        assert wt.branch == "rcd/sess-01hxyz"


async def test_exclude_entry_added_once_and_status_stays_clean(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        exclude = repo / ".git" / "info" / "exclude"
        exclude.write_text("*.tmp")  # no trailing newline: the entry must go on its own line
        manager = await Worktrees.open(repo)
        await manager.create("one", "s1")
        await manager.create("two", "s2")
        other = await Worktrees.open(repo / ".rcd")  # a second manager of the same repo
        await other.create("three", "s3")

        lines = exclude.read_text().splitlines()
        assert lines[0] == "*.tmp"
        assert lines.count(".rcd/") == 1
        assert await git(repo, "status", "--porcelain") == ""


async def test_existing_equivalent_exclude_line_is_respected(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        exclude = repo / ".git" / "info" / "exclude"
        exclude.write_text("/.rcd/\n")
        await (await Worktrees.open(repo)).create("one", "s1")
        assert exclude.read_text() == "/.rcd/\n"


async def test_open_from_a_subdirectory_and_from_a_linked_worktree(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        (repo / "src" / "deep").mkdir(parents=True)
        manager = await Worktrees.open(repo / "src" / "deep")
        assert manager.root == repo.resolve()
        assert manager.directory == repo.resolve() / ".rcd" / "worktrees"

        # A project checked out as a linked worktree: its .git is a file, and the exclude
        # file it uses is the main repository's.
        linked = repo.parent / "linked"
        await git(repo, "worktree", "add", "-q", "-b", "feature", str(linked))
        assert (linked / ".git").is_file()
        manager = await Worktrees.open(linked)
        wt = await manager.create("from linked", "s1")
        assert wt.path == linked.resolve() / ".rcd" / "worktrees" / "from-linked"
        assert ".rcd/" in (repo / ".git" / "info" / "exclude").read_text().splitlines()
        assert not (repo / ".git" / "worktrees" / "linked" / "info").exists()
        assert await git(linked, "status", "--porcelain") == ""
        assert await git(wt.path, "rev-parse", "HEAD") == await git(linked, "rev-parse", "HEAD")


async def test_concurrent_creates_get_distinct_slugs_and_branches(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        managers = [await Worktrees.open(repo), await Worktrees.open(repo)]
        made: list[Worktree] = []

        async def create(i: int) -> None:
            made.append(await managers[i % 2].create("Same title", f"s{i}"))

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(create, i)

        assert len({wt.slug for wt in made}) == 10
        assert await rcd_branches(repo) == {wt.branch for wt in made}
        assert await registered_worktrees(repo) == {wt.path for wt in made}
        assert {wt.slug for wt in made} == {"same-title"} | {
            f"same-title-{n}" for n in range(2, 11)
        }


async def test_not_a_git_repository(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        plain = tmp_path / "plain"
        plain.mkdir()
        with pytest.raises(NotAGitRepository) as caught:
            await Worktrees.open(plain)
        assert caught.value.path == str(plain)
        assert "--spawn worktree needs a git repository; run git init or use --spawn same-dir" in (
            str(caught.value)
        )
        with pytest.raises(NotAGitRepository, match="does not exist"):
            await Worktrees.open(tmp_path / "missing")


async def test_bare_repository_is_refused(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        await git(tmp_path, "init", "-q", "--bare", "bare.git")
        with pytest.raises(NotAGitRepository, match="bare"):
            await Worktrees.open(tmp_path / "bare.git")


async def test_repository_without_commits(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        empty = make_repo(tmp_path / "empty", commit=False)
        manager = await Worktrees.open(empty)  # it is a repository: opening works
        with pytest.raises(EmptyRepository, match="no commits yet") as caught:
            await manager.create("first", "s1")
        assert caught.value.path == str(empty.resolve())
        assert not (empty / ".rcd").exists()
        assert await manager.leftovers() == []


def install_hook(repo: Path, name: str, body: str) -> None:
    hook = repo / ".git" / "hooks" / name
    hook.write_text("#!/bin/sh\n" + body + "\n")
    hook.chmod(0o755)


async def test_failing_hook_is_reported_and_undone(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        install_hook(repo, "post-checkout", "echo 'hook says no' >&2; exit 3")
        manager = await Worktrees.open(repo)
        with pytest.raises(GitFailed) as caught:
            await manager.create("hooked", "s1")
        assert caught.value.returncode != 0
        # The hook runs once the files are checked out, as after ``git worktree add``.
        assert "post-checkout" in caught.value.argv
        assert "hook says no" in caught.value.stderr
        await assert_nothing_made(repo)


async def test_cancelled_before_start_makes_nothing(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(repo)
        with trio.CancelScope() as scope:
            scope.cancel()
            await manager.create("never", "s1")
        assert scope.cancelled_caught
        await assert_nothing_made(repo)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def test_cancelled_half_way_leaves_no_half_made_worktree(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        # The hook runs once the worktree directory and branch exist: cancel right then.
        marker = repo.parent / "hook-running"
        install_hook(repo, "post-checkout", f"echo $$ > '{marker}'; exec sleep 60")
        manager = await Worktrees.open(repo)
        other = await Worktrees.open(repo)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(manager.create, "slow", "s1")
            await eventually(
                lambda: marker.exists() and marker.read_text().strip(),
                timeout=TIMEOUT,
                what="the post-checkout hook to start",
            )
            assert await rcd_branches(repo) == {"rcd/slow"}  # really half-way
            # The checkout (and its hook) holds no lock: other creations go on meanwhile.
            assert not other.statistics().busy
            nursery.cancel_scope.cancel()
        await assert_nothing_made(repo)
        hook_pid = int(marker.read_text())
        if Path("/proc").is_dir():
            assert not _alive(hook_pid)  # the hook was stopped with git

        os.unlink(repo / ".git" / "hooks" / "post-checkout")
        wt = await manager.create("slow", "s2")  # the name is free again
        assert wt.slug == "slow"
        assert not other.statistics().busy


@pytest.mark.parametrize(
    "delay", [0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.06, 0.1]
)
async def test_cancellation_at_any_moment_is_all_or_nothing(repo: Path, delay: float) -> None:
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(repo)
        made: list[Worktree] = []
        raised: list[BaseException] = []
        with trio.move_on_after(delay):
            try:
                made.append(await manager.create("timed", "s1"))
            except BaseException as exc:
                raised.append(exc)
                raise
        # A cancellation comes out as itself, not in a group (the checkout runs in a task).
        assert all(type(exc) is trio.Cancelled for exc in raised)
        assert await rcd_branches(repo) == {wt.branch for wt in made}
        assert await registered_worktrees(repo) == {wt.path for wt in made}
        assert await worktree_dirs(repo) == {wt.slug for wt in made}
        assert set(await recorded_bases(repo)) == {wt.branch for wt in made}
        # A git stopped while writing its config would leave a lock failing every later
        # config write in the repository.
        assert not (repo / ".git" / "config.lock").exists()


@pytest.mark.parametrize("key", ["rcdbase", "rcdsession", "rcdfrom"])
async def test_cancelled_while_recording_the_base_undoes_all_and_leaves_no_lock(
    repo: Path, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = manager_module.run_git  # type: ignore[attr-defined]
    scope = trio.CancelScope()

    finished: list[int] = []

    async def cancel_on_write(args, **kwargs):  # type: ignore[no-untyped-def]
        if not (args[0] == "config" and args[1].endswith("." + key)):
            return await real(args, **kwargs)
        scope.cancel()
        result = await real(args, **kwargs)  # a git stopped midway raises Cancelled here
        finished.append(result.returncode)
        return result

    monkeypatch.setattr(manager_module, "run_git", cancel_on_write)
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(repo)
        with scope:
            await manager.create("timed", "s1")
        assert scope.cancelled_caught
        assert finished == [0]  # the write was not stopped midway: it holds config.lock
        await assert_nothing_made(repo)
        assert await git(repo, "config", "--get-regexp", r"^branch\.rcd/", check=False) == ""
        assert not (repo / ".git" / "config.lock").exists()


async def test_the_base_is_recorded_while_the_files_are_checked_out(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The base's `git config` writes run beside the checkout, not before it on the
    session's way: here the first write waits for the checkout to have ended (in vain,
    were the writes first). The post-checkout hook still runs once the base is recorded,
    as before (it may read it, or write config of its own)."""
    real = manager_module.run_git  # type: ignore[attr-defined]
    checked_out = trio.Event()
    order: list[str] = []
    marker = repo.parent / "hook-saw"
    install_hook(
        repo,
        "post-checkout",
        f"git config --get \"branch.$(git symbolic-ref --short HEAD).rcdbase\" > '{marker}'",
    )

    async def watched(args, **kwargs):  # type: ignore[no-untyped-def]
        if args[0] == "hook":
            assert order.count("config") == 3, "the hook ran before the base was recorded"
        if args[0] == "config" and "config" not in order:
            with trio.move_on_after(TIMEOUT / 3):
                await checked_out.wait()
            assert checked_out.is_set(), "the base was recorded before the checkout ended"
        result = await real(args, **kwargs)
        if args[0] == "read-tree":
            checked_out.set()
        order.append(args[0])
        return result

    monkeypatch.setattr(manager_module, "run_git", watched)
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(repo)
        wt = await manager.create("beside", "s1")
        assert order.count("config") == 3  # base, session, and the main checkout's branch
        assert marker.read_text().strip() == wt.base_commit
        assert await recorded_bases(repo) == {wt.branch: wt.base_commit}
        session = await git(repo, "config", "--get", f"branch.{wt.branch}.rcdsession")
        assert session == "s1"
        assert not manager.statistics().busy  # the lock was let go


async def test_a_base_that_cannot_be_recorded_undoes_the_worktree(repo: Path) -> None:
    """Its `git config` refused (another writer holds the config's lock): the error is
    git's own, and the worktree, checked out meanwhile, goes again."""
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(repo)
        lock = repo / ".git" / "config.lock"
        lock.write_text("")
        with pytest.raises(GitFailed) as caught:
            await manager.create("locked", "s1")
        assert "config" in caught.value.argv
        assert "lock" in caught.value.stderr
        lock.unlink()
        await assert_nothing_made(repo)
        assert (await manager.create("locked", "s2")).slug == "locked"


async def test_the_main_checkouts_branch_is_recorded_as_where_the_work_merges(
    repo: Path,
) -> None:
    """``rcdfrom`` names the branch the main checkout had (a name with slashes whole);
    on a detached HEAD nothing is recorded. Made, restored and taken from a spare alike."""
    from worktrees import SparePool

    async def recorded(branch: str) -> str:
        return await git(repo, "config", "--get", f"branch.{branch}.rcdfrom", check=False)

    with trio.fail_after(TIMEOUT):
        await git(repo, "checkout", "-q", "-b", "feature/login-fix")
        manager = await Worktrees.open(repo)
        made = await manager.create("on a branch", "s1")
        assert await recorded(made.branch) == "feature/login-fix"
        async with trio.open_nursery() as nursery:
            pool = SparePool(manager=manager, size=1)
            await nursery.start(pool.run)
            await pool.wait_full()
            taken = await pool.take("from a spare", "s2")
            assert taken is not None
            nursery.cancel_scope.cancel()
        assert await recorded(taken.branch) == "feature/login-fix"

        await git(repo, "checkout", "-q", "--detach")
        detached = await manager.create("detached", "s3")
        assert await recorded(detached.branch) == ""
        assert (await recorded_bases(repo))[detached.branch] == await git(repo, "rev-parse", "HEAD")

        await git(repo, "checkout", "-q", "main")
        restored_path = made.path
        await git(repo, "worktree", "remove", "--force", str(restored_path))
        await git(repo, "branch", "-D", made.branch)
        restored = await manager.restore(restored_path)
        assert await recorded(restored.branch) == "main"
