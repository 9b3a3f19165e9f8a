"""launchd: the LaunchAgent ``org.rcd.daemon.<slug>`` (from
``launchd/org.rcd.daemon.plist.in``) and the launchctl commands that install, stop and
inspect it.
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

import attrs

from daemon.errors import ConfigError

from .manager import Ran, run
from .options import ServiceOptions
from .templates import LAUNCHD_TEMPLATE, read_template

__all__ = ["Launchd", "launchd_log_path", "render_launchd_plist"]


def launchd_log_path(opts: ServiceOptions) -> Path:
    return opts.home / "Library" / "Logs" / "rcd" / f"{opts.slug}.log"


def render_launchd_plist(opts: ServiceOptions, rcd_argv: Sequence[str]) -> bytes:
    """The LaunchAgent plist (XML) running ``rcd start`` for ``opts.directory``.

    The template is itself a plist: it is parsed, its ``@...@`` placeholders are replaced,
    and plistlib writes (and escapes) the result. Raises :class:`ConfigError` if a value
    cannot be written into a plist.
    """
    plist = plistlib.loads(read_template(LAUNCHD_TEMPLATE))
    log = str(launchd_log_path(opts))
    plist.update(
        Label=opts.label,
        ProgramArguments=opts.command(rcd_argv),
        WorkingDirectory=str(opts.directory),
        ExitTimeOut=opts.stop_deadline,
        StandardOutPath=log,
        StandardErrorPath=log,
    )
    plist["EnvironmentVariables"]["PATH"] = opts.path
    _check_filled(plist)
    try:
        return plistlib.dumps(plist, sort_keys=False)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot write the launchd plist: {exc}") from exc


def _check_filled(value: object) -> None:
    if isinstance(value, dict):
        for child in value.values():
            _check_filled(child)
    elif isinstance(value, list):
        for child in value:
            _check_filled(child)
    elif isinstance(value, str) and re.fullmatch(r"@\w+@", value):
        raise ConfigError(f"{LAUNCHD_TEMPLATE} has a placeholder rcd does not fill: {value}")


@attrs.frozen
class Launchd:
    opts: ServiceOptions

    @property
    def path(self) -> Path:
        return self.opts.home / "Library" / "LaunchAgents" / f"{self.opts.label}.plist"

    @property
    def domain(self) -> str:
        return f"gui/{os.getuid()}"

    @property
    def target(self) -> str:
        return f"{self.domain}/{self.opts.label}"

    def render(self, rcd_argv: Sequence[str]) -> bytes:
        return render_launchd_plist(self.opts, rcd_argv)

    def prepare(self) -> None:
        log_dir = launchd_log_path(self.opts).parent
        try:
            log_dir.mkdir(parents=True, exist_ok=True)  # launchd creates the file, not its folder
        except OSError as exc:
            raise ConfigError(f"cannot create {log_dir}: {exc}") from exc

    def _loaded(self) -> bool:
        return run(["launchctl", "print", self.target]).ok

    def install_steps(self, *, changed: bool) -> list[list[str]]:
        # `enable` first: bootstrap refuses a service that was once disabled.
        enable = ["launchctl", "enable", self.target]
        if not self._loaded():
            return [enable, ["launchctl", "bootstrap", self.domain, str(self.path)]]
        if changed:  # launchd keeps the old definition until booted out
            return [
                ["launchctl", "bootout", self.target],
                enable,
                ["launchctl", "bootstrap", self.domain, str(self.path)],
            ]
        return [enable, ["launchctl", "kickstart", self.target]]  # starts it unless running

    def is_installed(self) -> bool:
        return self.path.exists() or self._loaded()

    def stop_steps(self) -> list[list[str]]:
        return [["launchctl", "bootout", self.target]] if self._loaded() else []

    def after_removal_steps(self) -> list[list[str]]:
        return []

    def status_steps(self) -> list[list[str]]:
        return [["launchctl", "print", self.target]]

    def report_installed(self) -> None:
        print(f"rcd is running for {self.opts.directory} as {self.opts.label}")
        print(f"  logs: {launchd_log_path(self.opts)}")
        print(f"  status: rcd service status {shlex.quote(str(self.opts.directory))}")
        print("It starts again at every login; rcd service uninstall stops that.")

    def hint(self, ran: Ran) -> str | None:
        if "bootstrap" in ran.argv:
            return (
                f"run it from the logged-in user's GUI session; see: launchctl print {self.target}"
            )
        return None
