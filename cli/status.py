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

    from daemon.control import query_control
    from daemon.paths import control_socket_path

    path = control_socket_path(args.directory)

    async def ask() -> dict[str, object]:
        with trio.fail_after(5):
            return await query_control(path, {"op": "status"})

    try:
        report = trio.run(ask)
    except trio.TooSlowError:
        raise DaemonError(f"the daemon at {path} did not answer within 5s") from None
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    env = report["environment"]
    assert isinstance(env, dict)
    sessions = report["sessions"]
    assert isinstance(sessions, list)
    # Titles (and every other string here) come from the network: shown, never interpreted.
    v = visible
    dot = "connected" if env["connected"] else "DISCONNECTED"
    print(f"{v(str(env['name']))}  {dot} to {v(str(env['relay']))}")
    print(
        f"  {v(str(env['directory']))}  spawn={v(str(env['spawn']))}  "
        f"{len(sessions)}/{env['capacity']} sessions"
    )
    for s in sessions:
        where = v(str(s.get("branch") or s.get("cwd") or ""))
        title = v(str(s.get("title") or "(untitled)"))
        state = v(str(s["state"]))
        print(f"  {v(str(s['id']))}  {state:<20} {title}  {where}  pid={s.get('pid')}")
    uplink = report.get("uplink")
    if isinstance(uplink, dict) and uplink.get("buffered_events"):
        print(f"  {uplink['buffered_events']} events waiting to go up to the relay")
    kept = report.get("kept_worktrees") or []
    assert isinstance(kept, list)
    if kept:
        print("  kept worktrees (they hold work; rcd never deletes them):")
    for k in kept:
        reasons = v("; ".join(str(r) for r in k["reasons"]))
        print(f"    {v(str(k['branch']))}  {v(str(k['path']))}: {reasons}")
    return 0
