"""Issue 3 acceptance: `--spawn worktree --capacity 4` in a real repository, then SIGTERM.

The stand-in agent does the work through the real permission flow: it writes a file (left
uncommitted) in one worktree and commits in another; a third stays clean."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trio

from testkit.harness import Relay, rcd, start_daemon, start_relay
from testkit.waiting import eventually


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test")
    git(path, "config", "user.email", "test@example.org")
    (path / "README").write_text("hello\n")
    git(path, "add", "README")
    git(path, "commit", "-qm", "first")
    return path


async def started(relay: Relay, sid: str) -> dict[str, object]:
    events = await relay.wait_kind(sid, "session_started")
    data: dict[str, object] = next(e for e in events if e["kind"] == "session_started")["data"]
    return data


async def allow_next(relay: Relay, sid: str, count: int) -> None:
    events = await relay.wait_kind(sid, "permission_request", count)
    request = [e for e in events if e["kind"] == "permission_request"][count - 1]["data"]
    assert (await relay.decide(sid, request["request_id"], "allow")).status_code == 202
    await relay.wait_kind(sid, "turn_result", count)


async def test_worktree_sessions_capacity_and_teardown_keep_every_piece_of_work(
    tmp_path: Path, repo: Path
) -> None:
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            daemon = await start_daemon(
                relay, tmp_path / "home", repo, "--spawn", "worktree", "--capacity", "4"
            )
            env = daemon.environment_id
            titles = ["Dirty work", "Committed work", "Clean work"]
            ids = [(await relay.create_session(env, title=t)).json()["id"] for t in titles]
            same_dir = await relay.create_session(env, prompt="hello", spawn="same-dir")
            assert same_dir.status_code == 201
            fifth = await relay.create_session(env, prompt="one too many")
            assert fifth.status_code == 409 and fifth.json()["error"]["code"] == "at_capacity"

            info = [await started(relay, sid) for sid in ids]
            paths = [Path(str(i["cwd"])) for i in info]
            branches = [str(i["branch"]) for i in info]
            assert len(set(paths)) == 3 and all(i["spawn"] == "worktree" for i in info)
            assert all(p.parent == repo / ".rcd" / "worktrees" for p in paths)
            assert branches == ["rcd/dirty-work", "rcd/committed-work", "rcd/clean-work"]
            rcd_branches = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/rcd/")
            assert rcd_branches.split() == sorted(branches)
            assert ".rcd/" in (repo / ".git" / "info" / "exclude").read_text()
            assert (await started(relay, same_dir.json()["id"]))["cwd"] == str(repo)

            # The agents work: one file left uncommitted, one commit on a branch.
            await relay.post_message(ids[0], f"write {paths[0] / 'notes.txt'} draft", "w1")
            await allow_next(relay, ids[0], 1)
            commit = (
                "echo work > work.txt && git add work.txt && "
                "git -c user.name=Agent -c user.email=agent@example.org commit -qm agent-work"
            )
            await relay.post_message(ids[1], f"run {commit}", "r1")
            await allow_next(relay, ids[1], 1)
            agent_commit = git(repo, "rev-parse", "rcd/committed-work")

            status = await daemon.status()
            assert {s["branch"] for s in status["sessions"]} == {*branches, None}
            # A session that ends while the daemon runs: its kept work shows in rcd status.
            await relay.client.post(f"/api/sessions/{ids[0]}/stop")
            await relay.wait_kind(ids[0], "session_ended")
            [kept] = (await daemon.status())["kept_worktrees"]
            assert kept["branch"] == "rcd/dirty-work" and kept["reasons"]
            human = (await rcd(daemon.env, "status", str(repo))).stdout.decode()
            assert "kept worktrees" in human and "rcd/dirty-work" in human
            assert await daemon.stop() == 0

            # Uncommitted work: the worktree and its file are still there.
            assert (paths[0] / "notes.txt").read_text() == "draft"
            # A commit not in its base: the branch is kept with it (its clean dir may go).
            assert git(repo, "rev-parse", "rcd/committed-work") == agent_commit
            assert git(repo, "log", "-1", "--format=%s", "rcd/committed-work") == "agent-work"
            # Clean and nothing new: a stop leaves it (it waits for no git work it can
            # leave); the next start makes it a spare again and deletes its branch.
            assert (paths[2] / "README").read_text() == "hello\n"
            daemon = await start_daemon(
                relay, tmp_path / "home", repo, "--spawn", "worktree", "--capacity", "4"
            )
            await eventually(
                lambda: (
                    not paths[2].exists() and not git(repo, "branch", "--list", "rcd/clean-work")
                ),
                timeout=30,
                what="the clean worktree and its branch rcd/clean-work to go",
            )
            assert (paths[0] / "notes.txt").read_text() == "draft"
            assert git(repo, "rev-parse", "rcd/committed-work") == agent_commit
            assert await daemon.stop() == 0
            ends = {}
            for sid in [*ids, same_dir.json()["id"]]:
                assert (await relay.session(sid))["state"] == "ended"
                last = (await relay.events(sid))[-1]
                assert last["kind"] == "session_ended"
                ends[sid] = last["data"]
            assert ends[ids[0]]["worktree_kept"] is True
            assert ends[ids[0]]["kept_reasons"]
            assert ends[ids[1]]["worktree_kept"] is True
            assert any("commit" in r for r in ends[ids[1]]["kept_reasons"])
            assert ends[ids[2]]["worktree_kept"] is False
            assert ends[ids[2]]["branch"] == "rcd/clean-work"
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def test_worktree_spawn_outside_a_repository_is_a_startup_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            with pytest.raises(AssertionError, match="needs a git repository"):
                await start_daemon(relay, tmp_path / "home", plain, "--spawn", "worktree")
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def test_a_resumed_worktree_session_gets_its_worktree_back(
    tmp_path: Path, repo: Path
) -> None:
    # A clean worktree goes when its session ends (and its branch with it); a resumed
    # session finds it again at the same path, and one whose branch was kept for its
    # commits is back on that branch, commits and all.
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            daemon = await start_daemon(
                relay, tmp_path / "home", repo, "--spawn", "worktree", "--capacity", "2"
            )
            env = daemon.environment_id
            ids = [
                (await relay.create_session(env, title=t)).json()["id"]
                for t in ("Clean work", "Committed work")
            ]
            paths = [Path(str((await started(relay, sid))["cwd"])) for sid in ids]
            commit = (
                "echo work > work.txt && git add work.txt && "
                "git -c user.name=Agent -c user.email=agent@example.org commit -qm agent-work"
            )
            await relay.post_message(ids[1], f"run {commit}", "r1")
            await allow_next(relay, ids[1], 1)
            agent_commit = git(repo, "rev-parse", "rcd/committed-work")
            for sid in ids:
                assert (await relay.client.post(f"/api/sessions/{sid}/stop")).status_code == 202
                await relay.wait_kind(sid, "session_ended")
            assert not paths[0].exists()
            assert git(repo, "branch", "--list", "rcd/clean-work") == ""

            for sid, path in zip(ids, paths, strict=True):
                assert (await relay.client.post(f"/api/sessions/{sid}/resume")).status_code == 202
                events = await relay.wait_kind(sid, "session_started", 2)
                again = [e for e in events if e["kind"] == "session_started"][1]["data"]
                assert again["cwd"] == str(path) and again["spawn"] == "worktree"
                assert again["branch"] == "rcd/" + path.name
                assert git(path, "rev-parse", "--abbrev-ref", "HEAD") == again["branch"]
            assert git(paths[1], "rev-parse", "HEAD") == agent_commit

            # The agent works in the restored worktree; that work is then kept at the stop.
            await relay.post_message(ids[0], f"write {paths[0] / 'more.txt'} again", "w1")
            await allow_next(relay, ids[0], 1)
            assert await daemon.stop() == 0
            assert (paths[0] / "more.txt").read_text() == "again"
            ended = (await relay.events(ids[0]))[-1]
            assert ended["kind"] == "session_ended" and ended["data"]["worktree_kept"] is True
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
