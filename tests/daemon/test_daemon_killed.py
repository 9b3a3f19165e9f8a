"""`kill -9` of the daemon while an agent's command runs: the agent dies with the daemon,
what it started runs on (in its session, or in one of its own), and the next `rcd start`
ends all of it before it comes online; the sessions end as `daemon_died`."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import trio

from testkit.harness import LEAVE_BEHIND, pids_alive, processes_in, start_daemon, start_relay
from testkit.waiting import eventually

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


async def test_a_restart_ends_what_a_killed_daemon_left_running(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    script = project / "leave_behind.py"
    script.write_text(LEAVE_BEHIND)
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        left: list[int] = []
        try:
            daemon = await start_daemon(relay, tmp_path / "home", project)
            sid = (
                await relay.create_session(daemon.environment_id, prompt=f"run python3 {script}")
            ).json()["id"]
            events = await relay.wait_kind(sid, "permission_request")
            request = next(e for e in events if e["kind"] == "permission_request")["data"]
            assert (await relay.decide(sid, request["request_id"], "allow")).status_code == 202
            job = project / "job.pid"
            await eventually(
                lambda: job.exists() and job.read_text(),
                timeout=10,
                what="the job to write its pid to job.pid",
            )
            [session] = (await daemon.status())["sessions"]
            agent = session["pid"]
            left = [pid for pid in processes_in(project) if pid != agent]
            assert int(job.read_text()) in left and len(left) >= 2  # the command and its job

            daemon.process.send_signal(signal.SIGKILL)
            await daemon.process.wait()
            # The agent goes with the daemon (PR_SET_PDEATHSIG).
            await eventually(
                lambda: not pids_alive([agent]),
                timeout=5,
                what=f"the agent ({agent}) to die with the daemon",
            )
            assert pids_alive(left) == left  # what it started does not

            again = await start_daemon(relay, tmp_path / "home", project)
            assert pids_alive(left) == []  # ended before the new daemon came online
            events = await relay.wait_kind(sid, "session_ended")
            assert events[-1]["data"]["reason"] == "daemon_died"
            assert await again.stop() == 0
        finally:
            for pid in pids_alive(left):
                os.kill(pid, signal.SIGKILL)
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def test_after_a_kill_each_session_s_end_says_truthfully_what_its_worktree_kept(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.name", "T"],
        ["config", "user.email", "t@localhost"],
        ["commit", "-q", "--allow-empty", "-m", "first"],
    ):
        await trio.run_process(["git", *args], cwd=repo)
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            flags = ("--spawn", "worktree", "--spare-worktrees", "0")
            daemon = await start_daemon(relay, tmp_path / "home", repo, *flags)
            ids = [
                (await relay.create_session(daemon.environment_id, title=t)).json()["id"]
                for t in ("with work", "clean")
            ]
            cwds = []
            for sid in ids:
                events = await relay.wait_kind(sid, "session_started")
                started = next(e for e in events if e["kind"] == "session_started")
                cwds.append(Path(started["data"]["cwd"]))
            (cwds[0] / "notes.txt").write_text("mine\n")
            daemon.process.send_signal(signal.SIGKILL)
            await daemon.process.wait()

            again = await start_daemon(relay, tmp_path / "home", repo, *flags)
            ends = [(await relay.wait_kind(sid, "session_ended"))[-1]["data"] for sid in ids]
            assert ends[0]["worktree_kept"] is True
            assert ends[0]["kept_reasons"] == ["untracked files"]
            assert ends[0]["branch"] == "rcd/with-work"
            assert ends[1]["worktree_kept"] is False
            assert ends[1]["branch"] == "rcd/clean"
            assert all(end["reason"] == "daemon_died" for end in ends)
            # Only one end each (the spool held none), and the clean one is recycled.
            for sid in ids:
                kinds = [e["kind"] for e in await relay.events(sid)]
                assert kinds.count("session_ended") == 1
            await eventually(
                lambda: not cwds[1].exists(),
                timeout=20,
                what=f"the clean session's worktree {cwds[1]} to be recycled",
            )
            assert (cwds[0] / "notes.txt").read_text() == "mine\n"
            assert await again.stop() == 0
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
