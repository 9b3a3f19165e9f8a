"""Spare worktrees: made ahead of need, taken by a branch and a rename, adopted after a
restart, never used (nor removed) once someone wrote in them."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from worktrees import POOL_DIR, SparePool, Worktrees

from .gitrepo import commit_file, git, rcd_branches, recorded_bases, registered_worktrees

TIMEOUT = 30


async def run_pool(nursery: trio.Nursery, manager: Worktrees, size: int) -> SparePool:
    pool = SparePool(manager=manager, size=size)
    await nursery.start(pool.run)
    with trio.fail_after(TIMEOUT):
        await pool.wait_full()
    assert pool.statistics().ready == size
    return pool


def spares_on_disk(repo: Path) -> set[str]:
    directory = repo / POOL_DIR
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


async def test_a_spare_becomes_a_session_worktree_on_its_own_branch(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(repo)
        head = await manager.head()
        async with trio.open_nursery() as nursery:
            pool = await run_pool(nursery, manager, 2)
            assert len(spares_on_disk(repo)) == 2
            assert await rcd_branches(repo) == set()  # spares have no branch
            worktree = await pool.take("Fix the login", "s1")
            assert worktree is not None
            assert worktree.path == repo / ".rcd" / "worktrees" / "fix-the-login"
            assert (
                await git(worktree.path, "symbolic-ref", "HEAD") == "refs/heads/rcd/fix-the-login"
            )
            assert await git(worktree.path, "status", "--porcelain") == ""
            assert (worktree.path / "README.md").exists()
            assert await recorded_bases(repo) == {"rcd/fix-the-login": head}
            # The pool makes another to stay full.
            await pool.wait_full()
            assert len(spares_on_disk(repo)) == 2
            nursery.cancel_scope.cancel()
        # A released worktree made from a spare goes like any other.
        released = await manager.release(worktree)
        assert not released.kept
        assert await rcd_branches(repo) == set()


async def test_a_spare_behind_head_is_brought_up_to_it(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(repo)
        async with trio.open_nursery() as nursery:
            pool = await run_pool(nursery, manager, 1)
            new_head = await commit_file(repo, "later.txt", "later\n")
            worktree = await pool.take("after", "s1")
            assert worktree is not None
            assert worktree.base_commit == new_head
            assert await git(worktree.path, "rev-parse", "HEAD") == new_head
            assert (worktree.path / "later.txt").read_text() == "later\n"
            assert await git(worktree.path, "status", "--porcelain") == ""
            nursery.cancel_scope.cancel()


async def test_spares_survive_a_restart_and_changed_ones_are_left_alone(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(repo)
        async with trio.open_nursery() as nursery:
            await run_pool(nursery, manager, 3)
            nursery.cancel_scope.cancel()
        names = sorted(spares_on_disk(repo))
        # Someone wrote in one; another lost files (a checkout cut short by a stop).
        (repo / POOL_DIR / names[0] / "mine.txt").write_text("work\n")
        (repo / POOL_DIR / names[1] / "README.md").unlink()
        pool = SparePool(manager=await Worktrees.open(repo), size=3)
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            # The incomplete one is completed and adopted, the changed one is not: a
            # new spare is made in its place.
            await pool.wait_full()
            nursery.cancel_scope.cancel()
        assert (repo / POOL_DIR / names[1] / "README.md").exists()
        assert (repo / POOL_DIR / names[0] / "mine.txt").read_text() == "work\n"
        assert len(spares_on_disk(repo)) == 4
        taken = [await pool.take(None, f"s{i}") for i in range(3)]
        assert all(t is not None for t in taken)
        assert await pool.take(None, "s4") is None  # the changed one is never handed out
        assert (repo / POOL_DIR / names[0] / "mine.txt").exists()


async def test_creation_limit_counts_the_checkout_not_the_wait_for_the_lock(
    repo: Path,
) -> None:
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(repo)
        async with trio.open_nursery() as nursery:
            holder_done = trio.Event()

            async def hold_the_lock() -> None:
                async with manager._lock:
                    await trio.sleep(1.0)  # clock: longer than the creation's 0.5 s limit
                holder_done.set()

            nursery.start_soon(hold_the_lock)
            await trio.testing.wait_all_tasks_blocked()
            # Waiting a second for the lock is not git's work: a 0.5 s limit holds.
            worktree = await manager.create("patient", "s1", checkout_limit=0.5)
            assert holder_done.is_set()
        assert worktree.path in await registered_worktrees(repo)


async def test_a_clean_worktree_is_recycled_into_a_spare_and_work_stays(repo: Path) -> None:
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(repo)
        pool = SparePool(manager=manager, size=2)
        clean = await manager.create("clean", "s1")
        (clean.path / "build.log").write_text("ignored output\n")
        (repo / ".git" / "info" / "exclude").write_text(".rcd/\n*.log\n")
        committed = await manager.create("committed", "s2")
        await commit_file(committed.path, "feature.txt", "feature\n")
        for worktree in (clean, committed):
            state = await manager.inspect(worktree)
            assert not state.directory_reasons
            delete = state.branch_exists and not state.branch_reasons
            assert await pool.recycle(worktree, delete_branch=delete)
        # Both directories are spares now; the branch with a commit stays.
        assert not clean.path.exists() and not committed.path.exists()
        assert await rcd_branches(repo) == {"rcd/committed"}
        assert pool.statistics().ready == 2
        assert len(spares_on_disk(repo)) == 2
        # The ignored file went with its session.
        again = await pool.take("next", "s3")
        assert again is not None
        assert not (again.path / "build.log").exists()
        assert await git(again.path, "status", "--porcelain") == ""


async def test_creation_limit_counts_the_checkout_not_the_wait_for_a_turn(repo: Path) -> None:
    # At most as many checkouts run at once as there are cores; a creation waiting for
    # its turn is not slow, and its limit starts with its turn.
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(repo)
        slots = manager._checkouts
        async with trio.open_nursery() as nursery:
            released = trio.Event()

            async def occupy_every_slot() -> None:
                for _ in range(int(slots.total_tokens)):
                    await slots.acquire_on_behalf_of(object())
                await trio.sleep(1.0)  # clock: longer than the creation's 0.5 s limit
                slots.total_tokens += 1  # a turn comes free
                released.set()

            nursery.start_soon(occupy_every_slot)
            await trio.testing.wait_all_tasks_blocked()
            worktree = await manager.create("queued", "s1", checkout_limit=0.5)
            assert released.is_set()
        assert (worktree.path / "README.md").exists()
