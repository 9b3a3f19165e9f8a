"""The parser of ``rcd run`` (dispatched to :func:`run.command.run_run`).

It imports only argparse (and attach's parser), so ``rcd --help`` stays light."""

from __future__ import annotations

import argparse

from attach.parser import RELAY_HELP, add_relay_options

__all__ = ["add_run_parser"]

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
