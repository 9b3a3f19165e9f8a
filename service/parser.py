"""The parser of ``rcd service`` (dispatched to :func:`service.commands.run_service_command`)."""

from __future__ import annotations

import argparse

from daemon.options import add_start_options

__all__ = ["add_service_parser"]


def add_service_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``service install|uninstall|status [start options] [--print] [--platform P]``.

    The parsed namespace has ``command="service"`` (if the caller's dest is ``command``),
    ``service_action``, ``print_only``, ``platform`` and every start option; hand it to
    :func:`run_service_command`.
    """
    service = subparsers.add_parser(
        "service",
        help="run the daemon for a directory as a systemd/launchd user service",
        description="Install, remove or inspect a user service (a systemd user unit on Linux, "
        "a LaunchAgent on macOS) that runs `rcd start` with these options for DIR, starts it "
        "at login (at boot with lingering) and restarts it after a failure. With --agent acp "
        "the agent's command follows `--`, last: rcd service install --agent acp DIR -- CMD "
        "ARGS...",
    )
    actions = service.add_subparsers(dest="service_action", metavar="ACTION", required=True)
    for name, summary in (
        ("install", "write the service file, then enable and start it"),
        ("uninstall", "stop and disable the service, then remove its file"),
        ("status", "show whether the service file exists and what the manager says"),
    ):
        action = actions.add_parser(
            name, help=summary, description=summary[0].upper() + summary[1:]
        )
        add_start_options(action)
        action.add_argument(
            "--print",
            dest="print_only",
            action="store_true",
            help="print the service file (install) or the commands (uninstall, status); "
            "change nothing",
        )
        action.add_argument(
            "--platform",
            choices=["linux", "macos"],
            help="systemd (linux) or launchd (macos) (default: this machine's)",
        )
