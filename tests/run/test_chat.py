"""``rcd chat`` under a pseudo-terminal, with the real CLI against the fake Messages API:
with no daemon for the directory it starts one (its embedded relay), a message typed in the
terminal and one sent through the API both reach the agent, both clients see both
replies, and leaving stops the daemon it started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from relay import admin
from testkit.fakes import FakeMessagesAPI, claude_env, find_claude
from testkit.harness import home_env
from testkit.waiting import eventually
from tests.attach.pty_client import open_attach


async def status(env: dict[str, str], project: Path) -> subprocess.CompletedProcess[bytes]:
    """``rcd status DIR`` as the chat's user runs it."""
    return await trio.run_process(
        [sys.executable, "-m", "cli", "status", str(project)],
        env=env, capture_stdout=True, capture_stderr=True, check=False,
    )  # fmt: skip


async def test_chat_starts_a_daemon_and_two_clients_share_the_session(tmp_path: Path) -> None:
    claude = find_claude()
    project = tmp_path / "project"
    project.mkdir()
    home = tmp_path / "home"
    async with trio.open_nursery() as nursery:
        api = FakeMessagesAPI()
        base_url: str = await nursery.start(api.run)
        env = home_env(home, claude_env(home, base_url))
        env["PATH"] = f"{Path(claude).parent}{os.pathsep}{env['PATH']}"
        argv = [sys.executable, "-m", "cli", "chat", str(project), "--relay-port", "0"]
        async with open_attach(argv, env) as term:
            await term.expect(f"started a daemon for {project.resolve()}")
            url = await term.expect(r"http://127\.0\.0\.1:\d+/s/ses_\w+", regex=True)
            await term.expect("idle > ")
            await term.type_line("hello from the terminal")
            await term.expect("echo: hello from the terminal")

            # The phone: the relay the daemon embeds, a device token of its own.
            relay_dir = Path(env["XDG_DATA_HOME"]) / "rcd" / "relay"
            token = await trio.to_thread.run_sync(admin.create_device_token, relay_dir, "phone")
            relay_url, session_id = url.split("/s/")
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=relay_url, headers=headers) as phone:
                posted = await phone.post(
                    f"/api/sessions/{session_id}/messages",
                    json={"id": "from-phone", "text": "hello from the api"},
                )
                assert posted.status_code == 202, posted.text
                await term.expect("you (phone): hello from the api")
                # (Shown first as the reply being written, maybe a moment before its
                # message is stored: the phone asks until it is.)
                await term.expect("echo: hello from the api")

                async def stored() -> list[str] | None:
                    got = (await phone.get(f"/api/sessions/{session_id}/events")).json()
                    texts = [
                        e["data"]["text"] for e in got["events"] if e["kind"] == "assistant_text"
                    ]
                    return texts if len(texts) >= 2 else None

                texts = await eventually(stored, timeout=10, what="both replies stored")
            assert texts == ["echo: hello from the terminal", "echo: hello from the api"]
            assert (await status(env, project)).returncode == 0  # the daemon it started
            await term.type_line("/quit")
            assert await term.wait() == 0
        # The daemon it started is gone with it (asked as the chat's user would).
        after = await status(env, project)
        assert after.returncode != 0
        assert "no rcd daemon is running here" in after.stderr.decode()
        nursery.cancel_scope.cancel()
