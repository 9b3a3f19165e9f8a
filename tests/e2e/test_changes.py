"""A session's work seen and landed through the client API, as a user on the phone does:
the real ``claude`` CLI (against the fake Messages API) edits, adds, deletes and renames files
in its worktree (one binary, one of 5 MB), committing some; the API shows exactly those
changes, commits the rest, merges it into the main checkout, and the worktree goes by the
usual rules. Refusals (conflict, dirty main checkout, discard unconfirmed) leave the main
checkout as it was."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import trio

from testkit.fakes import FakeMessagesAPI, claude_env, find_claude
from testkit.harness import Relay, start_daemon, start_relay

#: File content that must never be stored by the relay.
SECRET = "zebra-quartz-7781 the session's code"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def project_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Dev")
    git(path, "config", "user.email", "dev@example.invalid")
    (path / "lib.py").write_text("one\ntwo\nthree\n")
    (path / "gone.txt").write_text("bye\n")
    (path / "old name.txt").write_text("".join(f"line {i}\n" for i in range(30)))
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "start")
    return path


def main_checkout(repo: Path) -> tuple[str, str]:
    return git(repo, "status", "--porcelain=v2", "--branch", "--untracked-files=all"), git(
        repo, "rev-parse", "HEAD"
    )


async def turn(relay: Relay, session_id: str, text: str, n: int) -> None:
    assert (await relay.post_message(session_id, text, f"m{n}")).status_code == 202
    events = await relay.wait_kind(session_id, "turn_result", n, timeout=60)
    results = [e for e in events if e["kind"] == "tool_result"]
    assert not any(r["data"]["is_error"] for r in results), results


async def changes(relay: Relay, session_id: str, **params: str) -> dict[str, Any]:
    answer = await relay.client.get(f"/api/sessions/{session_id}/changes", params=params)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


async def session_cwd(relay: Relay, session_id: str) -> Path:
    """Where the session runs, once it has started."""
    started = await relay.wait_kind(session_id, "session_started")
    return Path(next(e for e in started if e["kind"] == "session_started")["data"]["cwd"])


async def act(relay: Relay, session_id: str, action: str, **body: Any) -> httpx.Response:
    return await relay.client.post(f"/api/sessions/{session_id}/changes/{action}", json=body)


async def test_a_real_session_s_work_is_shown_committed_and_merged(tmp_path: Path) -> None:
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
            allowed = await relay.client.put(
                f"/api/environments/{env_id}/settings",
                json={"permission_mode": "acceptEdits", "allowed_tools": ["Bash"]},
            )
            assert allowed.status_code == 200, allowed.text
            session_id = (await relay.create_session(env_id, title="land me")).json()["id"]
            cwd = await session_cwd(relay, session_id)
            await turn(relay, session_id, f"write {cwd}/lib.py one TWO three", 1)
            await turn(
                relay, session_id,
                f"run cd '{cwd}' && git rm -q gone.txt && git mv 'old name.txt' renamed.txt"
                " && git commit -qam 'tidy up'",
                2,
            )  # fmt: skip
            await turn(
                relay, session_id,
                f"run cd '{cwd}' && printf 'PNG\\000\\001\\002' > logo.png"
                " && yes 'a log line' | head -c 5242880 > big.log",
                3,
            )  # fmt: skip
            await turn(relay, session_id, f"write {cwd}/notes.md hello", 4)

            seen = await changes(relay, session_id)
            files = {f["path"]: f for f in seen["files"]}
            assert {p: f["status"] for p, f in files.items()} == {
                "big.log": "added",
                "gone.txt": "deleted",
                "lib.py": "modified",
                "logo.png": "added",
                "notes.md": "added",
                "renamed.txt": "renamed",
            }
            assert files["renamed.txt"]["old_path"] == "old name.txt"
            assert (files["lib.py"]["added"], files["lib.py"]["removed"]) == (1, 3)
            assert files["logo.png"]["binary"] and files["logo.png"]["added"] is None
            assert files["big.log"]["size"] == 5242880
            assert (seen["commits"], seen["uncommitted"], seen["target"]) == (1, True, "main")
            assert seen["branch"] == "rcd/land-me" and seen["base"] == git(
                repo, "rev-parse", "HEAD"
            )
            assert seen["actions"] == ["commit"]  # running: no discard; nothing to merge yet

            lib = await changes(relay, session_id, path="lib.py")
            (hunk,) = lib["hunks"]
            assert hunk["lines"] == [
                "-one", "-two", "-three", "+one TWO three", "\\ No newline at end of file",
            ]  # fmt: skip
            big = await changes(relay, session_id, path="big.log")
            assert big["hunks"] is None and big["summary"] == "large, 5.0 MB"
            logo = await changes(relay, session_id, path="logo.png")
            assert logo["summary"] == "binary, 6 B"
            refused = await relay.client.get(
                f"/api/sessions/{session_id}/changes", params={"path": "../../etc/passwd"}
            )
            assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_changed"

            committed = await act(relay, session_id, "commit", message="Land the session")
            assert committed.status_code == 200, committed.text
            assert git(cwd, "log", "-1", "--format=%s") == "Land the session"
            after = await changes(relay, session_id)
            assert not after["uncommitted"] and after["commits"] == 2
            assert after["actions"] == ["merge"]

            merged = await act(relay, session_id, "merge")
            assert merged.status_code == 200, merged.text
            assert "fast-forwarded main" in merged.json()["summary"]
            assert git(repo, "rev-parse", "main") == git(cwd, "rev-parse", "HEAD")
            assert (repo / "notes.md").read_text() == "hello"
            assert git(repo, "status", "--porcelain") == ""
            assert "merge" not in (await changes(relay, session_id))["actions"]  # landed

            log = await relay.wait_kind(session_id, "git_action", 2)
            actions = [e["data"] for e in log if e["kind"] == "git_action"]
            assert [a["action"] for a in actions] == ["commit", "merge"]
            assert all(a["origin"] == "tests" for a in actions), actions  # the device's name

            # Ended, its work landed: the usual rules release worktree and branch.
            assert (await relay.client.post(f"/api/sessions/{session_id}/stop")).status_code == 202
            ended = await relay.wait_kind(session_id, "session_ended")
            end = next(e for e in ended if e["kind"] == "session_ended")["data"]
            assert end["worktree_kept"] is False, end
            assert not cwd.exists()
            assert "rcd/land-me" not in git(repo, "branch", "--list", "rcd/*")
            gone = await relay.client.get(f"/api/sessions/{session_id}/changes")
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "workspace_gone"
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def test_refusals_leave_the_main_checkout_alone(tmp_path: Path) -> None:
    repo, home = project_repo(tmp_path / "project"), tmp_path / "home"
    async with trio.open_nursery() as nursery:
        base_url: str = await nursery.start(FakeMessagesAPI().run)
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            daemon = await start_daemon(
                relay, home, repo, "--spawn", "worktree", "--spare-worktrees", "0",
                agent_bin=find_claude(), extra_env=claude_env(home, base_url),
            )  # fmt: skip
            session_id = (await relay.create_session(daemon.environment_id, title="clash")).json()[
                "id"
            ]
            cwd = await session_cwd(relay, session_id)
            # The session's work (its hands: this test) and the user's own, in the same file.
            (cwd / "lib.py").write_text(f"{SECRET}\n")
            (cwd / "-rf new\nline ü.txt").write_text("hostile\n")
            assert (await act(relay, session_id, "commit", message="theirs")).status_code == 200
            (repo / "lib.py").write_text("mine, not committed\n")
            before = main_checkout(repo)
            shown = await changes(relay, session_id, path="lib.py")
            assert f"+{SECRET}" in shown["hunks"][0]["lines"]
            # The code went through the relay's memory only.
            for stored in (tmp_path / "relay").rglob("*"):
                if stored.is_file():
                    assert SECRET.encode() not in stored.read_bytes(), stored

            dirty = await act(relay, session_id, "merge")
            assert dirty.status_code == 409, dirty.text
            assert dirty.json()["error"]["code"] == "checkout_dirty"
            assert dirty.json()["error"]["files"] == ["lib.py"]
            assert main_checkout(repo) == before

            git(repo, "commit", "-qam", "mine")
            before = main_checkout(repo)
            clash = await act(relay, session_id, "merge")
            assert clash.status_code == 409, clash.text
            assert clash.json()["error"]["code"] == "conflicts"
            assert clash.json()["error"]["files"] == ["lib.py"]
            assert main_checkout(repo) == before

            running = await act(relay, session_id, "discard")
            assert running.json()["error"]["code"] == "session_running"
            (cwd / "wip.txt").write_text("unfinished\n")
            assert (await relay.client.post(f"/api/sessions/{session_id}/stop")).status_code == 202
            ended = await relay.wait_kind(session_id, "session_ended")
            end = next(e for e in ended if e["kind"] == "session_ended")["data"]
            reasons = ["untracked files", "1 commit not in its base"]
            assert end["worktree_kept"] is True and end["kept_reasons"] == reasons

            kept = await relay.client.get(f"/api/environments/{daemon.environment_id}/worktrees")
            assert kept.status_code == 200, kept.text
            (listed,) = kept.json()["worktrees"]
            assert (listed["branch"], listed["session_id"]) == ("rcd/clash", session_id)
            assert listed["reasons"] == reasons and listed["exists"]

            seen = await changes(relay, session_id)
            assert "discard" in seen["actions"]
            assert seen["discard"]["lost"] == (
                "1 uncommitted file(s): wip.txt and 1 commit(s) on rcd/clash not landed"
            )
            unconfirmed = await act(relay, session_id, "discard")
            assert unconfirmed.status_code == 409
            assert unconfirmed.json()["error"]["code"] == "confirmation_required"
            assert "1 commit(s) on rcd/clash not landed" in unconfirmed.json()["error"]["message"]
            assert cwd.exists()
            gone = await act(relay, session_id, "discard", confirm=seen["discard"]["confirm"])
            assert gone.status_code == 200, gone.text
            assert not cwd.exists() and git(repo, "branch", "--list", "rcd/*") == ""
            assert main_checkout(repo) == before
            status = await daemon.status()
            assert status["kept_worktrees"] == [] or all(
                k["branch"] != "rcd/clash" for k in status["kept_worktrees"]
            )
            emptied = await relay.client.get(f"/api/environments/{daemon.environment_id}/worktrees")
            assert emptied.json()["worktrees"] == []
            log = await relay.wait_kind(session_id, "git_action", 2)
            assert [e["data"]["action"] for e in log if e["kind"] == "git_action"] == [
                "commit",
                "discard",
            ]
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
