"""``rcd start --sandbox``: what a session's agent may write and reach.

The policy: writes only in the session's directory (its worktree, and the git directories a
worktree commits into), the temp dir and the agent's own state; reads as the user; network
only to the hosts allowed (``--sandbox-allow-host``), none by default. The model API is the
agent's own traffic and stays open.

Claude Code enforces it itself, on every command it runs (its ``sandbox`` settings, passed
with ``--settings``; bubblewrap and socat on Linux, Seatbelt on macOS): see
:func:`claude_settings`. An agent without a sandbox of its own runs wrapped whole:
bubblewrap on Linux (:func:`bwrap_argv`), ``sandbox-exec`` on macOS (:func:`seatbelt_profile`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from .proxy import PROXY_PORT, serve_proxy

__all__ = [
    "SandboxPolicy",
    "bwrap_argv",
    "claude_settings",
    "git_dirs",
    "missing_tools",
    "seatbelt_profile",
    "wrap_argv",
    "wrapped",
]

#: What a sandbox needs on Linux: (Debian package, executable).
LINUX_TOOLS = (("bubblewrap", "bwrap"), ("socat", "socat"))


@attrs.frozen(kw_only=True)
class SandboxPolicy:
    """Whether sessions are sandboxed, and the hosts their commands may reach."""

    enabled: bool = False
    allow_hosts: tuple[str, ...] = ()

    def tightened(self, sandbox: bool | None) -> SandboxPolicy:
        """The policy for a session that asked for ``sandbox`` (None: as the environment):
        a session can turn the sandbox on, never off."""
        return attrs.evolve(self, enabled=True) if sandbox and not self.enabled else self


def missing_tools(
    platform: str = sys.platform, which: Callable[[str], str | None] = shutil.which
) -> list[str]:
    """The packages the sandbox needs here and lacks (Debian's names on Linux)."""
    if platform.startswith("linux"):
        return [package for package, binary in LINUX_TOOLS if which(binary) is None]
    if platform == "darwin":
        return [] if which("sandbox-exec") else ["sandbox-exec (part of macOS)"]
    return [f"a sandbox for {platform} (rcd knows Linux and macOS)"]


def git_dirs(cwd: str) -> list[str]:
    """The git directories a worktree at ``cwd`` writes to when it commits (none for a
    plain checkout: its ``.git`` is inside ``cwd``)."""
    marker = Path(cwd) / ".git"
    try:
        text = marker.read_text() if marker.is_file() else ""
    except OSError:
        return []
    if not text.startswith("gitdir:"):
        return []
    private = Path(text.removeprefix("gitdir:").strip())
    if not private.is_absolute():
        private = (Path(cwd) / private).resolve()
    # .git/worktrees/<name> → the repository's .git (objects, refs), which holds it.
    common = private.parent.parent
    return [str(common)] if common.name == ".git" or (common / "objects").is_dir() else []


def claude_settings(policy: SandboxPolicy, writable: Sequence[str] = ()) -> str:
    """The ``--settings`` JSON that makes Claude Code enforce ``policy`` on its commands:
    no way out of the sandbox (``allowUnsandboxedCommands``), and no start without it
    (``failIfUnavailable``)."""
    sandbox: dict[str, Any] = {
        "enabled": True,
        "failIfUnavailable": True,
        "allowUnsandboxedCommands": False,
        "network": {"allowedDomains": list(policy.allow_hosts)},
    }
    if writable:
        sandbox["filesystem"] = {"allowWrite": list(writable)}
        # The repository's hooks and config, which the daemon's own git (a merge or
        # commit from the phone, a snapshot) runs unsandboxed. The pinned CLI already
        # refuses those writes on its own (tested); said here, it does not rest on that.
        guards = _git_guards(writable)
        if guards:
            sandbox["filesystem"]["denyWrite"] = guards
    return json.dumps({"sandbox": sandbox}, separators=(",", ":"))


#: Inside the sandbox, before the agent: ``socat`` makes the proxy's socket ($1) the
#: proxy port on the sandbox's own loopback.
_BRIDGE = (
    'sock="$1"; shift; socat TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr'
    ' UNIX-CONNECT:"$sock" </dev/null >/dev/null 2>&1 &'
    # Listening before the agent starts (at most a second).
    " i=0; until [ -e /proc/net/tcp ] && grep -q ':{hex} 00000000:0000 0A' /proc/net/tcp"
    ' || [ $i -ge 50 ]; do sleep 0.02; i=$((i+1)); done; exec "$@"'
)


def _proxy_env(address: str) -> list[str]:
    url = f"http://{address}"
    return [f"{name}={url}" for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")]


def _git_guards(paths: Sequence[str]) -> list[str]:
    """What must stay read only inside writable ``paths``: a git directory's hooks and
    config, which the daemon's own git commands would run outside the sandbox."""
    guards = []
    for path in paths:
        for git_dir in (Path(path), Path(path) / ".git"):
            for name in ("hooks", "config"):
                if (git_dir / name).exists() and (git_dir / "HEAD").exists():
                    guards.append(str(git_dir / name))
    return guards


#: Variables that name a way out of the sandbox (a session bus, an SSH agent).
_WAYS_OUT = ("DBUS_SESSION_BUS_ADDRESS", "SSH_AUTH_SOCK", "NO_PROXY", "no_proxy")


def bwrap_argv(
    policy: SandboxPolicy,
    cwd: str,
    writable: Sequence[str] = (),
    *,
    proxy: str | None = None,
    readable: Sequence[str] = (),
    bwrap: str = "bwrap",
) -> list[str]:
    """The bubblewrap command that runs an agent under ``policy``: the whole system read
    only, private ``/tmp`` and ``/run`` (no one's sockets but its own), ``cwd`` and
    ``writable`` writable (their git hooks and config not), no capabilities even for root,
    network and pid namespaces of its own; with ``proxy`` (the Unix socket of
    :func:`spawn.proxy.serve_proxy`) that proxy as ``HTTP(S)_PROXY`` on its loopback, the
    one way out. ``readable``: what under ``/tmp`` it needs to see (its own program)."""
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    argv += ["--tmpfs", "/tmp", "--tmpfs", "/run"]
    for path in readable:
        argv += ["--ro-bind", path, path]
    for path in (cwd, *writable, *([proxy] if proxy else [])):
        argv += ["--bind", path, path]
    for path in _git_guards([cwd, *writable]):
        argv += ["--ro-bind", path, path]
    argv += ["--cap-drop", "ALL", "--unshare-net", "--unshare-pid"]
    argv += ["--die-with-parent", "--new-session", "--chdir", cwd]
    for name in _WAYS_OUT:
        argv += ["--unsetenv", name]
    if proxy is None:
        return [*argv, "--"]
    for pair in _proxy_env(f"127.0.0.1:{PROXY_PORT}"):
        argv += ["--setenv", *pair.split("=", 1)]
    bridge = _BRIDGE.format(port=PROXY_PORT, hex=f"{PROXY_PORT:04X}")
    return [*argv, "--", "sh", "-c", bridge, "sh", proxy]


def _quote(path: str) -> str:
    return json.dumps(path)  # a Seatbelt string literal is a JSON one


def seatbelt_profile(
    policy: SandboxPolicy, cwd: str, writable: Sequence[str] = (), proxy_port: int | None = None
) -> str:
    """The ``sandbox-exec -p`` profile that runs an agent under ``policy`` on macOS: writes
    in ``cwd``, ``writable`` and the temp dirs; out only to the proxy's port, if any."""
    paths = [cwd, *writable, "/private/tmp", "/private/var/folders"]
    lines = [
        "(version 1)",
        "(allow default)",
        "(deny file-write*)",
        "(allow file-write* "
        + " ".join(f"(subpath {_quote(p)})" for p in paths)
        + ' (literal "/dev/null") (literal "/dev/tty") (regex #"^/dev/fd/"))',
        "(deny network-outbound)",
    ]
    if proxy_port is not None:
        lines.append(f'(allow network-outbound (remote ip "localhost:{proxy_port}"))')
    return "\n".join(lines) + "\n"


def wrap_argv(
    policy: SandboxPolicy,
    cwd: str,
    writable: Sequence[str] = (),
    *,
    proxy: str | None = None,
    readable: Sequence[str] = (),
    platform: str = sys.platform,
) -> list[str]:
    """The words to put before an agent's command line to run it under ``policy``;
    ``proxy`` is where :func:`spawn.proxy.serve_proxy` serves (a socket's path on Linux,
    ``127.0.0.1:PORT`` on macOS)."""
    if platform == "darwin":
        port = int(proxy.rsplit(":", 1)[1]) if proxy else None
        env = ["env", *_proxy_env(proxy)] if proxy else []
        return [*env, "sandbox-exec", "-p", seatbelt_profile(policy, cwd, writable, port)]
    return bwrap_argv(policy, cwd, writable, proxy=proxy, readable=readable)


@asynccontextmanager
async def wrapped(
    policy: SandboxPolicy,
    cwd: str,
    writable: Sequence[str] = (),
    readable: Sequence[str] = (),
    platform: str = sys.platform,
) -> AsyncIterator[list[str]]:
    """:func:`wrap_argv` with its proxy (for ``allow_hosts``) serving while it lasts."""
    if not policy.allow_hosts:
        yield wrap_argv(policy, cwd, writable, readable=readable, platform=platform)
        return
    with tempfile.TemporaryDirectory(prefix="rcd-proxy-") as folder:
        async with trio.open_nursery() as nursery:
            path = None if platform == "darwin" else os.path.join(folder, "proxy.sock")
            proxy = await nursery.start(serve_proxy, path, policy.allow_hosts)
            yield wrap_argv(
                policy, cwd, writable, proxy=proxy, readable=readable, platform=platform
            )
            nursery.cancel_scope.cancel()
