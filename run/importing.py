"""``rcd import [ID | --last]``: continue a conversation of the local ``claude`` CLI from the
phone (Claude Code's ``/remote-control`` inside a running session). Without ID it lists this
directory's conversations; with one it starts a session on the directory's environment that
resumes it, shows its earlier turns on every client, and prints the URL and a QR code."""

from __future__ import annotations

import argparse
import os
import ssl
import time
from pathlib import Path
from typing import Any

import attrs
import trio

from attach.api import SessionApi
from attach.auth import Target
from attach.client import Attach
from attach.command import in_terminal
from attach.render import Style
from attach.term import Console
from daemon.display import qr_code
from daemon.errors import ConfigError, DaemonError
from spawn.transcripts import Conversation, holder, list_conversations
from wire.api import MAX_TITLE_LENGTH

from .chat import status_of
from .command import Start

__all__ = ["choose_conversation", "run_import"]

#: How long the daemon gets to start the session (a worktree may have to be made).
START_TIMEOUT = 120.0
#: The shortest prefix of an id that picks a conversation.
MIN_PREFIX = 4


def run_import(args: argparse.Namespace) -> int:
    """Run ``rcd import`` with parsed ``args``; returns the exit status."""
    directory = Path(args.dir).resolve()
    conversations = list_conversations(str(directory), os.environ)
    if args.conversation is None and not args.last:
        _print_list(directory, conversations)
        return 0
    chosen = choose_conversation(conversations, args.conversation, directory)
    pid = holder(chosen.id, os.environ)
    if pid is not None:
        raise DaemonError(
            f"the conversation {chosen.id} is open in a running claude (pid {pid}): leave it"
            " there first (/exit), then run rcd import again"
        )
    try:
        report = trio.run(status_of, directory)
    except (DaemonError, trio.TooSlowError):
        raise DaemonError(
            f"no daemon serves {directory}: start one there (`rcd start`, or"
            " `rcd service install`), then run rcd import again"
        ) from None
    if args.relay is None:
        args.relay = report.environment.relay

    async def main(
        target: Target, console: Console, style: Style, verify: ssl.SSLContext | bool
    ) -> int:
        import httpx

        async with httpx.AsyncClient(timeout=15.0, verify=verify) as http:
            start = Start(http=http, target=target)
            env = await start.environment(report.environment.id)
            title = chosen.first_prompt.strip().splitlines()[0][:MAX_TITLE_LENGTH]
            session = await start.session(env, None, args.spawn, title, conversation=chosen.id)
            api = start.session_api(session["id"])
            await _started(api)
            url = str(session["url"])
            console.print([url])
            if console.interactive or args.qr:
                console.print(qr_code(url).rstrip("\n").splitlines())
            console.print(
                [style.dim(f"continuing {chosen.id} ({chosen.first_prompt[:60]!r}):"
                           f" open the URL on the phone, or `rcd attach {session['id']}`")]
            )  # fmt: skip
            if not args.attach:
                return 0
            follow = Attach(api=api, console=console, style=style)
            if not console.interactive:
                follow = attrs.evolve(follow, read_input=False, leave_after_turn=True)
            return await follow.run()

    return in_terminal(args, "import", main)


def choose_conversation(
    conversations: list[Conversation], wanted: str | None, directory: Path
) -> Conversation:
    """The newest conversation (``wanted`` None), or the one whose id is or starts with
    ``wanted`` (at least :data:`MIN_PREFIX` characters); ConfigError otherwise."""
    if not conversations:
        raise ConfigError(f"no conversations of the claude CLI in {directory} to import")
    if wanted is None:
        return conversations[0]
    wanted = wanted.lower()
    found = [c for c in conversations if c.id.startswith(wanted)]
    if len(wanted) < MIN_PREFIX or len(found) > 1:
        raise ConfigError(
            f"{wanted!r} names {len(found)} conversations of {directory}: give more of the id"
        )
    if not found:
        raise ConfigError(
            f"no conversation {wanted!r} in {directory}: `rcd import` lists those there"
        )
    return found[0]


def _print_list(directory: Path, conversations: list[Conversation]) -> None:
    if not conversations:
        print(f"No conversations of the claude CLI in {directory}.")
        return
    print(f"Conversations of the claude CLI in {directory}, newest first:")
    for c in conversations:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.modified))
        prompt = " ".join(c.first_prompt.split())
        prompt = prompt if len(prompt) <= 60 else prompt[:59] + "…"
        print(f"  {c.id}  {when}  {prompt}")
    print("`rcd import ID` (or a unique start of it, or --last) continues one on the phone.")


async def _started(api: SessionApi) -> None:
    """Wait until the daemon started the session; DaemonError with its reason if it ended
    instead (e.g. refused: the conversation was opened meanwhile, or it is at capacity)."""
    errors: list[str] = []
    after = 0
    with trio.move_on_after(START_TIMEOUT):
        while True:
            for entry in await api.events_after(after):
                after = entry.seq
                data: dict[str, Any] = entry.data
                if entry.kind == "error":
                    errors.append(f"{data.get('message')} ({data.get('code')})")
                elif entry.kind == "session_started":
                    return
                elif entry.kind == "session_ended":
                    raise DaemonError(
                        "the daemon did not continue it: "
                        + ("; ".join(errors) or str(data.get("reason")))
                    )
            await trio.sleep(0.2)
    raise DaemonError(f"the daemon did not start the session within {START_TIMEOUT:.0f} s")
