"""Escape sequences in a session's title and its agent's output reach every terminal surface
shown, never interpreted: the live screen of `rcd start` (on a real pseudo-terminal),
`rcd status` and `rcd attach`, with a real relay, daemon and agent."""

from __future__ import annotations

import re
from pathlib import Path

import trio

from common.visible import visible
from relay import admin
from testkit.harness import TINY_AGENT, daemon_on_pty, home_env, rcd, start_relay
from tests.attach.pty_client import attach_argv, run_attach_plain
from tests.daemon.test_visible import leftovers

#: A window-title OSC, a clear-screen CSI, BEL, backspace, carriage return, a C1 CSI, a bidi
#: override and a newline.
TITLE = "\x1b]0;pwned\x07\x1b[2J\x08\rt\x9b1m\u202eq\nz"
PROMPT = "say \x1b]52;c;ZXZpbA==\x07\x1b[31mred\x1bc\r\x08"
#: Our own colour and screen sequences: the only ones allowed on the live screen.
OWN = re.compile(r"\x1b\[(?:[0-9;]*m|H|2J|\?25[lh])")


async def read_until(master: trio.lowlevel.FdStream, buf: bytearray, needle: str) -> str:
    with trio.fail_after(20):
        while needle not in buf.decode(errors="replace"):
            chunk = await master.receive_some(65536)
            if not chunk:
                raise AssertionError(f"pty closed before {needle!r}: {buf.decode()!r}")
            buf += chunk
    return buf.decode(errors="replace")


async def test_hostile_titles_and_output_are_shown_escaped_everywhere(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = home_env(tmp_path / "home", {"COLUMNS": "160", "LINES": "60", "TERM": "xterm"})
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        code = await trio.to_thread.run_sync(admin.create_pair_code, relay.data_dir)
        await rcd(env, "pair", relay.url, code)
        running = daemon_on_pty(env, str(project), "--relay", relay.url, "--agent-bin", TINY_AGENT)
        try:
            async with running as (process, master):
                buf = bytearray()
                await read_until(master, buf, "q: stop")
                # The screen is up before the link: sessions can start once it says so.
                await read_until(master, buf, "● connected")
                [environment] = await relay.environments()
                r = await relay.create_session(environment["id"], prompt=PROMPT, title=TITLE)
                assert r.status_code == 201, r.text
                sid = r.json()["id"]
                await relay.wait_kind(sid, "turn_result")

                # 1. The live screen (titles are clipped to 40 columns there).
                screen = await read_until(master, buf, visible(TITLE)[:39])
                own = OWN.sub("", screen).replace("\r\n", "\n")
                assert leftovers(own, multiline=True) == [], repr(own)

                # 2. rcd status, as a person reads it.
                status = (await rcd(env, "status", str(project))).stdout.decode()
                assert visible(TITLE) in status, status
                assert leftovers(status, multiline=True) == [], repr(status)

                # 3. rcd attach: the header and the agent's echo of the prompt.
                token = await trio.to_thread.run_sync(
                    admin.create_device_token, relay.data_dir, "t"
                )
                result = await run_attach_plain(
                    attach_argv(sid, "--relay", relay.url, "--token", token), env
                )
                shown = result.stdout.decode()
                assert result.returncode == 0, result
                assert f"━━ {visible(TITLE)} ━━" in shown, shown
                assert visible(PROMPT) in shown, shown  # as the user's message and the echo
                assert leftovers(shown, multiline=True) == [], repr(shown)

                await master.send_all(b"q")
                with trio.fail_after(15):
                    assert await process.wait() == 0
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
