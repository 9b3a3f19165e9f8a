"""What install, uninstall and status need from a service manager (:class:`Manager`), and
running its commands (systemctl, launchctl) with a timeout.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from common.commands import Ran
from common.commands import run as run_command

__all__ = ["COMMAND_TIMEOUT", "Manager", "Ran", "run", "user_name"]


COMMAND_TIMEOUT = 300.0
"""Per systemctl/launchctl call. ``systemctl start`` waits for READY=1 (up to TimeoutStartSec)."""


def run(argv: Sequence[str]) -> Ran:
    """A systemctl/launchctl call, with :data:`COMMAND_TIMEOUT`."""
    return run_command(argv, timeout=COMMAND_TIMEOUT)


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
