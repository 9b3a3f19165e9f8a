"""`rcd start` with no relay: the relay runs embedded on loopback and a sign-in link is printed."""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import trio

from daemon.embedded import relay_serving
from relay.server import read_relay_url
from testkit.fakes.flaky_proxy import FlakyProxy
from testkit.harness import REPO, TINY_AGENT, home_env, rcd
from testkit.waiting import eventually


async def start_embedded(
    tmp_path: Path,
    env: dict[str, str],
    name: str,
    port: int = 0,
    *,
    run: int = 0,
    extra: tuple[str, ...] = (),
) -> tuple[trio.Process, Path]:
    """``rcd start`` with an embedded relay, its output in ``tmp_path/<name>[-run].log``
    (``run``: a restart in the same directory)."""
    project = tmp_path / name
    project.mkdir(exist_ok=run > 0)
    out_path = tmp_path / (f"{name}-{run}.log" if run else f"{name}.log")
    with out_path.open("wb") as out:
        process = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "daemon",
                "start",
                str(project),
                "--relay-port",
                str(port),
                "--agent-bin",
                TINY_AGENT,
                "--name",
                name,
                *extra,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
        )
    return process, out_path


def connections_to(pid: int, port: int) -> int:
    """TCP connections process ``pid`` opened to ``port`` (established, as a client)."""
    sockets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            sockets.add(target.removeprefix("socket:[").removesuffix("]"))
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            established = fields[3] == "01"
            count += established and remote_port == port and fields[9] in sockets
    assert sockets, "no socket found: the relay's own listening one at least"
    return count


