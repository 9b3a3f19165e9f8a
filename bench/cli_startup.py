"""CLI start-up: how long ``rcd --help`` takes, beside ``python -c pass`` measured in the same
run (the interpreter's own start, which no change to rcd can remove).

``rcd`` builds every command's parser but imports a command's package only when that
command runs, so ``--help`` should cost little more than the interpreter; before the
command line moved out of ``daemon/`` it loaded the relay (Starlette, Hypercorn) and
GitPython and took about 0.9 s.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import attrs
import trio

from .stats import Figure

__all__ = ["CliStartup", "measure_cli_startup", "rcd_command"]


def rcd_command() -> list[str]:
    """The ``rcd`` console script beside this interpreter, else ``python -m cli``."""
    script = Path(sys.executable).with_name("rcd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


@attrs.frozen(kw_only=True)
class CliStartup:
    help: Figure
    baseline: Figure


def _wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _measure(trials: int) -> CliStartup:
    rcd_help = [*rcd_command(), "--help"]
    baseline = [sys.executable, "-c", "pass"]
    _wall(rcd_help)  # warm the page cache and the .pyc files first
    helps: list[float] = []
    passes: list[float] = []
    for _ in range(trials):  # interleaved, so a noisy moment hits both alike
        helps.append(_wall(rcd_help))
        passes.append(_wall(baseline))
    return CliStartup(
        help=Figure(name="rcd --help", unit="s", samples=tuple(helps)),
        baseline=Figure(name="python -c pass (baseline)", unit="s", samples=tuple(passes)),
    )


async def measure_cli_startup(trials: int = 15) -> CliStartup:
    """Median wall time of ``trials`` runs of each, in a worker thread."""
    return await trio.to_thread.run_sync(_measure, trials)
