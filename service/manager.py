"""What install, uninstall and status need from a service manager (:class:`Manager`), and
running its commands (systemctl, launchctl) with a timeout.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import attrs

__all__ = ["COMMAND_TIMEOUT", "Manager", "Ran", "run", "user_name"]


COMMAND_TIMEOUT = 300.0
"""Per systemctl/launchctl call. ``systemctl start`` waits for READY=1 (up to TimeoutStartSec)."""


@attrs.frozen
class Ran:
    """One systemctl/launchctl call. ``returncode`` is None when it could not run at all."""

    argv: tuple[str, ...]
    returncode: int | None
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


def run(argv: Sequence[str]) -> Ran:
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
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Ran(tuple(argv), None, f"no answer within {COMMAND_TIMEOUT:.0f}s")
    except OSError as exc:
        return Ran(tuple(argv), None, str(exc))
    return Ran(tuple(argv), done.returncode, done.stdout + done.stderr)


class Manager(Protocol):
    """What install/uninstall/status need from systemd or launchd."""

    @property
    def path(self) -> Path: ...
    def render(self, rcd_argv: Sequence[str]) -> bytes: ...
    def prepare(self) -> None: ...
    def install_steps(self, *, changed: bool) -> list[list[str]]: ...
    def is_installed(self) -> bool: ...
    def stop_steps(self) -> list[list[str]]: ...
    def after_removal_steps(self) -> list[list[str]]: ...
    def status_steps(self) -> list[list[str]]: ...
    def report_installed(self) -> None: ...
    def hint(self, ran: Ran) -> str | None: ...


def user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER", str(os.getuid()))
