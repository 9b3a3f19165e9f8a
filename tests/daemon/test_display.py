"""The terminal display of `rcd start`: rendered text, and keys under a real pseudo-terminal."""

from __future__ import annotations

import re
from pathlib import Path

import trio

from daemon.display import DisplayState, SessionLine, render
from relay import admin
from testkit.harness import TINY_AGENT, daemon_on_pty, home_env, rcd, start_relay
from testkit.waiting import eventually

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def state(**overrides: object) -> DisplayState:
    values: dict[str, object] = dict(
        name="repo@box",
        relay="http://127.0.0.1:7878",
        connected=True,
        spawn="same-dir",
        capacity=4,
        sign_in="http://127.0.0.1:7878/login?code=abc",
        sessions=(),
    )
    values.update(overrides)
    return DisplayState(**values)  # type: ignore[arg-type]


def test_render_shows_connection_spawn_sessions_and_keys() -> None:
    session = SessionLine(
        id="ses_1",
        title="fix the tests",
        state="busy",
        activity="Bash: pytest -q",
        url="http://127.0.0.1:7878/s/ses_1",
    )
    text = ANSI.sub("", render(state(sessions=(session,)), show_qr=False))
    assert "repo@box  ● connected to http://127.0.0.1:7878" in text
    assert "spawn: same-dir   sessions: 1/4" in text
    assert "sign in: http://127.0.0.1:7878/login?code=abc" in text
    assert "busy" in text and "fix the tests" in text and "Bash: pytest -q" in text
    assert "http://127.0.0.1:7878/s/ses_1" in text
    assert "space: QR code · w: toggle spawn mode · q: stop" in text
    down = ANSI.sub("", render(state(connected=False, stopping=True), show_qr=False))
    assert "○ reconnecting…" in down and "stopping" in down


def test_qr_code_encodes_the_sign_in_link() -> None:
    with_qr = render(state(), show_qr=True)
    without = render(state(), show_qr=False)
    qr_lines = [line for line in with_qr.splitlines() if line not in without.splitlines()]
    assert len(qr_lines) >= 10
    assert any("█" in line or "▀" in line or "▄" in line for line in qr_lines)


def test_a_loopback_sign_in_link_is_said_to_work_here_only() -> None:
    local = ANSI.sub("", render(state(), show_qr=False))
    assert "this link works on this machine only" in local and "docs/phone.md" in local
    published = state(sign_in="https://box.tail1234.ts.net/login?code=abc")
    shown = ANSI.sub("", render(published, show_qr=True))
    assert "sign in: https://box.tail1234.ts.net/login?code=abc" in shown
    assert "machine only" not in shown


def test_the_lan_certificate_fingerprint_stands_beside_the_qr_code() -> None:
    sha = ":".join(f"{n:02X}" for n in range(32))
    lan = state(sign_in="https://192.168.1.20:7878/login?code=abc", fingerprint=sha)
    with_qr = ANSI.sub("", render(lan, show_qr=True)).splitlines()
    beside = [line for line in with_qr if "█" in line or "▀" in line or "▄" in line]
    # The whole fingerprint, in four rows of eight pairs, on the QR code's own lines.
    rows = [":".join(sha.split(":")[i : i + 8]) for i in range(0, 32, 8)]
    for row in rows:
        assert any(line.rstrip().endswith(row) for line in beside), row
    assert any("certificate SHA-256" in line for line in beside)
    # Without the code: on a line of its own.
    assert f"certificate SHA-256 {sha}" in ANSI.sub("", render(lan, show_qr=False))


async def read_until(master: trio.lowlevel.FdStream, buf: bytearray, pattern: str) -> str:
    with trio.fail_after(20):
        while not re.search(pattern, ANSI.sub("", buf.decode(errors="replace"))):
            chunk = await master.receive_some(65536)
            if not chunk:
                raise AssertionError(
                    f"pty closed before {pattern!r}: {buf.decode(errors='replace')}"
                )
            buf += chunk
    text = ANSI.sub("", buf.decode(errors="replace"))
    buf.clear()
    return text


async def test_keys_under_a_pseudo_terminal(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = home_env(tmp_path / "home", {"COLUMNS": "120", "LINES": "60", "TERM": "xterm"})
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        code = await trio.to_thread.run_sync(admin.create_pair_code, relay.data_dir)
        await rcd(env, "pair", relay.url, code)
        running = daemon_on_pty(
            env, str(project), "--relay", relay.url, "--agent-bin", TINY_AGENT, "--name", "ptybox"
        )
        try:
            async with running as (process, master):
                buf = bytearray()
                screen = await read_until(master, buf, r"q: stop")
                assert "ptybox" in screen and "spawn: same-dir" in screen
                if "● connected" not in screen:
                    await read_until(master, buf, r"● connected")
                await master.send_all(b" ")
                screen = await read_until(master, buf, r"[█▀▄]{6}")
                await master.send_all(b"w")
                screen = await read_until(master, buf, r"spawn: worktree")

                async def in_worktrees() -> bool:
                    return bool((await relay.environments())[0]["spawn"] == "worktree")

                await eventually(in_worktrees, timeout=10, what="the relay to show spawn: worktree")
                await master.send_all(b"q")
                with trio.fail_after(15):
                    exited = await process.wait()
                assert exited == 0
                [environment] = await relay.environments()
                assert environment["online"] is False
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
