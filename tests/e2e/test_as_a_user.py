"""The headline deployment as its users run it: not as root. ``rcd start --spawn worktree``
with spares, run by an ordinary user (``nobody``, through ``setpriv``: no capability, so
file modes bind as they do on a developer's machine), the real ``claude`` CLI against the
fake Messages API: sessions in worktrees and spares, a commit made by the agent (with
``--sandbox`` too, where a write outside the worktree is refused), ``rcd status``, a clean
stop. The rest of the suite runs as root, past every file mode: a
worktree made mode 0600 (a process-wide umask while the daemon started) went unseen there."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from testkit import privileges
from testkit.fakes import FakeMessagesAPI, claude_env, find_claude
from testkit.harness import (
    REPO,
    Daemon,
    as_user,
    home_env,
    processes_in,
    rcd,
    start_daemon,
    start_relay,
)
from testkit.waiting import eventually

from .agent_rounds import answer

#: ``nobody``: an account with no rights of its own anywhere.
UID = 65534


@pytest.fixture
def users_dir() -> Iterator[Path]:
    """A directory of the user's own (pytest's own are root's, mode 0700)."""
    privileges.needs_root("to run the daemon as another user")
    for needed in (
        [sys.executable, "-c", "import daemon"],  # rcd's Python and its checkout
        ["test", "-x", find_claude()],
    ):
        reached = subprocess.run([*as_user(UID), *needed], cwd=REPO, check=False)
        assert reached.returncode == 0, (
            f"user {UID} cannot run {needed}: the checkout, its .venv and node_modules "
            "must be readable by every user (not under a private home) for this test"
        )
    path = Path(tempfile.mkdtemp(prefix="rcd-user-", dir="/tmp"))
    try:
        os.chown(path, UID, UID)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def give(path: Path) -> None:
    """Hand ``path`` and everything in it to the user (made by this root test)."""
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.lchown(name, UID, UID)


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def prepare(
    users_dir: Path, base_url: str, files: dict[str, str]
) -> tuple[Path, Path, dict[str, str], dict[str, str]]:
    """A repository with ``files`` committed and a home whose CLI talks to ``base_url``,
    both the user's: (repository, home, the CLI's environment, rcd's whole environment)."""
    repo, home = users_dir / "repo", users_dir / "home"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", ".")
    git(repo, "-c", "user.name=T", "-c", "user.email=t@example.org", "commit", "-q", "-m", "first")
    extra = claude_env(home, base_url)
    env = home_env(home, extra)
    give(home)
    give(repo)
    os.chown(env["XDG_RUNTIME_DIR"], UID, UID)  # home_env's short directory, outside home
    return repo, home, extra, env


def entered(path: Path) -> bool:
    """Whether the user could enter ``path`` (its owner's read and search bits)."""
    st = os.stat(path)
    return st.st_uid == UID and stat.S_IMODE(st.st_mode) & 0o500 == 0o500


@pytest.mark.parametrize("sandbox", [[], ["--sandbox"]], ids=["plain", "sandboxed"])
async def test_worktree_sessions_with_spares_as_an_ordinary_user(
    users_dir: Path, sandbox: list[str]
) -> None:
    async with trio.open_nursery() as nursery:
        base_url: str = await nursery.start(FakeMessagesAPI().run)
        files = {f"file{i}.txt": f"{i}\n" for i in range(50)}
        repo, home, extra, env = prepare(users_dir, base_url, files)
        relay = await start_relay(nursery, users_dir / "relay")
        daemon = None
        try:
            options = ["--spawn", "worktree", "--capacity", "4", "--spare-worktrees", "2"]
            options += sandbox
            daemon = await start_daemon(
                relay, home, repo, *options, agent_bin=find_claude(), extra_env=extra, uid=UID
            )
            spares = await eventually(
                lambda: _spares(daemon, "ready", 2), timeout=60, what="two spares ready"
            )
            sessions = []
            for n in range(3):  # more than the spares: two taken, then one made fresh
                created = await relay.create_session(daemon.environment_id, prompt=f"hi {n}")
                sessions.append(created.json()["id"])
            cwds = []
            for session_id in sessions:
                events = await relay.wait_kind(session_id, "turn_result", timeout=60)
                started = next(e for e in events if e["kind"] == "session_started")
                cwds.append(Path(started["data"]["cwd"]))
                texts = [e["data"]["text"] for e in events if e["kind"] == "assistant_text"]
                assert texts and texts[-1].startswith("echo: hi"), events

            # The agent commits in its worktree, as the user (approved from the phone).
            commit = "git -c user.name=T -c user.email=t@example.org commit -q --allow-empty -m x"
            first = sessions[0]
            assert (await relay.post_message(first, f"run {commit}", "commit")).is_success
            await answer(relay, first, 1, "allow")
            events = await relay.wait_kind(first, "turn_result", 2, timeout=60)
            (result,) = [e["data"] for e in events if e["kind"] == "tool_result"]
            assert not result["is_error"], result

            # Outside its worktree: the user's own directory, closed only by the sandbox.
            outside = users_dir / "outside.txt"
            assert (await relay.post_message(first, f"run touch {outside}", "out")).is_success
            await answer(relay, first, 2, "allow")
            events = await relay.wait_kind(first, "turn_result", 3, timeout=60)
            touched = [e["data"] for e in events if e["kind"] == "tool_result"][-1]
            assert outside.exists() is not sandbox and touched["is_error"] is bool(sandbox)

            status = await rcd(env, "status", str(repo), uid=UID)
            assert status.returncode == 0 and all(s in status.stdout.decode() for s in sessions)

            assert await _spares(daemon, "taken", 2), spares

            pool = repo / ".rcd" / "pool"
            made = [*cwds, *(pool.iterdir() if pool.exists() else [])]
            assert made and all(entered(p) for p in made), [
                (p, oct(os.stat(p).st_mode)) for p in made
            ]
            log = daemon.log()
            for trouble in ("spare_worktree_failed", "spare_not_used", "Traceback"):
                assert trouble not in log, log

            assert await daemon.stop() == 0
            assert processes_in(repo) == []

            # Restarted, as a service is: the spares left are adopted, a session resumes in
            # its worktree and takes a turn.
            daemon = await start_daemon(
                relay, home, repo, *options, agent_bin=find_claude(), extra_env=extra, uid=UID
            )
            await eventually(lambda: _spares(daemon, "ready", 2), timeout=60, what="spares")
            log = daemon.log()
            assert "spares_adopted" in log
            assert "spare_unreadable" not in log and "spare_has_changes" not in log, log
            assert (await relay.client.post(f"/api/sessions/{first}/resume")).is_success
            events = await relay.wait_kind(first, "session_started", 2, timeout=60)
            again = [e["data"]["cwd"] for e in events if e["kind"] == "session_started"]
            assert again == [str(cwds[0])] * 2
            assert (await relay.post_message(first, "back again", "back")).is_success
            await relay.wait_kind(first, "turn_result", 4, timeout=60)
            assert await daemon.stop() == 0
            assert "Traceback" not in daemon.log()
        finally:
            if daemon is not None and daemon.process.returncode is None:
                with trio.CancelScope(shield=True), trio.move_on_after(30):
                    await daemon.stop()  # its own teardown first: git's children end too
            await relay.aclose()
            shutil.rmtree(env["XDG_RUNTIME_DIR"], ignore_errors=True)
            nursery.cancel_scope.cancel()


