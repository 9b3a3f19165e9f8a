"""``rcd chat [DIR]``: a new session of DIR's environment, driven from this terminal and
from the phone at once (Claude Code's ``--remote-control``). When no daemon serves DIR, it
starts one (``rcd start DIR``: the embedded relay, unless a relay is configured) for as long
as the chat lasts."""

from __future__ import annotations

import argparse
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import trio

import wire
from attach.auth import Target
from attach.client import Attach
from attach.command import in_terminal
from attach.render import Style
from attach.term import Console
from daemon.control import query_control
from daemon.errors import DaemonError
from daemon.paths import control_socket_path, directory_key, state_dir

from .command import Start

__all__ = ["run_chat", "status_of"]

#: How long a daemon started for the chat gets to come online.
ONLINE_TIMEOUT = 60.0
#: How long it gets to stop when the chat ends.
STOP_TIMEOUT = 20.0


async def status_of(directory: Path) -> wire.StatusReport:
    """What the daemon serving ``directory`` says of itself (DaemonError: none does)."""
    with trio.fail_after(5):
        return await query_control(control_socket_path(directory), wire.ControlRequest(op="status"))


async def _online(directory: Path, daemon: subprocess.Popen[bytes], log: Path) -> wire.StatusReport:
    """The status of the daemon just started for ``directory``, once it is connected."""
    with trio.move_on_after(ONLINE_TIMEOUT):
        while daemon.poll() is None:
            try:
                report = await status_of(directory)
            except (DaemonError, trio.TooSlowError):
                report = None
            if report is not None and report.environment.connected:
                return report
            await trio.sleep(0.2)
    text = await trio.Path(log).read_text(errors="replace")
    tail = text.strip().splitlines()[-5:]
    raise DaemonError(
        f"the daemon started for {directory} did not come online"
        + (f" (it exited {daemon.returncode})" if daemon.poll() is not None else "")
        + (": " + " | ".join(tail) if tail else "")
        + f"; its log: {log}"
    )


def _start_daemon(directory: Path, port: int | None) -> tuple[subprocess.Popen[bytes], Path]:
    log = state_dir() / f"chat-{directory_key(directory)}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "daemon", "start", str(directory)]
            + (["--relay-port", str(port)] if port is not None else []),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the terminal's Ctrl-C is the chat's, not the daemon's
        )
    return daemon, log


def _stop(daemon: subprocess.Popen[bytes]) -> None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def run_chat(args: argparse.Namespace) -> int:
    """Run ``rcd chat`` with parsed ``args``; returns the exit status."""
    directory = Path(args.directory).resolve()
    if not directory.is_dir():
        raise DaemonError(f"{directory} is not a directory")
    daemon = None
    try:
        try:
            report = trio.run(status_of, directory)
        except (DaemonError, trio.TooSlowError):
            daemon, log = _start_daemon(directory, args.relay_port)
            print(f"rcd chat: started a daemon for {directory} (log: {log})", file=sys.stderr)
            report = trio.run(_online, directory, daemon, log)
        env_id = report.environment.id
        if args.relay is None:
            args.relay = report.environment.relay

        async def main(
            target: Target, console: Console, style: Style, verify: ssl.SSLContext | bool
        ) -> int:
            async with httpx.AsyncClient(timeout=15.0, verify=verify) as http:
                start = Start(http=http, target=target)
                env = await start.environment(env_id)
                session = await start.session(env, None, args.spawn, None)
                console.print([f"{session['url']}  (open it on your phone too; /quit leaves)"])
                api = start.session_api(session["id"])
                return await Attach(api=api, console=console, style=style).run()

        return in_terminal(args, "chat", main)
    finally:
        if daemon is not None:
            _stop(daemon)
