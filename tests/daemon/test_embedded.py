"""`rcd start` with no relay: the relay runs embedded on loopback and a sign-in link is printed."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from tests.harness import REPO, TINY_AGENT, home_env, rcd


async def test_embedded_relay_one_command(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = home_env(tmp_path / "home")
    out_path = tmp_path / "out.log"
    with out_path.open("wb") as out:
        process = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "daemon",
                "start",
                str(project),
                "--relay-port",
                "0",
                "--agent-bin",
                TINY_AGENT,
                "--name",
                "solo",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
        )
    try:
        with trio.fail_after(20):
            while not re.search(
                r"sign in .*: (http://127\.0\.0\.1:\d+/login\?code=\S+)", out_path.read_text()
            ):
                assert process.returncode is None, out_path.read_text()
                await trio.sleep(0.05)
            while "registered with" not in out_path.read_text():
                await trio.sleep(0.05)
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
            with trio.fail_after(20):
                while True:
                    events = (await browser.get(f"/api/sessions/{sid}/events")).json()["events"]
                    if any(e["kind"] == "turn_result" for e in events):
                        break
                    await trio.sleep(0.05)
            assert [e["data"]["text"] for e in events if e["kind"] == "assistant_text"] == [
                "echo: hi there"
            ]
            # The login link was for one use only.
            again = await browser.get(link.group(1), follow_redirects=False)
            assert again.status_code == 401
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            code = await process.wait()
    assert code == 0, out_path.read_text()
