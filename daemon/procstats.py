"""What a process holds right now: memory, open files, trio tasks, child processes.

``rcd status --json`` reports it for the daemon, and the soak benchmark compares it at the
start and the end of a long run: none of it may grow.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import trio

__all__ = ["ProcessStats", "process_stats"]


@attrs.frozen(kw_only=True)
class ProcessStats:
    rss_kib: int
    open_files: int
    tasks: int
    children: int


def _count_tasks(task: trio.lowlevel.Task) -> int:
    return 1 + sum(
        _count_tasks(child) for nursery in task.child_nurseries for child in nursery.child_tasks
    )


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _children(pid: int) -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                count += 1
    return count


def process_stats() -> ProcessStats:
    """A snapshot of this process (call from inside ``trio.run``; Linux /proc only, zeros
    elsewhere). Reads a few small /proc files: cheap enough for a status request."""
    try:
        rss, files, children = _rss_kib(), len(os.listdir("/proc/self/fd")), _children(os.getpid())
    except OSError:
        rss = files = children = 0
    root = trio.lowlevel.current_root_task()
    return ProcessStats(
        rss_kib=rss,
        open_files=files,
        tasks=_count_tasks(root) if root is not None else 0,
        children=children,
    )
