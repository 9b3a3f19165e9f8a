"""Figures for shared, noisy machines: medians and ratios against a same-run baseline."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import resource
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path

import attrs

__all__ = [
    "STALL_NOTE",
    "Check",
    "Figure",
    "cpu_ns_between",
    "cpu_seconds",
    "keep_logs",
    "machine_summary",
    "open_fds",
    "percentile",
    "raise_nofile",
    "rss_kib",
    "stall_check",
    "thread_cpu_ns",
    "verdict",
]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@attrs.frozen(kw_only=True)
class Figure:
    name: str
    unit: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)

    def row(self, digits: int = 1) -> str:
        return (
            f"| {self.name} | {self.median:.{digits}f} {self.unit} "
            f"| {self.p99:.{digits}f} {self.unit} | {len(self.samples)} |"
        )


def keep_logs(root: Path, name: str) -> Path:
    """Copy every ``*.log`` under ``root`` (a benchmark's temp dir, about to be deleted) to
    ``$TMPDIR/rcd-bench-logs/<name>-<time>/`` and say so on stderr; returns that dir."""
    import shutil
    import sys
    import tempfile

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = Path(tempfile.gettempdir()) / "rcd-bench-logs" / f"{name}-{stamp}"
    for log in root.rglob("*.log"):
        dest = target / log.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copy(log, dest)
    print(f"bench: {name} failed; its logs are in {target}", file=sys.stderr)
    return target


#: What a held-back event means (found while writing these benchmarks).
STALL_NOTE = (
    "A stall is a session's last events (a turn's `turn_result` and `status`, a"
    " `session_ended`) that the daemon has produced — `rcd status` already shows the new"
    " state — but does not upload until the session's next event. Its uplink flusher"
    " leaves its loop when nothing is pending and then exits a nursery, which is a"
    " checkpoint: an event published right then only sets the flusher's wake-up event"
    " (the flusher still counts as running) and nobody sends it. A client sees the agent"
    " busy until its next message, or a session that never ends. The benchmarks go on"
    " (they send the next message or stop the session) and count it here."
)


def stall_check(where: str, stalls: int) -> Check:
    return Check(
        name=f"{where}: every event uploaded at once",
        target="0 stalls",
        measured=f"{stalls} stalls",
        ok=not stalls,
        limit="the uplink flusher exits while an event is published (see that section)",
    )


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


@attrs.frozen(kw_only=True)
class Check:
    """One target of the performance issue, as measured in this run."""

    name: str
    target: str
    measured: str
    #: None: a figure reported without a target.
    ok: bool | None
    #: What limits the figure (shown when it misses).
    limit: str = ""

    def row(self) -> str:
        if self.ok is None:
            status = "no target (reported)"
        elif self.ok:
            status = "meets"
        else:
            status = f"**MISSES** — {self.limit}" if self.limit else "**MISSES**"
        return f"| {self.name} | {self.target} | {self.measured} | {status} |"


# -- what a process costs, from /proc (Linux) --------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # The command name may hold spaces and parentheses: split after the last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) == pid:
                    children.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return children


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """CPU time (user + system) the process has used so far, with ``children`` also that of
    its reaped children (cutime, cstime) and of its live descendants. Resolution: one clock
    tick (10 ms)."""
    fields = _stat_fields(pid)
    # After the ")": state ppid ... utime(11) stime(12) cutime(13) cstime(14), 0-based.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
        pending = _children_of(pid)
        while pending:
            child = pending.pop()
            try:
                f = _stat_fields(child)
            except OSError:
                continue  # it exited meanwhile: its time went to the parent's cutime
            ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
            pending.extend(_children_of(child))
    return ticks / _TICK


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """Nanoseconds each live thread of the process has run (``/proc/<pid>/task/*/schedstat``):
    finer than :func:`cpu_seconds`, but a thread that exits takes its time with it."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return out


def cpu_ns_between(before: dict[int, int], after: dict[int, int]) -> int:
    """CPU nanoseconds run between two :func:`thread_cpu_ns` readings by the threads alive
    at the second one."""
    return sum(ns - before.get(tid, 0) for tid, ns in after.items())


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_nofile() -> tuple[int, int]:
    """Raise this process's open-file limit to its hard limit (children inherit it);
    returns (soft, hard) as they are now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def machine_summary() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages * size / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = "?"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"- date: {now}\n- machine: {cpu}, {os.cpu_count()} cores{mem}\n"
        f"- python {platform.python_version()} on {platform.system()} {platform.release()}\n"
        f"- commit: {commit}"
    )
