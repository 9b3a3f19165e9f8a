"""``rcd attach --resume-locally SESSION``: back to the terminal. The remote session ends and
its conversation opens in the local ``claude`` CLI (``claude --resume ID``) in the session's
directory: its worktree when that was kept, else the environment's directory.

It runs on the machine of the session's environment, as the daemon's user: that is where
claude keeps the conversation (see :mod:`spawn.transcripts`); elsewhere it refuses before
anything is ended.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from attach.api import LogEntry, SessionApi, call_relay
from attach.auth import Target
from attach.command import in_terminal
from attach.render import Style
from attach.term import Console
from daemon.errors import DaemonError
from spawn import ImportRefused
from spawn.transcripts import conversation_path, holder

__all__ = ["LocalResume", "resume_locally"]

#: How long the session gets to end, and its claude to let the conversation go.
END_TIMEOUT = 60.0


@attrs.define
class LocalResume:
    """Where and what to resume, once the remote session is over."""

    conversation: str = ""
    #: The session's directory, and its environment's (for a worktree removed at the end).
    cwd: str = ""
    directory: str = ""


def resume_locally(args: argparse.Namespace) -> int:
    """Run ``rcd attach --resume-locally`` with parsed ``args``; returns the exit status
    (claude's own, which replaces this process)."""
    plan = LocalResume()

    async def main(
        target: Target, console: Console, style: Style, verify: ssl.SSLContext | bool
    ) -> int:
        async with httpx.AsyncClient(timeout=15.0, verify=verify) as http:
            api = SessionApi(
                http=http, relay=target.relay, token=target.token, session_id=args.session_id
            )
            await _end_remote(api, target, plan, http)
        return 0

    status = in_terminal(args, "attach", main)
    if status != 0 or not plan.conversation:
        return status or 1
    if not Path(plan.cwd).is_dir():
        print(f"rcd attach: {plan.cwd} is gone; in {plan.directory} instead", file=sys.stderr)
        plan.cwd = plan.directory
    argv = [args.agent_bin, "--resume", plan.conversation, *args.claude_args]
    print(f"rcd attach: in {plan.cwd}: {' '.join(argv)}", file=sys.stderr, flush=True)
    try:
        os.chdir(plan.cwd)
        os.execvp(args.agent_bin, argv)
    except OSError as exc:
        print(
            f"rcd attach: could not run {args.agent_bin} ({exc}); the conversation is"
            f" {plan.conversation}: `claude --resume {plan.conversation}` in {plan.cwd}",
            file=sys.stderr,
        )
        return 1
    raise AssertionError("unreachable")  # execvp returned without raising


async def _all_events(api: SessionApi) -> list[LogEntry]:
    events: list[LogEntry] = []
    while page := await api.events_after(events[-1].seq if events else 0):
        events.extend(page)
    return events


async def _end_remote(
    api: SessionApi,
    target: Target,
    plan: LocalResume,
    http: httpx.AsyncClient,
) -> None:
    info = await api.session()
    events = await _all_events(api)
    started = [e for e in events if e.kind == "session_started"]
    conversation = started[-1].data.get("agent_session_id") if started else None
    if not isinstance(conversation, str) or not conversation:
        raise DaemonError(
            f"session {info.id} has no agent conversation to resume (it never started)"
        )
    try:
        conversation_path(conversation, os.environ)
    except ImportRefused:
        raise DaemonError(
            f"claude on this machine does not have the conversation {conversation} of session"
            f" {info.id}: run this on the machine of its environment, as the daemon's user"
            " (nothing was ended)"
        ) from None
    environment = await _environment(http, target, info.environment_id)
    if info.state != "ended":
        await api.stop()
        # On stderr: stdout is claude's alone (``-- -p PROMPT`` in a script).
        print(f"rcd attach: ending session {info.id}…", file=sys.stderr, flush=True)
    since = started[-1].seq  # an earlier run's end (before a resume) does not count

    def ended() -> bool:
        return any(e.kind == "session_ended" and e.seq > since for e in events)

    with trio.move_on_after(END_TIMEOUT) as waited:
        # Ended (its worktree released), and its claude gone: the conversation is the
        # local one's alone from now on.
        while not ended() or holder(conversation, os.environ):
            await trio.sleep(0.2)
            events += await api.events_after(events[-1].seq if events else 0)
    if waited.cancelled_caught:
        pid = holder(conversation, os.environ)
        if pid is not None and ended():
            raise DaemonError(
                f"session {info.id} ended, but its conversation is open in a running claude"
                f" (pid {pid}): continue there, or leave it (/exit) and run this again"
            )
        raise DaemonError(f"session {info.id} did not end within {END_TIMEOUT:.0f} s; try again")
    plan.conversation = conversation
    plan.cwd = str(started[-1].data.get("cwd") or "")
    plan.directory = str(environment.get("directory") or "")


async def _environment(http: httpx.AsyncClient, target: Target, env_id: str) -> dict[str, Any]:
    data = await call_relay(
        http, target.relay, target.token, "GET", f"{target.relay}/api/environments"
    )
    for env in data.get("environments", []):
        if env.get("id") == env_id:
            return dict(env)
    return {}
