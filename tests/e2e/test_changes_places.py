"""A session's work wherever it is: a same-dir session (its start kept by the daemon), a
worktree an earlier run of the daemon left (reached by its slug, after a restart), a push to
a remote; and the calls a relay refuses (offline environment, unknown session, bad action,
a path that is not a changed file)."""

from __future__ import annotations

import signal
from pathlib import Path

import trio

from testkit.fakes import FakeMessagesAPI, claude_env, find_claude
from testkit.harness import start_daemon, start_relay

from .test_changes import act, changes, git, project_repo, session_cwd


async def test_a_same_dir_session_shows_its_own_work_and_commits_it(tmp_path: Path) -> None:
    repo, home = project_repo(tmp_path / "project"), tmp_path / "home"
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    # A tag named as the branch: git's short name for the branch is then `heads/main`.
    git(repo, "tag", "main")
    async with trio.open_nursery() as nursery:
        base_url: str = await nursery.start(FakeMessagesAPI().run)
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            daemon = await start_daemon(
                relay, home, repo, "--spawn", "same-dir",
                agent_bin=find_claude(), extra_env=claude_env(home, base_url),
            )  # fmt: skip
            start = git(repo, "rev-parse", "HEAD")
            session_id = (await relay.create_session(daemon.environment_id)).json()["id"]
            await relay.wait_kind(session_id, "session_started")
            # Work committed while the session runs counts from the session's start.
            (repo / "lib.py").write_text("one\n")
            git(repo, "commit", "-qam", "by hand")
            (repo / "new file.txt").write_text("new\n")
            seen = await changes(relay, session_id)
            assert seen["spawn"] == "same-dir" and seen["base"] == start
            assert seen["branch"] == "main" and seen["target"] is None
            assert {f["path"]: f["status"] for f in seen["files"]} == {
                "lib.py": "modified",
                "new file.txt": "added",
            }
            assert (seen["commits"], seen["uncommitted"]) == (1, True)
            assert seen["actions"] == ["commit", "push"] and seen["discard"] is None

            refused = await act(relay, session_id, "merge")
            assert refused.status_code == 409 and refused.json()["error"]["code"] == (
                "not_a_worktree"
            )
            empty = await act(relay, session_id, "commit")
            assert empty.status_code == 400
            assert empty.json()["error"]["code"] == "message_required"
            done = await act(relay, session_id, "commit", message="-m is a message too")
            assert done.status_code == 200, done.text
            assert done.json()["summary"].endswith(" on main")
            assert git(repo, "log", "-1", "--format=%s") == "-m is a message too"
            assert git(repo, "status", "--porcelain") == ""
            pushed = await act(relay, session_id, "push")
            assert pushed.status_code == 200, pushed.text
            assert git(remote, "rev-parse", "main") == git(repo, "rev-parse", "HEAD")
            assert pushed.json()["summary"] == "pushed main to origin"

            bad = await relay.client.post(f"/api/sessions/{session_id}/changes/rebase", json={})
            assert bad.status_code == 404
            unknown = await relay.client.get("/api/sessions/ses_nope/changes")
            assert unknown.status_code == 404
            outside = await relay.client.get(
                f"/api/sessions/{session_id}/changes", params={"path": "README.md"}
            )
            assert outside.status_code == 404
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def test_a_worktree_left_by_an_earlier_run_is_reviewed_and_landed_by_slug(
    tmp_path: Path,
) -> None:
    repo, home = project_repo(tmp_path / "project"), tmp_path / "home"
    async with trio.open_nursery() as nursery:
        base_url: str = await nursery.start(FakeMessagesAPI().run)
        relay = await start_relay(nursery, tmp_path / "relay")
        args = ("--spawn", "worktree", "--spare-worktrees", "0")
        env = claude_env(home, base_url)
        try:
            daemon = await start_daemon(
                relay, home, repo, *args, agent_bin=find_claude(), extra_env=env
            )
            env_id = daemon.environment_id
            session_id = (await relay.create_session(env_id, title="left over")).json()["id"]
            cwd = await session_cwd(relay, session_id)
            (cwd / "half done.txt").write_text("wip\n")
            assert await daemon.stop(signal.SIGTERM) == 0
            offline = await relay.client.get(f"/api/sessions/{session_id}/changes")
            assert offline.status_code == 409
            assert offline.json()["error"]["code"] == "environment_offline"

            daemon = await start_daemon(
                relay, home, repo, *args, agent_bin=find_claude(), extra_env=env
            )
            kept = await relay.client.get(f"/api/environments/{env_id}/worktrees")
            assert kept.status_code == 200, kept.text
            (left,) = kept.json()["worktrees"]
            assert (left["slug"], left["session_id"]) == ("left-over", session_id)
            assert left["reasons"] == ["untracked files"]

            slug = f"/api/environments/{env_id}/worktrees/left-over/changes"
            seen = await relay.client.get(slug)
            assert seen.status_code == 200, seen.text
            assert [f["path"] for f in seen.json()["files"]] == ["half done.txt"]
            diff = await relay.client.get(slug, params={"path": "half done.txt"})
            assert diff.json()["hunks"][0]["lines"] == ["+wip"]
            for hostile in ("..", "../..", "a/b"):
                wrong = await relay.client.get(
                    f"/api/environments/{env_id}/worktrees/{hostile}/changes"
                )
                assert wrong.status_code in (404, 409), (hostile, wrong.text)
            committed = await relay.client.post(slug + "/commit", json={"message": "finish"})
            assert committed.status_code == 200, committed.text
            merged = await relay.client.post(slug + "/merge", json={})
            assert merged.status_code == 200, merged.text
            assert (repo / "half done.txt").read_text() == "wip\n"
            # Landed and clean: released by the usual rules, gone from every list.
            assert not cwd.exists()
            after = await relay.client.get(f"/api/environments/{env_id}/worktrees")
            assert after.json()["worktrees"] == []
            assert (await daemon.status())["kept_worktrees"] == []
            log = await relay.wait_kind(session_id, "git_action", 2)
            assert [e["data"]["action"] for e in log if e["kind"] == "git_action"] == [
                "commit",
                "merge",
            ]
            seqs = [e["seq"] for e in log]
            assert seqs == list(range(1, len(seqs) + 1))
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def test_a_session_never_acts_on_a_worktree_that_is_not_its_own(tmp_path: Path) -> None:
    """The path of an ended session's worktree, made again for a newer session (same
    title, same slug), is that session's: the old one sees nothing there and can discard
    nothing. A running session's worktree is never discarded by its slug. Hostile input
    is refused, and the daemon stays up."""
    repo, home = project_repo(tmp_path / "project"), tmp_path / "home"
    async with trio.open_nursery() as nursery:
        base_url: str = await nursery.start(FakeMessagesAPI().run)
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            daemon = await start_daemon(
                relay, home, repo, "--spawn", "worktree", "--spare-worktrees", "0",
                agent_bin=find_claude(), extra_env=claude_env(home, base_url),
            )  # fmt: skip
            env_id = daemon.environment_id
            old = (await relay.create_session(env_id, title="fix tests")).json()["id"]
            await relay.wait_kind(old, "session_started")
            assert (await relay.client.post(f"/api/sessions/{old}/stop")).status_code == 202
            await relay.wait_kind(old, "session_ended")  # clean: released
            new = (await relay.create_session(env_id, title="fix tests")).json()["id"]
            cwd = await session_cwd(relay, new)
            assert cwd.name == "fix-tests"
            (cwd / "b_work.py").write_text("the new session's\n")

            for call in (
                relay.client.get(f"/api/sessions/{old}/changes"),
                act(relay, old, "discard", confirm="0" * 16),
            ):
                refused = await call
                assert refused.status_code == 404, refused.text
                assert refused.json()["error"]["code"] == "workspace_gone"
            by_slug = f"/api/environments/{env_id}/worktrees/fix-tests/changes"
            running = await relay.client.post(by_slug + "/discard", json={"confirm": "0" * 16})
            assert running.status_code == 409
            assert running.json()["error"]["code"] == "session_running"
            assert (cwd / "b_work.py").exists()
            assert [f["path"] for f in (await changes(relay, new))["files"]] == ["b_work.py"]

            nul = await relay.client.get(f"/api/environments/{env_id}/worktrees/a%00b/changes")
            assert nul.status_code == 400
            nul_message = await act(relay, new, "commit", message="a\u0000b")
            assert nul_message.status_code == 400
            assert (await relay.environments())[0]["online"]
            assert (await changes(relay, new))["uncommitted"]
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
