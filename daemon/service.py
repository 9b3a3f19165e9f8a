"""``rcd service install|uninstall|status``: run ``rcd start`` as a user service.

On Linux a systemd user unit ``rcd-<slug>.service`` (from ``systemd/rcd.service.in``), on
macOS a LaunchAgent ``org.rcd.daemon.<slug>`` (from ``launchd/org.rcd.daemon.plist.in``),
one per project directory. The service manager runs the daemon in the foreground (it never
forks), restarts it after a failure, and stops it with SIGTERM and a deadline above
``--stop-timeout``. Everything here is synchronous: it is a command, not part of the daemon.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import plistlib
import pwd
import re
import shlex
import shutil
import string
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import attrs

from .errors import ConfigError, DaemonError, NotPaired
from .options import add_start_options, start_args
from .paths import config_dir, default_relay, load_credential, normalise_relay_url

__all__ = [
    "ServiceOptions",
    "add_service_parser",
    "rcd_command",
    "render_launchd_plist",
    "render_systemd_unit",
    "run_service_command",
    "service_options",
]

Platform = Literal["linux", "macos"]


def _template(folder: str, name: str) -> Path:
    """A service template: from the source tree, else where ``pip install`` put it
    (``<prefix>/share/rcd/<folder>/``, see ``[tool.setuptools.data-files]``)."""
    source = Path(__file__).resolve().parents[1] / folder / name
    if source.exists():
        return source
    return Path(sys.prefix) / "share" / "rcd" / folder / name


SYSTEMD_TEMPLATE = _template("systemd", "rcd.service.in")
LAUNCHD_TEMPLATE = _template("launchd", "org.rcd.daemon.plist.in")
LINGER_DIR = Path("/var/lib/systemd/linger")
STOP_MARGIN = 15
"""Seconds the service manager waits beyond ``--stop-timeout`` before SIGKILL."""
COMMAND_TIMEOUT = 300.0
"""Per systemctl/launchctl call. ``systemctl start`` waits for READY=1 (up to TimeoutStartSec)."""


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
        return [*rcd_argv, "start", *self.start_args, str(self.directory)]


def service_options(args: argparse.Namespace) -> ServiceOptions:
    """Read the start options of a parsed ``rcd service ...`` (see :func:`add_start_options`)."""
    return ServiceOptions(
        directory=Path(args.directory).expanduser().resolve(),
        start_args=tuple(start_args(args)),
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


# -- rendering -------------------------------------------------------------------------------


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
    template = string.Template(_read_template(SYSTEMD_TEMPLATE).decode())
    return template.substitute(
        description=f"rcd daemon for {directory}".replace("%", "%%"),
        exec_start=" ".join(_systemd_word(arg) for arg in opts.command(rcd_argv)),
        working_directory=directory.replace("%", "%%"),
        # Environment= expands specifiers but not '$'.
        path_environment=_systemd_quoted("PATH=" + _one_line(opts.path, "PATH")).replace("%", "%%"),
        timeout_stop_sec=str(opts.stop_deadline),
    )


def launchd_log_path(opts: ServiceOptions) -> Path:
    return opts.home / "Library" / "Logs" / "rcd" / f"{opts.slug}.log"


def render_launchd_plist(opts: ServiceOptions, rcd_argv: Sequence[str]) -> bytes:
    """The LaunchAgent plist (XML) running ``rcd start`` for ``opts.directory``.

    The template is itself a plist: it is parsed, its ``@...@`` placeholders are replaced,
    and plistlib writes (and escapes) the result. Raises :class:`ConfigError` if a value
    cannot be written into a plist.
    """
    plist = plistlib.loads(_read_template(LAUNCHD_TEMPLATE))
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


def _read_template(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the service template {path}: {exc}") from exc


# -- installing, removing, inspecting --------------------------------------------------------


@attrs.frozen
class _Ran:
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


def _run(argv: Sequence[str]) -> _Ran:
    executable = shutil.which(argv[0])
    if executable is None:
        return _Ran(tuple(argv), None, f"{argv[0]} is not on PATH")
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
        return _Ran(tuple(argv), None, f"no answer within {COMMAND_TIMEOUT:.0f}s")
    except OSError as exc:
        return _Ran(tuple(argv), None, str(exc))
    return _Ran(tuple(argv), done.returncode, done.stdout + done.stderr)


class _Manager(Protocol):
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
    def hint(self, ran: _Ran) -> str | None: ...


@attrs.frozen
class _Systemd:
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
        user = _user_name()
        if not (LINGER_DIR / user).exists():
            print(
                "To keep it running when you log out, and start it at boot, run once: "
                f"loginctl enable-linger {user}"
            )

    def hint(self, ran: _Ran) -> str | None:
        if "bus" in ran.output.lower():
            return (
                "systemctl cannot reach your user's systemd instance: run this from a login "
                "session (XDG_RUNTIME_DIR set, usually /run/user/UID), or enable lingering"
            )
        if ran.returncode is not None and self.opts.unit_name in ran.argv:
            return f"see why: journalctl --user -u {self.opts.unit_name} -n 50"
        return None


@attrs.frozen
class _Launchd:
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
        return _run(["launchctl", "print", self.target]).ok

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

    def hint(self, ran: _Ran) -> str | None:
        if "bootstrap" in ran.argv:
            return (
                f"run it from the logged-in user's GUI session; see: launchctl print {self.target}"
            )
        return None


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER", str(os.getuid()))


def _platform(args: argparse.Namespace) -> Platform:
    if args.platform is not None:
        chosen: Platform = args.platform
        return chosen
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "macos"
    raise ConfigError(
        f"rcd service knows systemd (linux) and launchd (macos), not {sys.platform!r}; "
        "--print --platform linux|macos shows the file"
    )


def _write_file(path: Path, content: bytes) -> None:
    """Replace ``path`` atomically with ``content``, mode 0644 whatever the umask."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from exc


