"""Git failing while a worktree session starts, runs or ends: that session reports an
``error`` and ends with ``session_ended``; the daemon and its other sessions go on.

``chattr +i`` makes a path immutable even for root (the tests run as root in CI, where a
mere ``chmod`` would not stop git)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from testkit.harness import Relay, processes_in, start_daemon, start_relay

from .test_worktree_sessions import git, repo, started

__all__ = ["repo"]  # the fixture, shared with those tests


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


async def ended(relay: Relay, sid: str) -> list[dict[str, object]]:
    return await relay.wait_kind(sid, "session_ended", timeout=30)


def errors(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e["data"] for e in events if e["kind"] == "error"]  # type: ignore[misc]


async def test_git_failing_at_start_run_or_end_ends_only_that_session(
    tmp_path: Path, repo: Path
) -> None:
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            daemon = await start_daemon(
                relay,
                tmp_path / "home",
                repo,
                "--spawn",
                "worktree",
                "--spare-worktrees",
                "0",
            )
            env = daemon.environment_id

            async def new(title: str) -> str:
                r = await relay.create_session(env, title=title)
                assert r.status_code == 201, r.text
                return str(r.json()["id"])

            # One session that runs throughout: the others' trouble never reaches it.
            bystander = await new("bystander")
            await started(relay, bystander)

            # 1. Start: the worktrees' directory cannot take a new entry.
            with immutable(repo / ".rcd" / "worktrees"):
                refused = await new("refused")
                events = await ended(relay, refused)
            assert [e["code"] for e in errors(events)] == ["workspace_failed"]
            assert "session_started" not in [e["kind"] for e in events]

            # 2. Runs, then ends: its .git/worktrees entry removed under it.
            unlinked = await new("unlinked")
            cwd = Path(str((await started(relay, unlinked))["cwd"]))
            admin = Path(git(cwd, "rev-parse", "--absolute-git-dir"))
            shutil.rmtree(admin)
            assert (await relay.client.post(f"/api/sessions/{unlinked}/stop")).status_code == 202
            events = await ended(relay, unlinked)
            (error,) = errors(events)
            assert error["code"] == "workspace_release_failed"
            assert "no longer knows" in str(error["message"])
            assert events[-1]["data"]["worktree_kept"] is True  # type: ignore[index]
            assert cwd.is_dir()  # never removed

            # 3. Ends: a file in the worktree cannot be deleted (read-only to everyone).
            stuck = await new("stuck")
            cwd = Path(str((await started(relay, stuck))["cwd"]))
            with immutable(cwd / "README"):
                assert (await relay.client.post(f"/api/sessions/{stuck}/stop")).status_code == 202
                events = await ended(relay, stuck)
            (error,) = errors(events)
            assert error["code"] == "workspace_release_failed"
            assert "git would not remove it" in str(error["message"])
            end = events[-1]["data"]
            assert end["worktree_kept"] is True  # type: ignore[index]
            assert (cwd / "README").exists()

            # 4. A locked index in a running session's worktree does not stop its end.
            locked = await new("locked")
            cwd = Path(str((await started(relay, locked))["cwd"]))
            lock = Path(git(cwd, "rev-parse", "--absolute-git-dir")) / "index.lock"
            lock.write_text("")
            assert (await relay.client.post(f"/api/sessions/{locked}/stop")).status_code == 202
            events = await ended(relay, locked)
            assert events[-1]["kind"] == "session_ended"

            # The daemon goes on: the bystander still answers, a new session starts.
            r = await relay.post_message(bystander, "still there?", "m1")
            assert r.status_code == 202
            await relay.wait_kind(bystander, "turn_result")
            later = await new("later")
            await started(relay, later)
            assert (await relay.session(bystander))["state"] == "idle"
            assert daemon.process.returncode is None
            assert await daemon.stop() == 0
            assert not processes_in(repo)
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def test_worktree_spawn_in_a_repository_without_commits_refuses_to_start(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            with pytest.raises(AssertionError, match=r"no commits yet.*git commit"):
                await start_daemon(relay, tmp_path / "home", empty, "--spawn", "worktree")
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
