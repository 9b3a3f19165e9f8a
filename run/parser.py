"""The parser of ``rcd run`` (dispatched to :func:`run.command.run_run`).

It imports only argparse (and attach's parser), so ``rcd --help`` stays light."""

from __future__ import annotations

import argparse

from attach.parser import RELAY_HELP, add_relay_options

__all__ = ["add_chat_parser", "add_run_parser"]

DESCRIPTION = """\
Start a session with PROMPT as its first message and print its URL (open it on the phone,
or pass it to `rcd attach`). It runs on the environment of this directory (an `rcd start`
here, found through the relay by its directory), or with --env on any environment of the
relay, by name or id: another machine's too."""

EPILOG = (
    """\
With --attach it follows the session like `rcd attach`: on a terminal until you leave;
otherwise (a script, a pipe) until the first turn ends, with exit status 0 if it went
well, 1 if not. Refused, it says why and exits 1: the environment is offline, or at its
capacity (409 at_capacity), or none serves this directory.

"""
    + RELAY_HELP
)


def add_run_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run`` to ``rcd``'s subcommands (dispatch with :func:`run.command.run_run`)."""
    parser = subparsers.add_parser(
        "run",
        help="start a session with a prompt, from any terminal",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prompt", metavar="PROMPT", help="the session's first message")
    parser.add_argument(
        "--env",
        metavar="NAME",
        help="the environment to run on, by name or id (default: this directory's)",
    )
    parser.add_argument(
        "--spawn",
        choices=("same-dir", "worktree"),
        help="run in the environment's directory or in a git worktree of its own"
        " (default: the environment's)",
    )
    parser.add_argument("--title", metavar="TITLE", help="the session's title")
    parser.add_argument("--attach", action="store_true", help="follow the session here (see below)")
    add_relay_options(parser, "run")


CHAT_DESCRIPTION = """\
A new session of DIR (default: here), in this terminal and on the phone at once: type to
the agent here, answer its permission requests with y/n, or open the printed URL on the
phone and carry on there; both see everything. When no daemon serves DIR, it starts one
(`rcd start DIR`: its embedded relay, unless a relay is configured) and stops it when you
leave; a daemon already running stays. Keys and commands as in `rcd attach`."""


def add_chat_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``chat`` to ``rcd``'s subcommands (dispatch with :func:`run.chat.run_chat`)."""
    from attach.parser import KEYS_HELP

    parser = subparsers.add_parser(
        "chat",
        help="a new session in this terminal and on the phone at once",
        description=CHAT_DESCRIPTION,
        epilog=KEYS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "directory", nargs="?", default=".", metavar="DIR", help="the project (default: here)"
    )
    parser.add_argument(
        "--spawn",
        choices=("same-dir", "worktree"),
        help="run in DIR or in a git worktree of its own (default: the environment's)",
    )
    parser.add_argument(
        "--relay-port",
        type=int,
        default=None,
        metavar="PORT",
        help="for a daemon it starts: its embedded relay's port (default: 7878; 0 picks one)",
    )
    add_relay_options(parser, "chat")
