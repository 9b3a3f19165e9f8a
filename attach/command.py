"""``rcd attach SESSION_ID``: resolve the relay and token, open the terminal, run :class:`Attach`.

Run it alone as ``python -m attach SESSION_ID [--relay URL] [--token-file PATH]``.
"""

from __future__ import annotations

import argparse
import io
import os
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import nullcontext

import httpx
import trio

from daemon.errors import DaemonError
from daemon.transport import tls_context, warn_insecure_http

from .api import SessionApi, TokenRejected
from .auth import Target, resolve_target, tokens_path
from .client import Attach
from .parser import add_attach_parser, split_claude_args
from .render import Style
from .term import Console, cbreak

__all__ = ["Main", "in_terminal", "main", "run_attach"]


def run_attach(args: argparse.Namespace) -> int:
    """Run ``rcd attach`` with parsed ``args``; returns the exit status."""
    if args.resume_locally:  # rcd's: cli.main hands it to run.local
        print("rcd attach: --resume-locally is a command of rcd (`rcd attach`)", file=sys.stderr)
        return 2
    if args.claude_args:
        print("rcd attach: arguments after -- are for --resume-locally", file=sys.stderr)
        return 2
    return in_terminal(
        args,
        "attach",
        lambda target, console, style, verify: _attach(
            target, args.session_id, console, style, verify
        ),
    )


#: What runs once the relay, the token and the terminal are settled.
Main = Callable[[Target, Console, Style, "ssl.SSLContext | bool"], Awaitable[int]]


def in_terminal(args: argparse.Namespace, command: str, main: Main) -> int:
    """Resolve the relay and token from ``args`` (see :mod:`attach.auth`), set the terminal
    up (cbreak when both ends are one, colours when stdout is), run ``main``, and turn
    what it raises into a sentence on stderr; returns the exit status."""
    try:
        target = resolve_target(
            args.relay,
            args.token,
            os.environ,
            token_file=args.token_file,
            insecure_http=args.insecure_http,
        )
        warn_insecure_http(target.relay)
        verify = tls_context(args.ca_cert) if target.relay.startswith("https://") else True
    except DaemonError as exc:
        print(f"rcd {command}: {exc}", file=sys.stderr)
        return 1
    if isinstance(sys.stdout, io.TextIOWrapper):
        # Agent output in a terminal that cannot show it: a "?" rather than a crash.
        sys.stdout.reconfigure(errors="replace")
    tty_out = sys.stdout.isatty()
    interactive = tty_out and _isatty(0)
    style = Style(color=tty_out and not os.environ.get("NO_COLOR") and _term() != "dumb")
    console = Console(out=sys.stdout, interactive=interactive)
    if target.source == "minted":
        console.print(
            [style.dim(f"created device token {target.token_name!r}; stored in {tokens_path()}")]
        )
    try:
        with cbreak(0) if interactive else nullcontext():
            try:
                return trio.run(main, target, console, style, verify)
            finally:
                console.close()
    except TokenRejected as exc:
        print(f"rcd {command}: {exc}{_token_hint(target)}", file=sys.stderr)
    except DaemonError as exc:
        print(f"rcd {command}: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _term() -> str:
    return os.environ.get("TERM", "")


def _token_hint(target: Target) -> str:
    if target.source in ("tokens.json", "minted"):
        return (
            f" (it is stored in {tokens_path()}: remove its entry for {target.relay}, "
            "or pass --token)"
        )
    return " (create a new one with `rcd relay token create --name NAME` where the relay runs)"


async def _attach(
    target: Target,
    session_id: str,
    console: Console,
    style: Style,
    verify: ssl.SSLContext | bool = True,
) -> int:
    async with httpx.AsyncClient(timeout=15.0, verify=verify) as http:
        api = SessionApi(http=http, relay=target.relay, token=target.token, session_id=session_id)
        return await Attach(api=api, console=console, style=style).run()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m attach SESSION_ID [--relay URL] [--token-file PATH] ...``."""
    parser = argparse.ArgumentParser(prog="rcd")
    add_attach_parser(parser.add_subparsers(dest="command", required=True))
    argv, claude_args = split_claude_args(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(["attach", *argv])
    args.claude_args = claude_args
    return run_attach(args)
