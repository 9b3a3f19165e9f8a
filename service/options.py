"""What a service runs: the options of ``rcd start`` fixed at install time, and how it
runs rcd.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs

from daemon.errors import ConfigError
from daemon.options import StartOptions, start_args

__all__ = ["STOP_MARGIN", "ServiceOptions", "rcd_command", "service_options"]


STOP_MARGIN = 15
"""Seconds the service manager waits beyond ``--stop-timeout`` before SIGKILL."""


# -- what a service runs ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ServiceOptions:
    """Everything a service file depends on, fixed at install time."""

    directory: Path
    """Absolute and resolved, as ``rcd start`` resolves it."""
    start_args: tuple[str, ...]
    stop_timeout: float
    path: str
    """The PATH the service runs with: the installing shell's, so ``claude`` is found."""
    home: Path
    agent_command: tuple[str, ...] = ()
    """``--agent acp``'s command (the words after ``--``), its program absolute if it was
    given as a relative path."""

    @property
    def slug(self) -> str:
        """``<name>-<hash>``: readable, and distinct for two directories of the same name."""
        name = re.sub(r"[^a-z0-9]+", "-", self.directory.name.lower()).strip("-")
        digest = hashlib.sha256(os.fsencode(self.directory)).hexdigest()[:8]
        return f"{name[:40].strip('-') or 'dir'}-{digest}"

    @property
    def unit_name(self) -> str:
        return f"rcd-{self.slug}.service"

    @property
    def label(self) -> str:
        return f"org.rcd.daemon.{self.slug}"

    @property
    def stop_deadline(self) -> int:
        """Seconds from SIGTERM to SIGKILL: above the daemon's own teardown deadline."""
        return math.ceil(self.stop_timeout) + STOP_MARGIN

    def command(self, rcd_argv: Sequence[str]) -> list[str]:
        if not rcd_argv or not os.path.isabs(rcd_argv[0]):
            raise ConfigError(f"a service needs an absolute path to run rcd, got {rcd_argv!r}")
        command = ("--", *self.agent_command) if self.agent_command else ()
        return [*rcd_argv, "start", *self.start_args, str(self.directory), *command]


def service_options(args: argparse.Namespace) -> ServiceOptions:
    """Read the start options of a parsed ``rcd service ...`` (see :func:`add_start_options`)."""
    # A service is known by its directory: uninstall and status need no agent command (an
    # install's command line with `install` changed and `-- CMD` left off still names it).
    installing = getattr(args, "service_action", "install") == "install"
    words = tuple(start_args(args, command_needed=installing))
    wanted = args.agent == "acp" and (installing or getattr(args, "agent_command", None))
    command = StartOptions.from_args(args).agent_command if wanted else ()
    return ServiceOptions(
        directory=Path(args.directory).expanduser().resolve(),
        start_args=words,
        agent_command=command,
        stop_timeout=float(args.stop_timeout),
        path=os.environ.get("PATH") or os.defpath,
        home=Path.home(),
    )


def rcd_command() -> list[str]:
    """How a service runs rcd: the ``rcd`` script running now, else this Python ``-m daemon``.

    Symlinks are kept (a venv's python must be run through its own path). ``-P`` keeps the
    project directory, the service's working directory, off ``sys.path``: a project with its
    own ``daemon`` package must not shadow ours.
    """
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name == "rcd" and os.access(script, os.X_OK):
        return [str(script.absolute())]
    if not sys.executable:
        raise ConfigError("cannot tell which Python runs rcd (sys.executable is empty)")
    return [str(Path(sys.executable).absolute()), "-P", "-m", "daemon"]
