"""``rcd service install|uninstall|status``: run ``rcd start`` as a user service.

On Linux a systemd user unit ``rcd-<slug>.service`` (from ``systemd/rcd.service.in``), on
macOS a LaunchAgent ``org.rcd.daemon.<slug>`` (from ``launchd/org.rcd.daemon.plist.in``),
one per project directory. The service manager runs the daemon in the foreground (it never
forks), restarts it after a failure, and stops it with SIGTERM and a deadline above
``--stop-timeout``. Everything here is synchronous: it is a command, not part of the daemon.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from daemon.errors import ConfigError, DaemonError, NotPaired
from daemon.options import agent_program
from daemon.paths import default_relay, load_credential, normalise_relay_url

from .launchd import Launchd
from .manager import Manager, run
from .options import ServiceOptions, rcd_command, service_options
from .systemd import Systemd

__all__ = ["Platform", "run_service_command"]

Platform = Literal["linux", "macos"]


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


def _run_steps(manager: Manager, steps: list[list[str]], then: Sequence[str] = ()) -> bool:
    """Run ``steps`` in order. On the first failure say what failed and what to run by hand
    (that step, the rest, then ``then``) and return False."""
    for i, argv in enumerate(steps):
        ran = run(argv)
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
    if opts.agent_command:
        default, hint = opts.agent_command[0], "the first word after `--`"
    else:
        default, hint = args.agent_bin or agent_program(args.agent), "--agent-bin"
    if shutil.which(os.path.expanduser(default), path=opts.path) is None:
        print(
            f"rcd service: warning: {default} is not found on PATH ({opts.path}); sessions "
            f"will fail to start until it is (or name it with its path: {hint})",
            file=sys.stderr,
        )
    for other in getattr(args, "allow_agent", None) or ():
        program = agent_program(other)
        if shutil.which(program, path=opts.path) is None:
            # rcd start refuses then: the service would only restart again and again.
            raise ConfigError(
                f"--allow-agent {other}: its program {program!r} is not on the service's PATH"
                f" ({opts.path}): install it, or leave it out"
            )


def _install(manager: Manager, opts: ServiceOptions, args: argparse.Namespace) -> int:
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


def _uninstall(manager: Manager, opts: ServiceOptions) -> int:
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


def _status(manager: Manager, opts: ServiceOptions) -> int:
    path = manager.path
    installed = path.exists()
    print(f"{'installed' if installed else 'not installed'}: {path} ({opts.directory})")
    rc = 0 if installed else 1
    for argv in manager.status_steps():
        ran = run(argv)
        if ran.returncode is None:
            print(f"rcd service: {ran.describe()}", file=sys.stderr)
            return 1
        print(ran.output, end="" if ran.output.endswith("\n") or not ran.output else "\n")
        rc = rc or ran.returncode
    return rc


def _print_plan(manager: Manager, action: str, rcd_argv: Sequence[str]) -> int:
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
        manager: Manager = Systemd(opts) if platform == "linux" else Launchd(opts)
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
