"""``rcd start --sandbox`` with the real ``claude`` CLI (its own sandbox: bubblewrap and
socat, installed by the test setup) against the fake Messages API, in worktree sessions: an
approved command may write in its worktree and nowhere else, and reach a test server only
when that host is a ``--sandbox-allow-host``; without ``--sandbox`` all three go through.
And ``--sandbox`` where its tools are missing refuses to start, naming the packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from testkit.fakes import FakeMessagesAPI, claude_env, find_claude
from testkit.fakes.web_server import counting_server
from testkit.harness import Relay, home_env, start_daemon, start_relay

Events = list[dict[str, Any]]


@pytest.fixture
def server() -> Iterator[tuple[int, list[str]]]:
    """A web server on loopback that counts what reaches it."""
    with counting_server() as running:
        yield running


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
async def relay_and_api(tmp_path: Path) -> AsyncIterator[tuple[Relay, str]]:
    async with trio.open_nursery() as nursery:
        base_url: str = await nursery.start(FakeMessagesAPI().run)
        relay = await start_relay(nursery, tmp_path / "relay")
        try:
            yield relay, base_url
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def run_approved(relay: Relay, session_id: str, command: str) -> dict[str, Any]:
    """Ask the agent to run ``command``, approve it as the phone does, and return the
    command's ``tool_result``."""
    before = len(await relay.events(session_id))
    assert (await relay.post_message(session_id, f"run {command}", command)).status_code == 202

    def new(events: Events) -> Events:
        return events[before:]

    events = await relay.wait_events(
        session_id, lambda evs: any(e["kind"] == "permission_request" for e in new(evs))
    )
    request = next(e for e in new(events) if e["kind"] == "permission_request")["data"]
    assert request["tool"] == "Bash"
    assert (await relay.decide(session_id, request["request_id"], "allow")).is_success
    events = await relay.wait_events(
        session_id, lambda evs: any(e["kind"] == "turn_result" for e in new(evs))
    )
    result: dict[str, Any] = next(e for e in new(events) if e["kind"] == "tool_result")["data"]
    return result


