"""What ``rcd doctor`` checks, and ``rcd start`` (shortened) before it runs anything.

Each check returns :class:`Finding`s: ``ok``, a ``problem`` (and the fix), or a ``note``
(worth knowing, not wrong). They read this machine only, except :func:`check_relay`, which
asks the relay one question that changes nothing there. None of them raises.
"""

from __future__ import annotations

import email.utils
import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs

from common.commands import run
from common.dirs import config_dir
from spawn.sandbox import missing_tools

from .errors import ConfigError, DaemonError
from .paths import control_socket_path, load_credential, runtime_dir
from .transport import check_relay_url, rejection, tls_context, unreachable

if TYPE_CHECKING:
    import httpx

__all__ = [
    "last_line",
    "CLOCK_SKEW_LIMIT",
    "Finding",
    "MODEL_CREDENTIAL_VARIABLES",
    "Status",
    "check_agent",
    "check_credential",
    "check_git",
    "check_relay",
    "check_runtime_dir",
    "check_sandbox",
    "check_service_manager",
    "find_agent",
    "sandbox_missing_message",
]

Status = Literal["ok", "problem", "note"]

#: Variables that give Claude Code a model credential of their own.
MODEL_CREDENTIAL_VARIABLES = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
)
#: A clock further than this from the relay's makes access tokens look expired or not yet
#: valid (they live 15 minutes; the daemon renews them at 80 %).
CLOCK_SKEW_LIMIT = 60.0
_AGENT_INSTALL = "npm install -g @anthropic-ai/claude-code"
_AGENT_FIX = f"install Claude Code ({_AGENT_INSTALL}), or pass --agent-bin PATH"
_TIMEOUT = 20.0


@attrs.frozen(kw_only=True)
class Finding:
    #: What was checked: ``agent``, ``model credential``, ``git``, ``relay``, ``clock``,
    #: ``service manager``, ``runtime directory``.
    name: str
    status: Status
    #: What was found, in one sentence.
    detail: str
    #: How to put it right (problems and notes).
    fix: str | None = None


