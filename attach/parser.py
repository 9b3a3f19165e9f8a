"""The parser of ``rcd attach`` (dispatched to :func:`attach.command.run_attach`).

It imports only argparse, so ``rcd --help`` stays light."""

from __future__ import annotations

import argparse
from pathlib import Path

from daemon.transport import CA_CERT_HELP, INSECURE_HTTP_HELP

__all__ = ["RELAY_HELP", "add_attach_parser", "add_relay_options", "split_claude_args"]

DESCRIPTION = """\
Show a session's history and live events, send it messages and answer its permission
requests, from a terminal: plain lines, with a prompt line at the bottom. Without a
terminal the output is plain lines, input is read line by line, and the end of input
leaves once the history is shown (`rcd attach S </dev/null` prints the log)."""

KEYS_HELP = """\
keys and commands (in the session):
  TEXT, Enter    send TEXT to the agent; shown as "sending…" until the session echoes it
  y | n [WHY]    answer the oldest open permission request: allow, or deny (telling why)
  /interrupt     stop the agent's current turn (the session stays)
  /stop          end the session (its worktree is kept if it holds work)
  /resume        start an ended session again
  /diff [PATH]   the session's changes since it started: its files, then each one's diff
                 (or PATH's alone: its path as the list shows it)
  /grants        the approval grants in force here (made in the web app or the API):
                 what each allows without asking, for how long, its id
  /revoke ID     end grant ID at once
  /help          list these
  /quit, Ctrl-D  leave; the session goes on without you
  //TEXT         send a message that starts with "/"
  Ctrl-C         clear the line being typed; on an empty line, interrupt the agent's turn
                 if it is working; pressed twice within 2 s, leave

"""

RELAY_HELP = """\
relay: --relay URL, else `relay` in ~/.config/rcd/config.toml, else the relay that
`rcd start` embeds on this machine. Plain http:// is refused unless the relay is on this
machine (127.0.0.1, ::1, localhost) or --insecure-http is given; for an https:// relay
with a private CA or a self-signed certificate, pass --ca-cert PATH (or set SSL_CERT_FILE).
token: --token, else the first line of --token-file PATH, else $RCD_TOKEN, else the one
stored for the relay in ~/.config/rcd/tokens.json; for the embedded relay a device token
named attach@HOST is created once and stored there (mode 0600). Elsewhere create one where
the relay runs with `rcd relay token create --name NAME`. Prefer --token-file (mode 0600)
or $RCD_TOKEN to --token: the arguments of a process are visible to every user of the
machine (`ps`), for as long as the command runs.
"""

KEYS_HELP += (
    """back to the terminal:
  rcd attach --resume-locally SESSION_ID [-- CLAUDE_ARGS]
                 end the session and open its conversation in the local claude CLI
                 (claude --resume ID CLAUDE_ARGS) in its directory: its worktree if kept,
                 else the environment's. Run it on the environment's machine, as the
                 daemon's user (where claude keeps the conversation); elsewhere it refuses
                 and ends nothing. --agent-bin PATH picks the claude to run.

"""
    + RELAY_HELP
    + """
While the relay is unreachable attach retries with backoff and says so; messages typed
meanwhile are sent once it is back. Exit status: 0 when you leave, 1 for an unknown
session, a refused token or a configuration problem, 128+N on signal N.
"""
)


def add_attach_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``attach`` to ``rcd``'s subcommands (dispatch with :func:`run_attach`)."""
    parser = subparsers.add_parser(
        "attach",
        help="follow a session in this terminal and talk to it",
        description=DESCRIPTION,
        epilog=KEYS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("session_id", metavar="SESSION_ID", help="the session, e.g. ses_9a1b...")
    parser.add_argument(
        "--resume-locally",
        action="store_true",
        help="instead: end the session and open its conversation in the local claude CLI"
        " (claude --resume ID) in the session's directory; on the environment's machine",
    )
    parser.add_argument(
        "--agent-bin",
        default="claude",
        metavar="PATH",
        help="with --resume-locally: the claude to run (default: claude on PATH)",
    )
    # What follows "--" is claude's (see split_claude_args): documented here, parsed there.
    parser.set_defaults(claude_args=[])
    add_relay_options(parser, "attach")


def split_claude_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """``rcd attach ... -- CLAUDE_ARGS``: the arguments for rcd, and those after the first
    ``--`` (for ``--resume-locally``'s claude)."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def add_relay_options(parser: argparse.ArgumentParser, command: str) -> None:
    """The options that say which relay, and which device token (``rcd attach``, ``rcd run``)."""
    parser.add_argument("--relay", metavar="URL", help="the relay (default: see below)")
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="read the device token from the first line of PATH (keep it mode 0600)",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"a device token; every user of this machine can read it in `ps` while {command} "
        "runs, so prefer --token-file or $RCD_TOKEN (default: see below)",
    )
    parser.add_argument("--insecure-http", action="store_true", help=INSECURE_HTTP_HELP)
    parser.add_argument("--ca-cert", type=Path, metavar="PATH", help=CA_CERT_HELP)
