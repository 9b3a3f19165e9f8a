"""``rcd attach`` under a pseudo-terminal against a live relay and daemon (tiny agent):
it shows the history, sends a message, answers a permission request, interrupts a turn,
and two clients on one session stay in sync."""

from __future__ import annotations

import termios
from pathlib import Path

import trio

from testkit.harness import REPO, Daemon, Relay
from tests.attach.conftest import device_token, new_session
from tests.attach.pty_client import attach_argv, open_attach, run_attach_plain


async def test_history_message_permission_interrupt_and_quit(
    relay: Relay, daemon: Daemon, attach_env: dict[str, str], tmp_path: Path
) -> None:
    session_id = await new_session(relay, daemon, "hello there", "pty test")
    token = await device_token(relay, "term1")
    argv = attach_argv(session_id, "--relay", relay.url, "--token", token)
    async with open_attach(argv, attach_env) as term:
        # Header, then the history, then the live part.
        await term.expect("━━ pty test ━━")
        await term.expect(f"session {session_id} on {relay.url} · state idle")
        await term.expect(f"cwd {daemon.directory.resolve()}")
        await term.expect("you (tests): hello there")
        await term.expect("echo: hello there")
        await term.expect("── turn done in")
        await term.expect("live from here")
        await term.expect("idle > ")
        cooked = termios.ICANON | termios.ECHO | termios.ISIG
        assert term.local_modes() & cooked == 0  # cbreak: keys one by one, no echo

        # A message: pending first, then its echo (from the log), then the answer.
        await term.type_line("how are you")
        await term.expect("you (sending…): how are you")
        await term.expect("you (term1): how are you")
        await term.expect("echo: how are you")

        # A permission request: highlighted, asked at the prompt, answered with y.
        target = tmp_path / "out.txt"
        await term.type_line(f"write {target} written-by-attach")
        await term.expect(f"⚙ Write {target}")
        await term.expect(f"⚠ permission: Write {target}")
        await term.expect("content: written-by-attach")
        await term.expect("allow? [y/n]")
        await term.type_line("y")
        await term.expect("✓ Write allowed by term1")
        await term.expect(f"⎿ File created successfully at: {target}")
        await term.expect("done")
        assert target.read_text() == "written-by-attach"

        # Ctrl-C on an empty line interrupts a working agent's turn.
        await term.type_line("sleep 30")
        await term.expect("· state: busy")
        await term.send("\x03")
        # The turn's end can reach the screen before attach's own note that it sent the
        # interrupt: either order.
        await term.expect(
            r"interrupt sent[\s\S]*── turn failed after|── turn failed after[\s\S]*interrupt sent",
            regex=True,
        )

        await term.type_line("/quit")
        assert await term.wait() == 0
        assert term.local_modes() & cooked == cooked  # the terminal is given back as it was

    events = await relay.events(session_id)
    echoes = [e["data"] for e in events if e["kind"] == "user_message"]
    assert [(e["text"], e["origin"]) for e in echoes][1:] == [
        ("how are you", "term1"),
        (f"write {target} written-by-attach", "term1"),
        ("sleep 30", "term1"),
    ]
    [resolved] = [e["data"] for e in events if e["kind"] == "permission_resolved"]
    assert (resolved["decision"], resolved["origin"]) == ("allow", "term1")
    # Every event was printed once: the history and the live part do not overlap.
    lines = term.lines()
    assert sum(line == "echo: hello there" for line in lines) == 1
    assert sum(line == "echo: how are you" for line in lines) == 1


async def test_two_clients_on_one_session_stay_in_sync(
    relay: Relay, daemon: Daemon, attach_env: dict[str, str], tmp_path: Path
) -> None:
    session_id = await new_session(relay, daemon, "hi", "shared")
    alice = attach_argv(
        session_id, "--relay", relay.url, "--token", await device_token(relay, "alice")
    )
    bob = attach_argv(session_id, "--relay", relay.url, "--token", await device_token(relay, "bob"))
    async with open_attach(alice, attach_env) as a, open_attach(bob, attach_env) as b:
        for term in (a, b):
            await term.expect("live from here")

        await a.type_line("from alice")
        for term in (a, b):
            await term.expect("you (alice): from alice")
            await term.expect("echo: from alice")
        assert "sending…" not in b.text  # bob only ever saw it from the log

        # Alice's message asks for a permission; bob answers it; both see the outcome.
        target = tmp_path / "denied.txt"
        await a.type_line(f"write {target} nope")
        for term in (a, b):
            await term.expect("allow? [y/n]")
        await b.type_line("n not this file")
        for term in (a, b):
            await term.expect("✗ Write denied by bob")
            await term.expect("⎿ not this file")
            await term.expect("not written")
        assert not target.exists()

        # Alice's prompt is back to normal: a plain line is a message again.
        await a.type_line("after")
        for term in (a, b):
            await term.expect("echo: after")

        await a.send("\x04")  # Ctrl-D leaves
        await b.send("\x03")  # nothing to interrupt: a second Ctrl-C within 2 s leaves
        await b.expect("nothing to interrupt")
        await b.send("\x03")
        assert await a.wait() == 0
        assert await b.wait() == 0
    with trio.fail_after(5):
        events = await relay.events(session_id)
    [resolved] = [e["data"] for e in events if e["kind"] == "permission_resolved"]
    assert (resolved["decision"], resolved["origin"]) == ("deny", "bob")


async def test_without_a_terminal_it_prints_plain_lines(
    relay: Relay, daemon: Daemon, attach_env: dict[str, str]
) -> None:
    session_id = await new_session(relay, daemon, "plain please", "no tty")
    token = await device_token(relay, "script")
    argv = attach_argv(session_id, "--relay", relay.url, "--token", token)
    # Standard input at its end at once: the header and history, then it leaves.
    result = await run_attach_plain(argv, attach_env)
    assert result.returncode == 0, result
    out = result.stdout.decode()
    assert "\x1b" not in out and "\r" not in out
    lines = out.splitlines()
    assert lines[0] == "━━ no tty ━━"
    assert "you (tests): plain please" in lines
    assert "echo: plain please" in lines
    assert lines[-1] == "── 8 events so far; live from here ──"

    # Lines piped in are messages; the end of input waits until they reached the relay.
    with trio.fail_after(10):
        piped = await trio.run_process(
            argv,
            env=attach_env,
            stdin=b"from a pipe\n",
            capture_stdout=True,
            capture_stderr=True,
            cwd=str(REPO),
        )
    assert b"you (sending\xe2\x80\xa6): from a pipe" in piped.stdout
    await relay.wait_events(
        session_id, lambda evs: any(e["data"].get("text") == "echo: from a pipe" for e in evs)
    )
