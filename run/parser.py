"""The parser of ``rcd run`` (dispatched to :func:`run.command.run_run`).

It imports only argparse (and attach's parser), so ``rcd --help`` stays light."""

from __future__ import annotations

import argparse

from attach.parser import RELAY_HELP, add_relay_options

__all__ = ["add_chat_parser", "add_import_parser", "add_run_parser"]

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


IMPORT_DESCRIPTION = """\
Continue a conversation of the local `claude` CLI from the phone. Without ID: list the
conversations claude had in DIR (default: here), newest first, with their first prompt.
With ID (or a unique start of it) or --last: start a session on DIR's environment (the
`rcd start` serving it) that resumes the conversation (`claude --resume`), its earlier turns
shown first on every client, and print its URL and a QR code to open it on the phone."""

IMPORT_EPILOG = (
    """\
Refused, it says why and exits 1: the conversation is still open in a running claude (leave
it there first), no daemon serves DIR, or the environment is at capacity. claude keeps its
conversations in ~/.claude/projects (or $CLAUDE_CONFIG_DIR/projects), by directory; the
daemon must run as the same user, with the same home, to find them.

"""
    + RELAY_HELP
)


def add_import_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``import`` to ``rcd``'s subcommands (dispatch with :func:`run.importing.run_import`)."""
    parser = subparsers.add_parser(
        "import",
        help="continue a local claude conversation on the phone",
        description=IMPORT_DESCRIPTION,
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "conversation", nargs="?", metavar="ID", help="the conversation (default: list them)"
    )
    parser.add_argument("--last", action="store_true", help="the newest conversation")
    parser.add_argument(
        "--dir", default=".", metavar="DIR", help="the project directory (default: here)"
    )
    parser.add_argument(
        "--spawn",
        choices=("same-dir", "worktree"),
        help="continue it in DIR or in a git worktree of its own (default: the environment's)",
    )
    parser.add_argument(
        "--qr", action="store_true", help="print the QR code even when output is not a terminal"
    )
    parser.add_argument(
        "--attach", action="store_true", help="then follow the session here, like `rcd attach`"
    )
    add_relay_options(parser, "import")