def _run_steps(manager: _Manager, steps: list[list[str]], then: Sequence[str] = ()) -> bool:
    """Run ``steps`` in order. On the first failure say what failed and what to run by hand
    (that step, the rest, then ``then``) and return False."""
    for i, argv in enumerate(steps):
        ran = _run(argv)
        if ran.ok:
            continue
        print(f"rcd service: {ran.describe()}", file=sys.stderr)
        hint = manager.hint(ran)
        if hint:
            print(f"  ({hint})", file=sys.stderr)
        print("Then run by hand:", file=sys.stderr)
        for line in [*(shlex.join(rest) for rest in steps[i:]), *then]:
            print(f"  {line}", file=sys.stderr)
        return False
    return True


def _check_startable(opts: ServiceOptions, args: argparse.Namespace) -> None:
    """Refuse what ``rcd start`` would refuse at once, rather than let it crash-loop."""
    if not opts.directory.is_dir():
        raise ConfigError(f"{opts.directory} is not a directory")
    relay = args.relay or default_relay()
    if relay is not None and load_credential(relay) is None:
        raise NotPaired(normalise_relay_url(relay))
    agent = args.agent_bin or args.agent
    if shutil.which(os.path.expanduser(agent), path=opts.path) is None:
        print(
            f"rcd service: warning: {agent} is not found on PATH ({opts.path}); sessions "
            "will fail to start until it is (or pass --agent-bin)",
            file=sys.stderr,
        )


def _install(manager: _Manager, opts: ServiceOptions, args: argparse.Namespace) -> int:
    _check_startable(opts, args)
    content = manager.render(rcd_command())
    path = manager.path
    try:
        previous: bytes | None = path.read_bytes()
    except FileNotFoundError:
        previous = None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    _write_file(path, content)
    print(f"wrote {path}")
    manager.prepare()
    changed = previous is not None and previous != content
    if changed:
        print("the options changed: restarting the daemon (its running sessions end)")
    steps = manager.install_steps(changed=changed)
    if not _run_steps(manager, steps):
        print(f"{path} stays in place.", file=sys.stderr)
        return 1
    manager.report_installed()
    return 0


