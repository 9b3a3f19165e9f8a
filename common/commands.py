"""Running another program to completion with a timeout, its outcome as :class:`Ran`
(``rcd service`` runs systemctl and launchctl with it, ``rcd doctor`` the agent, git and
systemctl)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import textwrap
from collections.abc import Sequence

import attrs

__all__ = ["Ran", "run"]


@attrs.frozen
class Ran:
    """One call. ``returncode`` is None when it could not run at all (then ``output`` says
    why)."""

    argv: tuple[str, ...]
    returncode: int | None
    #: What it printed, stdout then stderr.
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        command = shlex.join(self.argv)
        if self.returncode is None:
            return f"could not run `{command}`: {self.output}"
        detail = self.output.strip()
        text = f"`{command}` failed (exit {self.returncode})"
        return text + (":\n" + textwrap.indent(detail, "  ") if detail else "")


def run(argv: Sequence[str], *, timeout: float) -> Ran:
    """Run ``argv`` (its first word looked up on PATH) with no input, for at most
    ``timeout`` seconds."""
    executable = shutil.which(argv[0])
    if executable is None:
        return Ran(tuple(argv), None, f"{argv[0]} is not on PATH")
    try:
        done = subprocess.run(
            [executable, *argv[1:]],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Ran(tuple(argv), None, f"no answer within {timeout:.0f}s")
    except OSError as exc:
        return Ran(tuple(argv), None, str(exc))
    return Ran(tuple(argv), done.returncode, done.stdout + done.stderr)
