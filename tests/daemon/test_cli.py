"""The command line as users meet it: help, validation, administration, clear errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import trio

from testkit.harness import TINY_AGENT, home_env, rcd, start_relay


async def test_help_names_every_command(tmp_path: Path) -> None:
    result = await rcd(home_env(tmp_path), "--help")
    for command in ("start", "relay", "pair", "status"):
        assert command.encode() in result.stdout
    start_help = (await rcd(home_env(tmp_path), "start", "--help")).stdout.decode()
    for option in (
        "--relay",
        "--capacity",
        "--spawn",
        "--stop-timeout",
        "--outage-timeout",
        "--spare-worktrees",
    ):
        assert option in start_help


async def test_bad_options_are_named(tmp_path: Path) -> None:
    env = home_env(tmp_path)
    result = await rcd(env, "start", "--capacity", "0", check=False)
    assert result.returncode == 2
    assert b"--capacity: must be at least 1, got 0" in result.stderr
    result = await rcd(env, "start", "--spare-worktrees", "some", check=False)
    assert result.returncode == 2
    assert b"--spare-worktrees: expected a whole number, got 'some'" in result.stderr
    result = await rcd(env, "start", "--stop-timeout", "soon", check=False)
    assert result.returncode == 2 and b"expected a number of seconds" in result.stderr
    result = await rcd(
        env, "start", str(tmp_path / "missing"), "--relay", "http://127.0.0.1:9", check=False
    )
    assert result.returncode == 1 and b"is not a directory" in result.stderr
    result = await rcd(env, "start", str(tmp_path), "--relay", "ftp://x", check=False)
    assert result.returncode == 1 and b"must start with http:// or https://" in result.stderr


async def test_start_without_pairing_says_how_to_pair(tmp_path: Path) -> None:
    result = await rcd(
        home_env(tmp_path),
        "start",
        str(tmp_path),
        "--relay",
        "http://127.0.0.1:9",
        "--agent-bin",
        TINY_AGENT,
        check=False,
    )
    assert result.returncode == 1
    assert b"not paired" in result.stderr and b"rcd pair http://127.0.0.1:9 CODE" in result.stderr
    assert b"Traceback" not in result.stderr


async def test_token_lifecycle(tmp_path: Path) -> None:
    env, data = home_env(tmp_path), str(tmp_path / "relay")
    created = await rcd(env, "relay", "token", "create", "--name", "phone", "--data-dir", data)
    token = created.stdout.decode().strip().splitlines()[-1]
    assert len(token) >= 32 and " " not in token
    dup = await rcd(
        env, "relay", "token", "create", "--name", "phone", "--data-dir", data, check=False
    )
    assert dup.returncode == 1 and b"phone" in dup.stderr
    listed = (await rcd(env, "relay", "token", "list", "--data-dir", data)).stdout.decode()
    assert "phone" in listed and "last used never" in listed and token not in listed
    await rcd(env, "relay", "token", "revoke", "phone", "--data-dir", data)
    assert (
        "phone"
        not in (await rcd(env, "relay", "token", "list", "--data-dir", data)).stdout.decode()
    )
    unknown = await rcd(env, "relay", "token", "revoke", "tablet", "--data-dir", data, check=False)
    assert unknown.returncode == 1 and b"tablet" in unknown.stderr


async def test_pairing_stores_a_private_credential(tmp_path: Path) -> None:
    env = home_env(tmp_path / "home")
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        bad = await rcd(env, "pair", relay.url, "WRONG-CODE", check=False)
        assert bad.returncode == 1 and b"the relay refused" in bad.stderr
        printed = await rcd(env, "relay", "pair-code", "--data-dir", str(relay.data_dir))
        code = printed.stdout.decode().strip().splitlines()[-1]
        await rcd(env, "pair", relay.url, code)
        creds = tmp_path / "home" / ".config" / "rcd" / "credentials.json"
        assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
        assert relay.url in creds.read_text()
        again = await rcd(env, "pair", relay.url, code, check=False)  # one use only
        assert again.returncode == 1
        link = await rcd(env, "relay", "login-link", "--data-dir", str(relay.data_dir))
        assert link.stdout.decode().strip().splitlines()[-1].startswith(f"{relay.url}/login?code=")
        await relay.aclose()
        nursery.cancel_scope.cancel()


async def test_relay_refuses_plain_http_off_loopback(tmp_path: Path) -> None:
    result = await rcd(
        home_env(tmp_path),
        "relay",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "relay"),
        check=False,
    )
    assert result.returncode == 1
    assert b"refusing to serve plain HTTP on 0.0.0.0" in result.stderr
    assert b"Traceback" not in result.stderr
