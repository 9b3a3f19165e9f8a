"""``rcd doctor``'s command line (imports nothing but argparse and the start options)."""

from __future__ import annotations

import argparse

from daemon.options import StartOptions, add_start_options

__all__ = ["add_doctor_parser", "doctor_options"]

DESCRIPTION = """\
Check what `rcd start` needs here, one line per check (ok / problem / note), each problem
with its fix:

  agent              the agent's executable (--agent-bin, or claude on PATH) and its version
  model credential   ANTHROPIC_API_KEY (or ~/.config/rcd/env for a service), Bedrock or
                     Vertex, or the CLI's own login
  git                git, and for --spawn worktree a repository with a commit
  relay              with --relay: reachable, this machine paired, the credential valid;
                     without: the embedded relay's port
  clock              with --relay: this machine's clock against the relay's
  tailscale          with --expose tailscale: the CLI, tailscaled, logged in, a MagicDNS name
  lan                with --expose lan: a network address to serve the relay on
  service manager    systemd's user instance and lingering (Linux), launchd (macOS)
  runtime directory  where the control sockets go

Exit status: 0 when nothing is a problem, 1 otherwise. Takes the options of `rcd start`
(those it does not check are ignored), so the same command line can be checked.
"""


def add_doctor_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``doctor`` to ``rcd``'s subcommands (dispatch with :func:`doctor.command.run_doctor`)."""
    doctor = subparsers.add_parser(
        "doctor",
        help="check what rcd needs on this machine, and how to fix what is missing",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_start_options(doctor)
    doctor.add_argument(
        "--json",
        action="store_true",
        help='print {"ok": bool, "checks": [{"name", "status", "detail", "fix"}]} instead',
    )


def doctor_options(args: argparse.Namespace) -> StartOptions:
    """The start options ``rcd doctor`` was given."""
    return StartOptions.from_args(args)