def find_agent(agent_bin: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The agent's executable (``--agent-bin``, else ``claude`` on PATH), or None."""
    name = agent_bin or "claude"
    path = (environ or os.environ).get("PATH")
    return shutil.which(os.path.expanduser(name), path=path)


def _agent_missing(agent_bin: str | None) -> str:
    name = agent_bin or "claude"
    where = "is not an executable" if "/" in name else "is not on PATH"
    return f"the agent's executable {name!r} {where}"


def agent_missing_message(agent_bin: str | None) -> str:
    """What ``rcd start`` says when the agent's executable is not found, and the fix."""
    return f"{_agent_missing(agent_bin)}: {_AGENT_FIX}"


def check_agent(agent_bin: str | None) -> Finding:
    """The agent's executable, and the version it reports."""
    found = find_agent(agent_bin)
    if found is None:
        return Finding(
            name="agent", status="problem", detail=_agent_missing(agent_bin), fix=_AGENT_FIX
        )
    done = run([found, "--version"], timeout=_TIMEOUT)
    if not done.ok:
        why = last_line(done.output) if done.returncode is not None else done.output
        return Finding(
            name="agent",
            status="problem",
            detail=f"{found} --version failed: {why}",
            fix=f"reinstall Claude Code ({_AGENT_INSTALL}), or pass --agent-bin PATH",
        )
    version = last_line(done.output) or "no version printed"
    return Finding(name="agent", status="ok", detail=f"{version} ({found})")


def sandbox_missing_message(missing: list[str]) -> str:
    """What ``rcd start --sandbox`` says when the sandbox's tools are not installed."""
    fix = (
        f"sudo apt install {' '.join(missing)} (Debian, Ubuntu; the packages have these"
        " names in Fedora and Arch too)"
        if all(" " not in m for m in missing)
        else "see docs/cli.md, --sandbox"
    )
    return f"--sandbox needs {' and '.join(missing)}, not installed here: {fix}"


def check_sandbox() -> Finding:
    """The tools ``--sandbox`` needs (:func:`spawn.sandbox.missing_tools`)."""
    missing = missing_tools()
    if missing:
        message = sandbox_missing_message(missing)
        detail, fix = message.split(": ", 1)
        return Finding(name="sandbox", status="problem", detail=detail, fix=fix)
    return Finding(name="sandbox", status="ok", detail="its tools are installed")


def check_credential(environ: Mapping[str, str], home: Path) -> Finding:
    """A model credential the agent will find: a key in the environment (or in the
    service's ``~/.config/rcd/env``), Bedrock or Vertex, or the CLI's own login."""
    service_env = config_dir() / "env"
    sources: list[tuple[Mapping[str, str], str]] = [(environ, "the environment")]
    service_vars = _read_env_file(service_env)
    if service_vars:
        sources.append((service_vars, f"{service_env} (the service's)"))
    for variables, where in sources:
        for name in MODEL_CREDENTIAL_VARIABLES:
            if variables.get(name, "").strip():
                return Finding(name="model credential", status="ok", detail=f"{name} in {where}")
        for name, what in (
            ("CLAUDE_CODE_USE_BEDROCK", "Amazon Bedrock"),
            ("CLAUDE_CODE_USE_VERTEX", "Google Vertex AI"),
        ):
            if variables.get(name, "").strip() not in ("", "0", "false"):
                return Finding(
                    name="model credential", status="ok", detail=f"{what} ({name} in {where})"
                )
    config = Path(environ.get("CLAUDE_CONFIG_DIR") or home / ".claude")
    login = config / ".credentials.json"
    if login.is_file():
        return Finding(
            name="model credential", status="ok", detail=f"the CLI's own login ({login})"
        )
    if sys.platform == "darwin":
        return Finding(
            name="model credential",
            status="note",
            detail="no API key set; the CLI's own login, if any, is in the macOS keychain",
            fix="if sessions fail to authenticate: run `claude` once and log in",
        )
    return Finding(
        name="model credential",
        status="problem",
        detail="no API key in the environment, no Bedrock or Vertex, no login of the CLI",
        fix="set ANTHROPIC_API_KEY (for `rcd service`: in ~/.config/rcd/env), or run `claude`"
        " once and log in, or set CLAUDE_CODE_USE_BEDROCK=1 / CLAUDE_CODE_USE_VERTEX=1 with"
        " their credentials",
    )


def check_git(directory: Path, spawn: str) -> Finding:
    """git, and for ``--spawn worktree`` a repository with a commit at ``directory``."""
    worktree = spawn == "worktree"
    git = shutil.which("git")
    if git is None:
        return Finding(
            name="git",
            status="problem" if worktree else "note",
            detail="git is not on PATH"
            + ("" if worktree else " (not needed for --spawn same-dir)"),
            fix="install git (apt-get install git, brew install git)",
        )
    done = run([git, "-C", str(directory), "rev-parse", "--show-toplevel"], timeout=_TIMEOUT)
    if not done.ok:
        return Finding(
            name="git",
            status="problem" if worktree else "ok",
            detail=f"{directory} is not in a git repository"
            + ("" if worktree else " (fine for --spawn same-dir)"),
            fix=f"git init {directory} and commit, or use --spawn same-dir" if worktree else None,
        )
    head = run(
        [git, "-C", str(directory), "rev-parse", "--verify", "--quiet", "HEAD"], timeout=_TIMEOUT
    )
    if not head.ok:
        return Finding(
            name="git",
            status="problem" if worktree else "ok",
            detail=f"the repository at {last_line(done.output)} has no commit yet",
            fix="commit once (a worktree starts from a commit)" if worktree else None,
        )
    return Finding(name="git", status="ok", detail=f"repository {last_line(done.output)}")


def check_runtime_dir(directory: Path) -> Finding:
    """The private directory of control sockets, and room for this directory's socket."""
    try:
        path = control_socket_path(directory)
        runtime_dir()
    except DaemonError as exc:
        return Finding(
            name="runtime directory",
            status="problem",
            detail=str(exc),
            fix="set XDG_RUNTIME_DIR to a directory of your own (mode 0700)",
        )
    if len(os.fsencode(path)) > 107:
        return Finding(
            name="runtime directory",
            status="problem",
            detail=f"the control socket's path is too long for a socket: {path}",
            fix="set XDG_RUNTIME_DIR to a shorter directory of your own (mode 0700)",
        )
    return Finding(name="runtime directory", status="ok", detail=str(path.parent))


def check_service_manager(user: str) -> Finding:
    """What ``rcd service install`` needs: systemd's user instance (and lingering) on
    Linux, launchd on macOS."""
    if sys.platform == "darwin":
        if shutil.which("launchctl") is None:
            return Finding(
                name="service manager", status="problem", detail="launchctl is not on PATH"
            )
        return Finding(name="service manager", status="ok", detail="launchd")
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return Finding(
            name="service manager",
            status="note",
            detail="no systemctl: `rcd service install` needs systemd",
            fix="run `rcd start` from your own init or a terminal multiplexer",
        )
    done = run([systemctl, "--user", "show-environment"], timeout=_TIMEOUT)
    if not done.ok:
        why = last_line(done.output) if done.returncode is not None else done.output
        return Finding(
            name="service manager",
            status="problem",
            detail=f"systemd's user instance does not answer ({why})",
            fix="run rcd from a login session (XDG_RUNTIME_DIR set, usually /run/user/UID),"
            f" or enable lingering: loginctl enable-linger {user}",
        )
    if not (Path("/var/lib/systemd/linger") / user).exists():
        return Finding(
            name="service manager",
            status="note",
            detail="systemd user instance; lingering is off: a service stops when you log out",
            fix=f"loginctl enable-linger {user}",
        )
    return Finding(name="service manager", status="ok", detail="systemd user instance, lingering")


def check_relay(
    relay: str | None,
    *,
    port: int,
    insecure_http: bool = False,
    ca_cert: Path | None = None,
) -> list[Finding]:
    """The relay: with ``relay``, reachable, this machine paired with it and the credential
    valid, and the clock close to the relay's; without, the embedded relay's port."""
    if relay is None:
        return [_embedded_port(port)]
    try:
        url = check_relay_url(relay, insecure_http=insecure_http)
        verify = tls_context(ca_cert) if url.startswith("https://") else True
    except ConfigError as exc:
        return [Finding(name="relay", status="problem", detail=str(exc))]
    credential = load_credential(url)
    if credential is None:
        return [
            Finding(
                name="relay",
                status="problem",
                detail=f"this machine is not paired with {url}",
                fix=f"rcd pair {url} CODE (a code from the relay's web app, or `rcd relay"
                " pair-code` on the relay's host)",
            )
        ]
    import httpx

    try:
        with httpx.Client(verify=verify, timeout=_TIMEOUT) as http:
            # A credential check that changes nothing: a token for an environment that
            # does not exist is refused, as not found once the credential is good.
            response = http.post(
                f"{url}/daemon/v1/environments/env_rcd_doctor/tokens",
                json={},
                headers={"Authorization": f"Bearer {credential}"},
            )
    except httpx.HTTPError as exc:
        failure = unreachable(url, exc, f"{type(exc).__name__}: {exc}")
        return [
            Finding(
                name="relay",
                status="problem",
                detail=str(failure),
                fix="check the URL and the network, and that the relay runs",
            )
        ]
    findings = [_credential_answer(url, response)]
    clock = _clock(url, response.headers.get("date"))
    if clock is not None:
        findings.append(clock)
    return findings


def _credential_answer(url: str, response: httpx.Response) -> Finding:
    if response.status_code in (403, 404):
        return Finding(name="relay", status="ok", detail=f"{url} knows this machine's credential")
    refused = rejection(response)
    if refused is not None and refused.status == 401:
        return Finding(
            name="relay",
            status="problem",
            detail=f"{url} refuses this machine's credential ({refused.code}: revoked?)",
            fix=f"pair again: rcd pair {url} CODE",
        )
    return Finding(
        name="relay",
        status="problem",
        detail=f"{url} answered {response.status_code}: {refused or 'not a relay?'}",
        fix="check the URL (the relay's base URL, as rcd pair was given)",
    )


def _clock(url: str, date: str | None) -> Finding | None:
    if not date:
        return None
    try:
        theirs = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return None
    skew = time.time() - theirs
    # The Date header has whole seconds: a second of it is rounding.
    if abs(skew) <= CLOCK_SKEW_LIMIT:
        return Finding(name="clock", status="ok", detail=f"within {abs(skew):.0f} s of {url}'s")
    side = "ahead of" if skew > 0 else "behind"
    return Finding(
        name="clock",
        status="problem",
        detail=f"this machine's clock is {abs(skew):.0f} s {side} {url}'s: access tokens"
        " would look expired or not yet valid",
        fix="turn on time synchronisation (timedatectl set-ntp true; on macOS: Settings >"
        " General > Date & Time)",
    )


def _embedded_port(port: int) -> Finding:
    import socket

    if port == 0:
        return Finding(name="relay", status="ok", detail="embedded, on a free port of 127.0.0.1")
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            taken = True
        else:
            taken = False
    if not taken:
        return Finding(
            name="relay",
            status="ok",
            detail=f"embedded, on 127.0.0.1:{port} (free): reachable from this machine only",
            fix="to reach it from a phone: --expose tailscale, or --public-url behind a proxy you"
            " run, or a relay you host (docs/phone.md)",
        )
    return Finding(
        name="relay",
        status="note",
        detail=f"127.0.0.1:{port} is taken (another `rcd start`, or another program)",
        fix="`rcd status DIR` tells whether rcd runs there; --relay-port 0 gives this"
        " directory an embedded relay of its own",
    )


def _read_env_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    variables = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name and not name.startswith("#"):
            variables[name.strip()] = value.strip().strip("'\"")
    return variables


def last_line(text: str) -> str:
    """The last non-blank line of ``text``, at most 200 characters."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