def _uninstall(manager: _Manager, opts: ServiceOptions) -> int:
    path = manager.path
    if not manager.is_installed():
        print(f"no rcd service is installed for {opts.directory} (no {path})")
        return 0
    remove = f"rm -f {shlex.quote(str(path))}"
    after = manager.after_removal_steps()
    if not _run_steps(manager, manager.stop_steps(), then=[remove, *map(shlex.join, after)]):
        print(f"{path} stays in place.", file=sys.stderr)
        return 1
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot remove {path}: {exc}") from exc
    print(f"stopped and removed {path}")
    return 0 if _run_steps(manager, after) else 1


def _status(manager: _Manager, opts: ServiceOptions) -> int:
    path = manager.path
    installed = path.exists()
    print(f"{'installed' if installed else 'not installed'}: {path} ({opts.directory})")
    rc = 0 if installed else 1
    for argv in manager.status_steps():
        ran = _run(argv)
        if ran.returncode is None:
            print(f"rcd service: {ran.describe()}", file=sys.stderr)
            return 1
        print(ran.output, end="" if ran.output.endswith("\n") or not ran.output else "\n")
        rc = rc or ran.returncode
    return rc


def _print_plan(manager: _Manager, action: str, rcd_argv: Sequence[str]) -> int:
    if action == "install":
        sys.stdout.write(manager.render(rcd_argv).decode())
        return 0
    steps = manager.status_steps() if action == "status" else manager.stop_steps()
    print(f"# {manager.path}")
    for argv in steps:
        print(shlex.join(argv))
    if action == "uninstall":
        print(f"rm -f {shlex.quote(str(manager.path))}")
        for argv in manager.after_removal_steps():
            print(shlex.join(argv))
    return 0


def run_service_command(args: argparse.Namespace) -> int:
    """Carry out a parsed ``rcd service ACTION``; returns the exit code.

    Errors (bad options, unwritable files, a failing systemctl/launchctl) are printed to
    stderr, naming what failed and what to run by hand; the result is then non-zero. A
    file written by ``install`` stays in place even when starting it failed.
    """
    try:
        platform = _platform(args)
        opts = service_options(args)
        manager: _Manager = _Systemd(opts) if platform == "linux" else _Launchd(opts)
        action: str = args.service_action
        if args.print_only:
            return _print_plan(manager, action, rcd_command())
        if action == "install":
            return _install(manager, opts, args)
        if action == "uninstall":
            return _uninstall(manager, opts)
        if action == "status":
            return _status(manager, opts)
        raise AssertionError(action)
    except DaemonError as exc:
        print(f"rcd service: {exc}", file=sys.stderr)
        return 1


def add_service_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``service install|uninstall|status [start options] [--print] [--platform P]``.

    The parsed namespace has ``command="service"`` (if the caller's dest is ``command``),
    ``service_action``, ``print_only``, ``platform`` and every start option; hand it to
    :func:`run_service_command`.
    """
    service = subparsers.add_parser(
        "service",
        help="run the daemon for a directory as a systemd/launchd user service",
        description="Install, remove or inspect a user service (a systemd user unit on Linux, "
        "a LaunchAgent on macOS) that runs `rcd start` with these options for DIR, starts it "
        "at login (at boot with lingering) and restarts it after a failure.",
    )
    actions = service.add_subparsers(dest="service_action", metavar="ACTION", required=True)
    for name, summary in (
        ("install", "write the service file, then enable and start it"),
        ("uninstall", "stop and disable the service, then remove its file"),
        ("status", "show whether the service file exists and what the manager says"),
    ):
        action = actions.add_parser(
            name, help=summary, description=summary[0].upper() + summary[1:]
        )
        add_start_options(action)
        action.add_argument(
            "--print",
            dest="print_only",
            action="store_true",
            help="print the service file (install) or the commands (uninstall, status); "
            "change nothing",
        )
        action.add_argument(
            "--platform",
            choices=["linux", "macos"],
            help="systemd (linux) or launchd (macos) (default: this machine's)",
        )
