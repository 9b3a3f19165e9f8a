"""The headline deployment, as its users run it: ``rcd start --capacity 32 --spawn worktree``
on a 20,000-file repository, the real pinned CLI in every session, 32 sessions started at
once, all busy when the service manager sends SIGTERM, then started again.

One test, in stages, because each stage needs the state the one before left (32 real agents
are the expensive part). Times here are deadlines that catch a hang, not targets: the
figures are ``bench/fleet.py``'s.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import trio

from bench.bare_cli import start_fake_api
from bench.session_start import make_repository
from testkit.fakes import claude_env, find_claude
from testkit.harness import Events, Relay, processes_in, start_daemon, start_relay
from testkit.waiting import eventually

SESSIONS = 32
STOP_TIMEOUT = 10.0


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def session_worktrees(repo: Path) -> set[str]:
    directory = repo / ".rcd" / "worktrees"
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


def rcd_branches(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/rcd").split())


async def wait_all(
    relay: Relay, ids: list[str], done: Callable[[Events], bool], timeout: float
) -> dict[str, Events]:
    """Poll each session's log in turn (one request at a time: 32 agents are booting on
    the same cores) until ``done`` holds for every one."""
    found: dict[str, Events] = {}

    async def all_done() -> bool:
        for session_id in ids:
            if session_id not in found:
                events = await relay.events(session_id)
                if done(events):
                    found[session_id] = events
        return len(found) == len(ids)

    await eventually(all_done, timeout=timeout, what=f"all {len(ids)} sessions", every=0.5)
    return found


async def last_event(relay: Relay, session_id: str) -> dict[str, object]:
    events = await relay.events(session_id)
    return events[-1] if events else {}


async def test_32_worktree_sessions_of_the_real_cli_start_stop_and_restart(
    tmp_path: Path,
) -> None:
    claude = find_claude()
    repo = tmp_path / "repo"
    await trio.to_thread.run_sync(make_repository, repo)
    home = tmp_path / "home"
    flags = ["--spawn", "worktree", "--capacity", str(SESSIONS), "--stop-timeout", "10"]
    # The fake API in its own process, as the CLI sees the real one: this process runs the
    # relay, and 32 agents share the machine's cores.
    api, base_url = await start_fake_api(tmp_path)
    try:
        await _scenario(tmp_path, repo, home, claude, base_url, flags)
    finally:
        api.kill()
        await api.wait()


async def _scenario(
    tmp_path: Path, repo: Path, home: Path, claude: str, base_url: str, flags: list[str]
) -> None:
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            env = claude_env(home, base_url)
            daemon = await start_daemon(relay, home, repo, *flags, agent_bin=claude, extra_env=env)

            # 1. 32 sessions at once, each with a prompt: every one reaches its first reply,
            #    in a worktree of its own.
            ids: list[str] = []

            async def create(i: int) -> None:
                r = await relay.create_session(daemon.environment_id, prompt=f"hello {i}")
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])

            async with trio.open_nursery() as starts:
                for i in range(SESSIONS):
                    starts.start_soon(create, i)
            logs = await wait_all(
                relay, ids, lambda evs: any(e["kind"] == "assistant_text" for e in evs), 300
            )
            replies = {
                sid: next(str(e["data"]["cwd"]) for e in evs if e["kind"] == "session_started")
                for sid, evs in logs.items()
            }
            cwds = set(replies.values())
            assert len(cwds) == SESSIONS
            assert all(Path(c).parent == repo / ".rcd" / "worktrees" for c in cwds)

            # 2. Work in two of them: an untracked file, and a commit on the branch.
            untracked_id, committed_id = ids[0], ids[1]
            (Path(replies[untracked_id]) / "notes.txt").write_text("keep me\n")
            committed = Path(replies[committed_id])
            (committed / "feature.py").write_text("X = 1\n")
            git(committed, "add", "feature.py")
            git(committed, "commit", "-q", "-m", "feature")

            # 3. Every session busy (a turn that streams for a minute), then SIGTERM.
            for session_id in ids:
                r = await relay.post_message(session_id, "sleep 60", f"{session_id}-busy")
                assert r.status_code == 202, r.text
            await wait_all(
                relay,
                ids,
                lambda evs: (
                    [e["data"] for e in evs if e["kind"] == "status"][-1]["state"] == "busy"
                ),
                120,
            )
            assert sum(bool(processes_in(Path(cwd))) for cwd in cwds) == SESSIONS
            sent = trio.current_time()
            # One SIGTERM, as a service manager sends: a second one forces the stop, and
            # whether two close together arrive as one or two is a race.
            daemon.process.send_signal(signal.SIGTERM)
            with trio.fail_after(60):
                code = await daemon.process.wait()
            took = trio.current_time() - sent
            assert code == 0, daemon.log()[-3000:]
            assert took <= STOP_TIMEOUT, f"stopped in {took:.1f}s: {daemon.log()[-3000:]}"
            assert "Traceback" not in daemon.log()
            for cwd in cwds:  # no agent (nor anything it started) left in any worktree
                assert not processes_in(Path(cwd)), cwd

            # 4. The relay: every session ended, truthfully; the environment offline, empty.
            for session_id in ids:
                assert (await relay.session(session_id))["state"] == "ended"
                end = await last_event(relay, session_id)
                assert end.get("kind") == "session_ended", (session_id, end)
                data = end["data"]
                assert isinstance(data, dict)
                if session_id == untracked_id:
                    assert data["worktree_kept"] is True
                    assert "untracked files" in data["kept_reasons"]
                elif session_id == committed_id:
                    assert data["worktree_kept"] is True
                    assert "1 commit not in its base" in data["kept_reasons"]
                else:
                    assert data["worktree_kept"] is False, (session_id, data)
                assert str(data["branch"]).startswith("rcd/")
            (environment,) = [
                e for e in await relay.environments() if e["id"] == daemon.environment_id
            ]
            assert environment["online"] is False
            assert environment["active_sessions"] == 0

            # 5. Work is kept; after the next start, nothing clean is left.
            kept_dir = Path(replies[untracked_id]).name
            kept_branch = "rcd/" + Path(replies[committed_id]).name
            assert kept_dir in session_worktrees(repo)
            assert kept_branch in rcd_branches(repo)
            daemon = await start_daemon(relay, home, repo, *flags, agent_bin=claude, extra_env=env)
            await eventually(
                lambda: (
                    session_worktrees(repo) == {kept_dir}
                    and rcd_branches(repo) == {"rcd/" + kept_dir, kept_branch}
                ),
                timeout=180,
                what="only the kept worktree and branches to be left",
                every=0.5,
            )
            assert (Path(replies[untracked_id]) / "notes.txt").read_text() == "keep me\n"
            assert await daemon.stop() == 0
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