@pytest.mark.parametrize(
    ("options", "asks", "writes_outside", "reaches"),
    [
        (["--sandbox"], False, False, False),
        (["--sandbox", "--sandbox-allow-host", "127.0.0.1"], False, False, True),
        ([], False, True, True),
        # A session can ask for the sandbox its environment does not have.
        ([], True, False, False),
    ],
    ids=["sandbox", "sandbox-allowing-the-host", "no-sandbox", "session-asks-for-it"],
)
async def test_what_an_approved_command_may_do(
    relay_and_api: tuple[Relay, str],
    server: tuple[int, list[str]],
    tmp_path: Path,
    options: list[str],
    asks: bool,
    writes_outside: bool,
    reaches: bool,
) -> None:
    relay, base_url = relay_and_api
    port, hits = server
    repo, home = tmp_path / "repo", tmp_path / "home"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.name=T", "-c", "user.email=t@example.org", "commit", "-q",
        "--allow-empty", "-m", "first")  # fmt: skip
    # With spares, as users run it: one made while the daemon bound its control socket
    # once came out mode 0600, and the sandbox (no CAP_DAC_OVERRIDE) could not enter it.
    daemon = await start_daemon(
        relay, home, repo, "--spawn", "worktree", "--spare-worktrees", "2", *options,
        agent_bin=find_claude(), extra_env=claude_env(home, base_url),
    )  # fmt: skip
    created = await relay.create_session(daemon.environment_id, sandbox=asks)
    session_id = created.json()["id"]
    events = await relay.wait_kind(session_id, "session_started")
    worktree = Path(next(e for e in events if e["kind"] == "session_started")["data"]["cwd"])
    assert worktree.parent.name == "worktrees"

    outside = tmp_path / "outside.txt"
    touched = await run_approved(relay, session_id, f"touch {outside}")
    assert outside.exists() is writes_outside
    if not writes_outside:
        assert touched["is_error"] and "Read-only file system" in touched["content"]

    inside = await run_approved(relay, session_id, f"touch {worktree}/inside.txt")
    assert not inside["is_error"] and (worktree / "inside.txt").exists()
    # A worktree commits into the repository's .git, outside it: allowed too.
    commit = "git -c user.name=T -c user.email=t@example.org commit -q --allow-empty -m mine"
    committed = await run_approved(relay, session_id, commit)
    assert not committed["is_error"], committed
    # But not its hooks or config, which the daemon's own git (a merge or a commit from
    # the phone) would run outside the sandbox.
    hook = repo / ".git" / "hooks" / "post-merge"
    await run_approved(relay, session_id, f"echo 'touch {tmp_path}/escaped' > {hook}")
    assert hook.exists() is writes_outside
    await run_approved(relay, session_id, f"git config core.hooksPath {tmp_path}")
    assert ("hooksPath" in (repo / ".git" / "config").read_text()) is writes_outside

    # Through the sandbox's proxy (a loopback address is otherwise never proxied).
    fetched = await run_approved(
        relay, session_id, f"curl -sS --noproxy '' http://127.0.0.1:{port}/from-the-agent"
    )
    assert (hits == ["/from-the-agent"]) is reaches, (hits, fetched)
    assert ("hello" in fetched["content"]) is reaches
    refusals = [
        e["data"]["message"]
        for e in await relay.events(session_id)
        if e["kind"] == "error" and e["data"]["code"] == "sandbox_refused"
    ]
    # The policy answers the CLI's own "reach this host?" prompt: the phone is not asked.
    assert refusals == ([] if reaches else [
        "the sandbox keeps 127.0.0.1 out: it is not a --sandbox-allow-host"
    ])  # fmt: skip
    if asks:
        # Ended and resumed (a daemon restart would do the same): sandboxed still.
        assert (await relay.client.post(f"/api/sessions/{session_id}/stop")).is_success
        await relay.wait_kind(session_id, "session_ended")
        assert (await relay.client.post(f"/api/sessions/{session_id}/resume")).is_success
        await relay.wait_kind(session_id, "session_started", 2)
        outside_again = tmp_path / "outside-again.txt"
        again = await run_approved(relay, session_id, f"touch {outside_again}")
        assert again["is_error"] and not outside_again.exists()


def without_sandbox_tools(tmp_path: Path) -> str:
    """A PATH with git and a shell, but neither bwrap nor socat."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "sh"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


async def test_a_session_asking_for_a_sandbox_the_machine_lacks_is_refused(
    relay_and_api: tuple[Relay, str], tmp_path: Path
) -> None:
    relay, _ = relay_and_api
    project = tmp_path / "project"
    project.mkdir()
    daemon = await start_daemon(
        relay, tmp_path / "home", project, extra_env={"PATH": without_sandbox_tools(tmp_path)}
    )
    created = await relay.create_session(daemon.environment_id, sandbox=True)
    events = await relay.wait_kind(created.json()["id"], "session_ended")
    error = next(e for e in events if e["kind"] == "error")["data"]
    assert error["code"] == "sandbox_unavailable"
    assert "bubblewrap and socat missing" in error["message"]
    assert not any(e["kind"] == "session_started" for e in events)


async def test_sandbox_without_its_tools_refuses_to_start(tmp_path: Path) -> None:
    env = home_env(tmp_path / "home", {"PATH": without_sandbox_tools(tmp_path)})
    with trio.fail_after(30):
        done = await trio.run_process(
            [sys.executable, "-m", "daemon", "start", str(tmp_path), "--sandbox",
             "--agent-bin", find_claude(), "--relay-port", "0"],
            env=env, capture_stdout=True, capture_stderr=True, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert done.returncode == 1
    error = done.stderr.decode()
    assert "--sandbox needs bubblewrap and socat" in error, error
    assert "apt install bubblewrap socat" in error
