"""``rcd start``: set up logging (to a file when the live status screen owns the terminal),
then run the daemon in the foreground until a signal stops it."""

from __future__ import annotations

import argparse
import sys
from functools import partial

import attrs
import trio

from common.logs import configure_logging

from .options import StartOptions
from .paths import default_relay, state_dir
from .run import run_daemon
from .settings import given_options

__all__ = ["run_start"]


def run_start(args: argparse.Namespace) -> int:
    """Run ``rcd start`` with parsed ``args``; returns the daemon's exit status."""
    # On a terminal the daemon draws a live status screen; its logs go to a file then.
    display = sys.stdout.isatty() and sys.stdin.isatty()
    if display:
        log_path = state_dir() / "daemon.log"
        log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_file = log_path.open("a", encoding="utf-8")
        print(f"rcd: logging to {log_path}")
        configure_logging(verbose=args.verbose, file=log_file)
    else:
        configure_logging(verbose=args.verbose)
    options = attrs.evolve(StartOptions.from_args(args), given=given_options(sys.argv[1:]))
    if options.relay is None:
        options = attrs.evolve(options, relay=default_relay())
    return trio.run(partial(run_daemon, options, display=display))