async def _spares(daemon: Daemon, field: str, count: int) -> dict[str, int] | None:
    """The daemon's spare worktrees (``rcd status``) once ``field`` reaches ``count``."""
    spares: dict[str, int] = (await daemon.status())["spare_worktrees"]
    return spares if spares[field] >= count else None


async def test_the_readmes_start_as_an_ordinary_user(users_dir: Path) -> None:
    """``rcd start`` with its relay inside (the README's first command), as a user: the
    relay's data is theirs and private, a device token made with ``rcd relay token``
    reaches it, a worktree session of the real CLI answers, and SIGTERM ends it cleanly."""
    async with trio.open_nursery() as nursery:
        base_url: str = await nursery.start(FakeMessagesAPI().run)
        repo, home, _, env = prepare(users_dir, base_url, {"README": "hello\n"})
        log_path = users_dir / "daemon.log"
        argv = [sys.executable, "-m", "daemon", "start", str(repo), "--relay-port", "0"]
        argv += ["--agent-bin", find_claude(), "--spawn", "worktree", "--capacity", "2"]
        with log_path.open("wb") as log_file:
            process = await trio.lowlevel.open_process(
                [*as_user(UID), *argv],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=str(REPO),
            )
        try:

            def registered() -> str | None:
                text = log_path.read_text()
                assert process.returncode is None, text
                found = re.search(r"relay running at (http://127\.0\.0\.1:\d+)", text)
                return found.group(1) if found and "registered with" in text else None

            url = await eventually(registered, timeout=30, what="the daemon registered")
            made = await rcd(env, "relay", "token", "create", "--name", "phone", uid=UID)
            token = made.stdout.decode().strip().splitlines()[-1]
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as phone:
                [environment] = (await phone.get("/api/environments")).json()["environments"]
                created = await phone.post(
                    f"/api/environments/{environment['id']}/sessions", json={"prompt": "hi"}
                )
                assert created.status_code == 201, created.text
                path = f"/api/sessions/{created.json()['id']}/events"

                async def answered() -> list[dict[str, Any]] | None:
                    events: list[dict[str, Any]] = (await phone.get(path)).json()["events"]
                    return events if any(e["kind"] == "turn_result" for e in events) else None

                events = await eventually(answered, timeout=60, what="the first turn")
            texts = [e["data"]["text"] for e in events if e["kind"] == "assistant_text"]
            assert texts == ["echo: hi"], events
            # The relay's data (its database holds every conversation): the user's, private.
            data = home / ".data" / "rcd" / "relay"
            assert (data / "relay.sqlite3").exists(), list(home.rglob("*"))
            for kept in [data, *data.rglob("*")]:
                st = os.lstat(kept)
                assert st.st_uid == UID, kept
                assert stat.S_IMODE(st.st_mode) & 0o077 == 0, (kept, oct(st.st_mode))
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                code = await process.wait()
            shutil.rmtree(env["XDG_RUNTIME_DIR"], ignore_errors=True)
            nursery.cancel_scope.cancel()
        assert code == 0, log_path.read_text()
