"""The daemon opens no TCP listener and keeps what it holds private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trio

from relay import admin
from testkit.harness import TINY_AGENT, Relay, rcd, start_daemon, start_relay

LISTEN = "0A"


def listening_inodes() -> set[str]:
    """Socket inodes of every TCP socket in LISTEN state on this machine (IPv4 and IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == LISTEN:
                inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


@pytest.fixture
async def relay(tmp_path: Path) -> Relay:
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        yield relay  # type: ignore[misc]
        await relay.aclose()
        nursery.cancel_scope.cancel()


async def test_the_daemon_listens_on_no_tcp_port_and_its_files_are_private(
    relay: Relay, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    home = tmp_path / "home"
    daemon = await start_daemon(relay, home, project)
    sid = (await relay.create_session(daemon.environment_id, prompt="hello")).json()["id"]
    await relay.wait_kind(sid, "turn_result")
    own = socket_inodes(daemon.process.pid)
    assert own, "the daemon should hold sockets (its outbound link, its control socket)"
    assert not own & listening_inodes(), "the daemon must not listen on any TCP port"
    # The relay in this test process does listen: the check can tell the difference.
    assert socket_inodes(os.getpid()) & listening_inodes()

    runtime = home / "run" / "rcd"
    [control] = list(runtime.glob("*.sock"))
    assert stat.S_ISSOCK(os.stat(control).st_mode)
    assert stat.S_IMODE(os.stat(control).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(runtime).st_mode) == 0o700
    credentials = home / ".config" / "rcd" / "credentials.json"
    assert stat.S_IMODE(os.stat(credentials).st_mode) == 0o600
    assert await daemon.stop() == 0
    assert not control.exists()  # removed on the way out


async def test_a_session_keeps_working_across_access_token_lifetimes(tmp_path: Path) -> None:
    """Real daemon, relay tokens living one second: messages keep flowing for several
    lifetimes, because the daemon renews its link and session tokens before they expire."""
    async with trio.open_nursery() as nursery:
        relay = await start_relay(
            nursery, tmp_path / "relay", access_token_ttl=1.0, keepalive_interval=0.2
        )
        project = tmp_path / "project"
        project.mkdir()
        daemon = await start_daemon(relay, tmp_path / "home", project)
        sid = (await relay.create_session(daemon.environment_id, prompt="hello")).json()["id"]
        await relay.wait_kind(sid, "turn_result")
        started = trio.current_time()
        turns = 1
        while trio.current_time() - started < 4.0:  # four token lifetimes
            await trio.sleep(0.5)  # clock: tokens that live 1 s run out as the session works
            response = await relay.post_message(sid, f"ping {turns}", f"m{turns}")
            assert response.status_code == 202, response.text
            turns += 1
            await relay.wait_kind(sid, "turn_result", count=turns)
            # Renewing the link never shows the environment offline (make before break).
            [env] = await relay.environments()
            assert env["online"], env
        assert (await relay.session(sid))["state"] != "ended"
        assert daemon.log().count("link_renewal") >= 3, daemon.log()
        assert "credential_revoked" not in daemon.log()
        assert await daemon.stop() == 0
        await relay.aclose()
        nursery.cancel_scope.cancel()


async def test_a_revoked_daemon_exits_non_zero_with_a_clear_error(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay", keepalive_interval=0.2)
        project = tmp_path / "project"
        project.mkdir()
        daemon = await start_daemon(relay, tmp_path / "home", project)
        sid = (await relay.create_session(daemon.environment_id, prompt="hello")).json()["id"]
        await relay.wait_kind(sid, "turn_result")
        revoked = await trio.to_thread.run_sync(
            admin.revoke_environment, relay.data_dir, daemon.environment_id
        )
        assert [e.id for e in revoked] == [daemon.environment_id]
        with trio.fail_after(15):
            code = await daemon.process.wait()
        assert code != 0
        log = daemon.log()
        assert "revoked" in log and "rcd pair" in log, log
        assert (await relay.session(sid))["state"] == "ended"
        # A restart with the revoked credential fails at once, with the same explanation.
        result = await rcd(
            daemon.env,
            "start",
            str(project),
            "--relay",
            relay.url,
            "--agent-bin",
            TINY_AGENT,
            check=False,
        )
        assert result.returncode != 0
        assert "revoked" in result.stderr.decode() and "rcd pair" in result.stderr.decode()
        await relay.aclose()
        nursery.cancel_scope.cancel()
