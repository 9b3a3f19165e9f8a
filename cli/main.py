"""The ``rcd`` command line (the other public contract; see ``docs/cli.md``).

:func:`build_parser` asks each command's package for its parser (modules that import little
besides argparse); :func:`main` then imports the package of the one command that runs. So
``rcd --help``, ``rcd status`` and ``rcd attach`` never load the relay (Starlette,
Hypercorn) or the supervisor (GitPython).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence

from attach.parser import add_attach_parser, split_claude_args
from daemon.errors import DaemonError
from daemon.options import add_start_options
from doctor.parser import add_doctor_parser
from relay.cli import add_relay_parser
from relay.errors import RelayError
from run.parser import add_chat_parser, add_import_parser, add_run_parser
from service.parser import add_service_parser

from .pair import add_pair_parser
from .status import add_status_parser

__all__ = ["build_parser", "main", "parse_command_line"]

DESCRIPTION = """\
rcd drives coding-agent sessions on this machine from a phone or any browser.

  rcd start                 run the daemon here, with a relay embedded on 127.0.0.1
  rcd start --relay URL     run the daemon against a relay you host (pair first)
  rcd relay                 run a relay (the server phones and daemons connect to)
  rcd status                show what the daemon serving this directory runs
  rcd attach SESSION_ID     follow and drive a session from this terminal
  rcd run "PROMPT"          start a session from any terminal (--attach to follow it)
  rcd chat [DIR]            a new session in this terminal and on the phone at once
  rcd import [ID]           continue a local claude conversation on the phone
  rcd service install       run `rcd start` as a systemd user service or launchd agent
  rcd doctor                check what rcd needs here, and how to fix what is missing
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rcd", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    start = sub.add_parser(
        "start",
        help="run the daemon for a directory",
        description="Register this directory with a relay and run agent sessions for it. "
        "Without --relay (and none in ~/.config/rcd/config.toml) a relay runs embedded on "
        "127.0.0.1 and a sign-in link is printed. Stops gracefully on SIGTERM/SIGINT; a "
        "second signal forces.",
    )
    add_start_options(start)

    add_relay_parser(sub)
    add_pair_parser(sub)
    add_service_parser(sub)
    add_attach_parser(sub)
    add_run_parser(sub)
    add_chat_parser(sub)
    add_import_parser(sub)
    add_status_parser(sub)
    add_doctor_parser(sub)
    return parser


#: The commands whose ``--agent acp`` takes the agent's command after ``--``.
_ACP_COMMANDS = (["start"], ["doctor"], ["service"])


def parse_command_line(words: Sequence[str]) -> argparse.Namespace:
    """``rcd``'s words parsed, those after ``--`` where they belong: ``--agent acp``'s
    command (start, doctor, service) as ``agent_command``, ``claude``'s arguments
    (attach ``--resume-locally``) as ``claude_args``."""
    words, tail = list(words), list[str]()
    if words[:1] == ["attach"] and "--resume-locally" in words:
        words, tail = split_claude_args(words)
    elif words[:1] in _ACP_COMMANDS and _agent_is_acp(words):
        words, tail = split_claude_args(words)  # --agent acp -- CMD ARGS...
    args = build_parser().parse_args(words)
    if tail and [args.command] in _ACP_COMMANDS:
        args.agent_command = tail
    elif tail:
        args.claude_args = tail
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_command_line(sys.argv[1:] if argv is None else argv)
    try:
        return _run(args)
    except DaemonError as exc:
        print(f"rcd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseExceptionGroup as group:
        # Errors raised inside a nursery arrive wrapped; a user sees the sentence, not a trace.
        inner = _single(group)
        if isinstance(inner, DaemonError | RelayError):
            print(f"rcd: {inner}", file=sys.stderr)
            return 1
        if isinstance(inner, KeyboardInterrupt):
            return 130
        raise


def _agent_is_acp(words: list[str]) -> bool:
    """Whether ``--agent acp`` comes before the first ``--`` (whose words are then its
    command; otherwise ``--`` keeps its usual meaning, e.g. a directory named ``-x``)."""
    before = words[: words.index("--")] if "--" in words else words
    return "--agent=acp" in before or any(
        pair == ("--agent", "acp") for pair in itertools.pairwise(before)
    )


def _run(args: argparse.Namespace) -> int:
    """Import the package of ``args.command`` and run it; returns the exit status."""
    if args.command == "start":
        from daemon.start import run_start

        return run_start(args)
    if args.command == "relay":
        from relay.cli import run_relay

        return run_relay(args)
    if args.command == "pair":
        from .pair import run_pair

        return run_pair(args)
    if args.command == "status":
        from .status import run_status

        return run_status(args)
    if args.command == "service":
        from service.commands import run_service_command

        return run_service_command(args)
    if args.command == "doctor":
        from doctor.command import run_doctor

        return run_doctor(args)
    if args.command == "attach" and args.resume_locally:
        from run.local import resume_locally

        return resume_locally(args)
    if args.command == "attach":
        from attach.command import run_attach

        return run_attach(args)
    if args.command == "run":
        from run.command import run_run

        return run_run(args)
    if args.command == "chat":
        from run.chat import run_chat

        return run_chat(args)
    if args.command == "import":
        from run.importing import run_import

        return run_import(args)
    raise AssertionError(args.command)


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside nested single-member groups (or the group itself)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
