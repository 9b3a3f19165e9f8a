"""``rcd status [DIR]``: ask the daemon serving a directory, over its control socket, what
it runs, and print it (or its JSON)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common.visible import visible
from daemon.errors import DaemonError

__all__ = ["add_status_parser", "run_status"]


def add_status_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status`` to ``rcd``'s subcommands (dispatch with :func:`run_status`)."""
    status = subparsers.add_parser(
        "status", help="show the daemon serving a directory and its sessions"
    )
    status.add_argument("directory", nargs="?", default=".", type=Path, metavar="DIR")
    status.add_argument("--json", action="store_true", help="print JSON")


def run_status(args: argparse.Namespace) -> int:
    """Run ``rcd status`` with parsed ``args``; raises ``DaemonError`` if no daemon answers."""
    import trio

    import wire
    from daemon.control import query_control
    from daemon.paths import control_socket_path

    path = control_socket_path(args.directory)

    async def ask() -> wire.StatusReport:
        with trio.fail_after(5):
            return await query_control(path, wire.ControlRequest(op="status"))

    try:
        report = trio.run(ask)
    except trio.TooSlowError:
        raise DaemonError(f"the daemon at {path} did not answer within 5s") from None
    if args.json:
        print(json.dumps(wire.encode(report), indent=2))
        return 0
    env = report.environment
    # Titles (and every other string here) come from the network: shown, never interpreted.
    v = visible
    dot = "connected" if env.connected else "DISCONNECTED"
    print(f"{v(env.name)}  {dot} to {v(env.relay)}")
    if not env.connected and report.link.last_error:
        print(f"  last error: {v(report.link.last_error)}")
    settings = report.settings
    if settings is not None:
        pinned = (
            f" (set by its command line: {', '.join(settings.pinned)})" if settings.pinned else ""
        )
        sandbox = "on" if settings.sandbox else "off"
        hosts = ", ".join(settings.sandbox_allow_hosts) or "none"
        print(
            f"  new sessions: permission mode {v(settings.permission_mode)}, sandbox {sandbox}"
            f" (hosts: {v(hosts)}), variables: {v(', '.join(settings.env_names) or 'none')},"
            f" tools allowed: {v(', '.join(settings.allowed_tools) or 'none')}{pinned}"
        )
        if settings.changes:
            last = settings.changes[-1]
            print(f"  settings last changed by {v(last.by)}: {v(', '.join(last.changed))}")
    print(
        f"  {v(env.directory)}  spawn={v(env.spawn)}  "
        f"{len(report.sessions)}/{env.capacity} sessions"
    )
    # Each session's agent, when they are not all the same one.
    mixed = len({s.agent for s in report.sessions}) > 1
    for s in report.sessions:
        where = v(s.branch or s.cwd or "")
        title = v(s.title or "(untitled)")
        agent = f"  agent={v(s.agent or '?')}" if mixed else ""
        print(f"  {v(s.id)}  {v(s.state):<20} {title}  {where}  pid={s.pid}{agent}")
    if report.uplink.buffered_events:
        print(f"  {report.uplink.buffered_events} events waiting to go up to the relay")
    if report.kept_worktrees:
        print("  kept worktrees (they hold work; rcd never deletes them):")
    for k in report.kept_worktrees:
        reasons = v("; ".join(k.reasons))
        print(f"    {v(k.branch or '')}  {v(k.path)}: {reasons}")
    return 0