async def test_embedded_relay_one_command(tmp_path: Path) -> None:
    env = home_env(tmp_path / "home")
    process, out_path = await start_embedded(tmp_path, env, "solo")
    try:
        await wait_logged(
            process, out_path, r"sign in .*: (http://127\.0\.0\.1:\d+/login\?code=\S+)"
        )
        await wait_logged(process, out_path, "registered with")
        text = out_path.read_text()
        link = re.search(r"(http://127\.0\.0\.1:(\d+)/login\?code=\S+)", text)
        assert link, text
        base = f"http://127.0.0.1:{link.group(2)}"
        async with httpx.AsyncClient(base_url=base) as browser:
            r = await browser.get(link.group(1), follow_redirects=False)
            assert r.status_code == 303, r.text
            cookie = r.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie
            [env_info] = (await browser.get("/api/environments")).json()["environments"]
            assert env_info["name"] == "solo" and env_info["online"] is True
            # The data dir follows XDG_DATA_HOME: admin commands work beside the running relay.
            created = await rcd(env, "relay", "token", "create", "--name", "cli")
            token = created.stdout.decode().strip().splitlines()[-1]
            r = await browser.post(
                f"/api/environments/{env_info['id']}/sessions",
                json={"prompt": "hi there"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 201, r.text
            sid = r.json()["id"]

            async def answered() -> list[dict[str, Any]] | None:
                events: list[dict[str, Any]]
                events = (await browser.get(f"/api/sessions/{sid}/events")).json()["events"]
                return events if any(e["kind"] == "turn_result" for e in events) else None

            events = await eventually(answered, timeout=20, what="the session's turn_result")
            assert [e["data"]["text"] for e in events if e["kind"] == "assistant_text"] == [
                "echo: hi there"
            ]
            # The login link was for one use only.
            again = await browser.get(link.group(1), follow_redirects=False)
            assert again.status_code == 401
            # It is said plainly that this link is for this machine only, and where to look.
            assert "works on this machine only" in text and "docs/phone.md" in text
            # The daemon reaches its relay without a socket (relay.inprocess): the only
            # connections to the relay's port are the browser's.
            assert connections_to(process.pid, int(link.group(2))) == 0
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            code = await process.wait()
    assert code == 0, out_path.read_text()


async def test_public_url_links_through_the_users_proxy(tmp_path: Path) -> None:
    """``--public-url``: the relay published by a proxy the user runs (here a TCP proxy on
    another port, as Caddy or ``tailscale serve`` would be): the sign-in link and the
    session URLs use it, a browser through it signs in and drives a session, and this
    machine's own commands keep the relay's local URL."""
    env = home_env(tmp_path / "home")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # the relay's, free a moment ago
    async with trio.open_nursery() as nursery:
        proxy = FlakyProxy(target=("127.0.0.1", port))
        await nursery.start(proxy.run)
        process, out_path = await start_embedded(
            tmp_path, env, "published", port, extra=("--public-url", proxy.url + "/")
        )
        try:
            await wait_logged(process, out_path, "registered with")
            text = out_path.read_text()
            link = re.search(r"sign in from your phone or any browser: (\S+)", text)
            assert link and link.group(1).startswith(f"{proxy.url}/login?code="), text
            assert f"published at {proxy.url}" in text
            assert "works on this machine only" not in text
            relay_dir = Path(env["XDG_DATA_HOME"]) / "rcd" / "relay"
            assert read_relay_url(relay_dir) == proxy.url
            assert read_relay_url(relay_dir, local=True) == f"http://127.0.0.1:{port}"
            # This machine's commands still find the relay running on its data dir.
            assert await relay_serving(relay_dir) == f"http://127.0.0.1:{port}"
            token = await device_token(env)
            async with httpx.AsyncClient(base_url=proxy.url) as phone:
                signed_in = await phone.get(link.group(1), follow_redirects=False)
                assert signed_in.status_code == 303, signed_in.text
                [info] = (await phone.get("/api/environments")).json()["environments"]
                assert info["online"] is True
                created = await phone.post(
                    f"/api/environments/{info['id']}/sessions",
                    json={"prompt": "from the phone"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert created.status_code == 201, created.text
                assert created.json()["url"].startswith(proxy.url + "/")

                async def answered() -> bool:
                    sid = created.json()["id"]
                    events = (await phone.get(f"/api/sessions/{sid}/events")).json()["events"]
                    texts = [e["data"]["text"] for e in events if e["kind"] == "assistant_text"]
                    return texts == ["echo: from the phone"]

                await eventually(answered, timeout=20, what="the reply, through the proxy")
            assert proxy.statistics().accepted >= 1
        finally:
            await stop(process, out_path)
            nursery.cancel_scope.cancel()


async def test_public_url_is_refused_where_it_means_nothing(tmp_path: Path) -> None:
    env = home_env(tmp_path / "home")
    for url, says in [
        ("ftp://relay.example", "expected https://HOST[:PORT]"),
        ("https://relay.example/rcd", "without a path"),
    ]:
        bad = await rcd(env, "start", str(tmp_path), "--public-url", url, check=False)
        assert bad.returncode == 2 and says in bad.stderr.decode(), bad.stderr
    hosted = await rcd(
        env,
        "start",
        str(tmp_path),
        "--relay",
        "http://127.0.0.1:9",
        "--public-url",
        "https://relay.example",
        check=False,
    )
    assert hosted.returncode == 1
    assert "--public-url is for the embedded relay" in hosted.stderr.decode()


async def test_notify_command_is_checked_and_refused_where_it_means_nothing(
    tmp_path: Path,
) -> None:
    env = home_env(tmp_path / "home")
    missing = await rcd(
        env, "start", str(tmp_path), "--notify-command", "no-such-notifier --x", check=False
    )
    assert missing.returncode == 2
    assert "'no-such-notifier' is not a program on PATH" in missing.stderr.decode()
    hosted = await rcd(
        env, "start", str(tmp_path), "--relay", "http://127.0.0.1:9",
        "--notify-command", "cat", check=False,
    )  # fmt: skip
    assert hosted.returncode == 1
    assert "--notify-command is for the embedded relay" in hosted.stderr.decode()


async def test_a_second_embedded_relay_on_a_taken_port_says_what_to_do(tmp_path: Path) -> None:
    # Two `rcd start` on one machine both want port 7878: the second stops with a message
    # that says how to run several daemons, and the first is not disturbed.
    env = home_env(tmp_path / "home")
    first, first_log = await start_embedded(tmp_path, env, "first")
    try:
        await wait_logged(first, first_log, "registered with")
        found = re.search(r"relay running at http://127\.0\.0\.1:(\d+)", first_log.read_text())
        assert found, first_log.read_text()
        port = int(found.group(1))
        second, second_log = await start_embedded(tmp_path, env, "second", port)
        with trio.fail_after(20):
            code = await second.wait()
        text = second_log.read_text()
        assert code != 0
        assert f"port {port} on 127.0.0.1 is taken" in text and "--relay-port 0" in text
        assert "Traceback" not in text
        token = (await rcd(env, "relay", "token", "create", "--name", "cli")).stdout.decode()
        headers = {"Authorization": f"Bearer {token.strip().splitlines()[-1]}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            [info] = (await client.get("/api/environments", headers=headers)).json()["environments"]
        assert info["name"] == "first" and info["online"] is True
    finally:
        if first.returncode is None:
            first.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            assert await first.wait() == 0, first_log.read_text()


async def wait_logged(process: trio.Process, log: Path, pattern: str) -> None:
    """Wait until the daemon's output has a match of ``pattern``; fails at once if the
    daemon exits first."""

    def logged() -> bool:
        text = log.read_text()
        assert process.returncode is None, text
        return re.search(pattern, text) is not None

    await eventually(logged, timeout=20, what=f"{pattern!r} in {log.name}")


async def wait_registered(process: trio.Process, log: Path) -> str:
    """Wait until the daemon is registered; returns its embedded relay's URL."""
    await wait_logged(process, log, "registered with")
    found = re.search(r"relay running at (http://127\.0\.0\.1:\d+)", log.read_text())
    assert found, log.read_text()
    return found.group(1)


async def stop(process: trio.Process, log: Path) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    with trio.fail_after(15):
        assert await process.wait() == 0, log.read_text()


async def device_token(env: dict[str, str], *data_dir: str) -> str:
    """A new device token of the relay on the default data dir (or ``--data-dir DIR``)."""
    created = await rcd(env, "relay", "token", "create", "--name", f"t{next(_TOKENS)}", *data_dir)
    return created.stdout.decode().strip().splitlines()[-1]


_TOKENS = itertools.count()


async def environments(url: str, token: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=url) as client:
        r = await client.get("/api/environments", headers={"Authorization": f"Bearer {token}"})
    envs: list[dict[str, object]] = r.json()["environments"]
    return envs


async def test_a_restart_registers_the_same_environment(tmp_path: Path) -> None:
    env = home_env(tmp_path / "home")
    ids = []
    for run in range(2):
        process, log = await start_embedded(tmp_path, env, "solo", run=run)
        try:
            url = await wait_registered(process, log)
            [info] = await environments(url, await device_token(env))
            assert info["online"] is True
            ids.append(info["id"])
        finally:
            await stop(process, log)
    assert ids[0] == ids[1]  # one environment per machine and directory, not one per start


async def test_relay_port_0_beside_a_running_daemon_leaves_it_undisturbed(tmp_path: Path) -> None:
    env = home_env(tmp_path / "home")
    first, first_log = await start_embedded(tmp_path, env, "first")
    try:
        first_url = await wait_registered(first, first_log)
        token = await device_token(env)
        # The advice of the port-taken message, followed: an embedded relay of its own.
        second, second_log = await start_embedded(tmp_path, env, "second", port=0)
        try:
            # While the second starts, the first stays online (its relay's database is not
            # opened by the second).
            with trio.fail_after(20):
                while "registered with" not in second_log.read_text():
                    assert second.returncode is None, second_log.read_text()
                    [info] = await environments(first_url, token)
                    assert (info["name"], info["online"]) == ("first", True)
            second_url = await wait_registered(second, second_log)
            note = re.search(r"keeps its data in (\S+)", second_log.read_text())
            assert note, second_log.read_text()
            [info] = await environments(first_url, token)
            assert (info["name"], info["online"]) == ("first", True)
            other_token = await device_token(env, "--data-dir", note.group(1))
            [other] = await environments(second_url, other_token)
            assert (other["name"], other["online"]) == ("second", True)
            assert "link_down" not in first_log.read_text()
        finally:
            await stop(second, second_log)
    finally:
        await stop(first, first_log)


async def test_a_data_dir_another_relay_serves_is_refused(tmp_path: Path) -> None:
    env = home_env(tmp_path / "home")
    first, first_log = await start_embedded(tmp_path, env, "first")
    try:
        await wait_registered(first, first_log)
        data_dir = str(tmp_path / "home" / ".data" / "rcd" / "relay")
        second, second_log = await start_embedded(
            tmp_path, env, "second", extra=("--relay-data-dir", data_dir)
        )
        with trio.fail_after(20):
            code = await second.wait()
        text = second_log.read_text()
        assert code == 1 and "is in use by the relay at" in text and "Traceback" not in text
        assert "link_down" not in first_log.read_text()
    finally:
        await stop(first, first_log)
