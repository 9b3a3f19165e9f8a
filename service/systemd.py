"""systemd: the user unit ``rcd-<slug>.service`` (from ``systemd/rcd.service.in``) and the
systemctl commands that install, stop and inspect it.
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Sequence
from pathlib import Path

import attrs

from daemon.errors import ConfigError
from daemon.paths import config_dir

from .manager import Ran, user_name
from .options import ServiceOptions
from .templates import SYSTEMD_TEMPLATE, read_template

__all__ = ["LINGER_DIR", "Systemd", "render_systemd_unit"]


LINGER_DIR = Path("/var/lib/systemd/linger")


def _one_line(text: str, what: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ConfigError(f"{what} {text!r} has a control character a service file cannot hold")
    return text


_SAFE_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def _systemd_word(arg: str) -> str:
    """One ExecStart word: quoted when needed, '%' (specifiers) and '$' (variables) doubled."""
    _one_line(arg, "the argument")
    if arg == ";":
        return "\\;"  # a lone ';' would separate commands
    word = arg if _SAFE_WORD.fullmatch(arg) else _systemd_quoted(arg)
    return word.replace("%", "%%").replace("$", "$$")


def _systemd_quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_systemd_unit(opts: ServiceOptions, rcd_argv: Sequence[str]) -> str:
    """The systemd user unit running ``rcd start`` for ``opts.directory``.

    Raises :class:`ConfigError` if a value cannot be written into a unit file.
    """
    directory = _one_line(str(opts.directory), "the directory")
    if directory.endswith((" ", "\\")):
        raise ConfigError(f"a systemd unit cannot name a directory ending in {directory[-1]!r}")
    template = string.Template(read_template(SYSTEMD_TEMPLATE).decode())
    return template.substitute(
        description=f"rcd daemon for {directory}".replace("%", "%%"),
        exec_start=" ".join(_systemd_word(arg) for arg in opts.command(rcd_argv)),
        working_directory=directory.replace("%", "%%"),
        # Environment= expands specifiers but not '$'.
        path_environment=_systemd_quoted("PATH=" + _one_line(opts.path, "PATH")).replace("%", "%%"),
        timeout_stop_sec=str(opts.stop_deadline),
    )


@attrs.frozen
class Systemd:
    opts: ServiceOptions

    @property
    def path(self) -> Path:
        # Honours $XDG_CONFIG_HOME, as the user manager does.
        return config_dir().parent / "systemd" / "user" / self.opts.unit_name

    def render(self, rcd_argv: Sequence[str]) -> bytes:
        return render_systemd_unit(self.opts, rcd_argv).encode()

    def prepare(self) -> None:
        pass

    def _systemctl(self, *words: str) -> list[str]:
        return ["systemctl", "--user", *words]

    def install_steps(self, *, changed: bool) -> list[list[str]]:
        unit = self.opts.unit_name
        if changed:  # a running daemon keeps its old options until restarted
            start = [self._systemctl("enable", unit), self._systemctl("restart", unit)]
        else:  # starts it unless it already runs
            start = [self._systemctl("enable", "--now", unit)]
        return [self._systemctl("daemon-reload"), *start]

    def is_installed(self) -> bool:
        return self.path.exists()

    def stop_steps(self) -> list[list[str]]:
        return [self._systemctl("disable", "--now", self.opts.unit_name)]

    def after_removal_steps(self) -> list[list[str]]:
        return [self._systemctl("daemon-reload")]

    def status_steps(self) -> list[list[str]]:
        return [self._systemctl("status", "--no-pager", "--full", self.opts.unit_name)]

    def report_installed(self) -> None:
        unit = self.opts.unit_name
        print(f"rcd is running for {self.opts.directory} as {unit}")
        print(f"  logs: journalctl --user -u {unit} -f")
        print(f"  status: rcd service status {shlex.quote(str(self.opts.directory))}")
        print("  API keys and other variables for the agent: ~/.config/rcd/env (KEY=value lines)")
        user = user_name()
        if not (LINGER_DIR / user).exists():
            print(
                "To keep it running when you log out, and start it at boot, run once: "
                f"loginctl enable-linger {user}"
            )

    def hint(self, ran: Ran) -> str | None:
        if "bus" in ran.output.lower():
            return (
                "systemctl cannot reach your user's systemd instance: run this from a login "
                "session (XDG_RUNTIME_DIR set, usually /run/user/UID), or enable lingering"
            )
        if ran.returncode is not None and self.opts.unit_name in ran.argv:
            return f"see why: journalctl --user -u {self.opts.unit_name} -n 50"
        return None
