"""The options of ``rcd start``, defined once.

:class:`StartOptions` is the one source: each field is an option, with its flag, help,
default, parser and how a service writes it back (:func:`option`). ``rcd start`` and
``rcd service install`` build their parsers from it (:func:`add_start_options`), ``rcd
start`` reads the parsed arguments into it (:meth:`StartOptions.from_args`), and a service
renders them back into its command line (:func:`start_args`).

Adding an option to ``rcd start`` is one field here, plus the code that uses it (and its line
in docs/cli.md): the parsers, the service files and the daemon's options follow.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Self

import attrs

from common.argtypes import (
    base_url,
    count,
    host_pattern,
    notify_command,
    port,
    positive_int,
    positive_seconds,
    seconds,
)
from common.options import Option, add_options, option, option_words, options_of

from .errors import ConfigError
from .paths import normalise_relay_url
from .transport import CA_CERT_HELP, INSECURE_HTTP_HELP, check_relay_url

if TYPE_CHECKING:
    import wire

__all__ = [
    "START_OPTIONS",
    "StartOption",
    "StartOptions",
    "add_start_options",
    "count",
    "port",
    "positive_int",
    "positive_seconds",
    "seconds",
    "start_args",
]


SANDBOX_CONFLICT = "--sandbox and --no-sandbox say opposite things: give one"
#: Agents that speak the Agent Client Protocol, and the command each runs.
ACP_PRESETS: dict[str, tuple[str, ...]] = {
    "claude-acp": ("claude-agent-acp",),
    "codex": ("codex-acp",),
    "gemini": ("gemini", "--acp"),
}
AGENTS = ("claude", *ACP_PRESETS, "acp")


def agent_program(name: str) -> str:
    """The program agent ``name`` runs: ``claude``, or an ACP preset's first word."""
    return "claude" if name == "claude" else ACP_PRESETS[name][0]


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _absolute(value: Path) -> str:
    # The service runs in DIR, not where `rcd service install` ran: pin relative paths now.
    return str(Path(value).expanduser().absolute())


def _executable(value: str) -> str:
    # A bare name ("claude") is looked up on the service's PATH; a path is pinned.
    return _absolute(Path(value)) if "/" in value or value.startswith("~") else value


@attrs.frozen(kw_only=True)
class StartOptions:
    """Everything ``rcd start`` is told: ``DIR`` and one field per option."""

    directory: Path = Path(".")
    #: The options its command line gave (field names; :func:`daemon.settings.given_options`):
    #: they pin the settings they set.
    given: frozenset[str] = frozenset()
    relay: str | None = option(
        "--relay",
        metavar="URL",
        help="relay to register with (pair first: rcd pair)",
        render=normalise_relay_url,
    )
    #: Allow plain ``http://`` to a relay that is not on this machine (warned at each start).
    insecure_http: bool = option(
        "--insecure-http",
        store_true=True,
        help="with --relay (or relay in config.toml): " + INSECURE_HTTP_HELP,
    )
    #: CA certificates (PEM) trusted for the relay's TLS certificate, besides the usual ones.
    ca_cert: Path | None = option(
        "--ca-cert",
        parse=Path,
        metavar="PATH",
        help="with an https:// relay: " + CA_CERT_HELP,
        render=_absolute,
    )
    name: str | None = option(
        "--name", help="environment name shown in the app (default: DIR@hostname)"
    )
    spawn: wire.Spawn = option(
        "--spawn",
        choices=("same-dir", "worktree"),
        default="same-dir",
        help="where sessions run (default: same-dir)",
    )
    capacity: int = option(
        "--capacity",
        parse=positive_int,
        default=32,
        metavar="N",
        help="most sessions at once; more are refused with at_capacity (default: 32)",
    )
    #: Spare worktrees kept ready (``--spawn worktree``); None: as many as the capacity.
    spare_worktrees: int | None = option(
        "--spare-worktrees",
        parse=count,
        metavar="N",
        help=(
            "with --spawn worktree, worktrees kept checked out ahead of need in .rcd/pool,"
            " so a session starts without waiting for git; made one at a time at the lowest"
            " CPU priority, never more than a quarter of the free disk; 0 = none"
            " (default: the capacity)"
        ),
    )
    agent: str = option(
        "--agent",
        default="claude",
        choices=AGENTS,
        help=(
            "agent to run: claude (Claude Code's CLI, stream-json), or one speaking the Agent"
            " Client Protocol: claude-acp (claude-agent-acp), codex (codex-acp), gemini"
            " (gemini --acp), or acp with its command after `--` (rcd start --agent acp --"
            " CMD ARGS...); --agent-bin replaces a preset's program (default: claude)"
        ),
    )
    allow_agent: tuple[str, ...] = option(
        "--allow-agent",
        repeat=True,
        choices=("claude", *ACP_PRESETS),
        metavar="NAME",
        help=(
            "another agent a session may ask for (the web app offers them at New session;"
            ' the API\'s create body takes "agent"), found on PATH: claude or an ACP preset;'
            " repeat for more (default: only --agent)"
        ),
        render=str,
    )
    agent_bin: str | None = option(
        "--agent-bin",
        metavar="PATH",
        help="the agent's executable (default: found on PATH)",
        render=_executable,
    )
    #: Start even when the agent's executable is not found (each session then ends with
    #: ``agent_not_found``).
    no_agent_check: bool = option(
        "--no-agent-check",
        store_true=True,
        help="start even if the agent's executable is not found now (installed later, or"
        " on a PATH only the sessions get)",
    )
    sandbox: bool = option(
        "--sandbox",
        store_true=True,
        help="run each session's agent sandboxed: its commands write only in the session's"
        " directory (its worktree) and temp dir, and reach only the hosts of"
        " --sandbox-allow-host (Claude Code's own sandbox; on Linux it needs bubblewrap and"
        " socat). Default: off, as in Claude Code; a session can still ask for it",
    )
    no_sandbox: bool = option(
        "--no-sandbox",
        store_true=True,
        help="no sandbox for the environment (the default; a session may ask for one)",
    )
    sandbox_allow_host: tuple[str, ...] = option(
        "--sandbox-allow-host",
        parse=host_pattern,
        repeat=True,
        metavar="HOST",
        help="a host sandboxed commands may reach (a name, an address, or *.domain; give it"
        " again for more). Default: none (the agent's model API is its own, not theirs)",
    )
    #: Send finished messages only (no replies as they are written).
    no_stream: bool = option(
        "--no-stream",
        store_true=True,
        help="send the agent's messages only once finished, not as they are written (less"
        " traffic to the phone; the session log is the same either way)",
    )
    outage_timeout: float = option(
        "--outage-timeout",
        parse=seconds,
        default=600.0,
        metavar="S",
        help="exit non-zero after the relay is unreachable this long; 0 = never (default: 600)",
        render=_format_seconds,
    )
    stop_timeout: float = option(
        "--stop-timeout",
        parse=seconds,
        default=10.0,
        metavar="S",
        help="deadline for ending every session on stop (default: 10)",
        render=_format_seconds,
        always=True,
    )
    relay_port: int = option(
        "--relay-port",
        parse=port,
        default=7878,
        metavar="PORT",
        help="port of the embedded relay (default: 7878; 0 picks a free one)",
    )
    expose: str | None = option(
        "--expose",
        choices=("tailscale", "lan"),
        metavar="tailscale|lan",
        help="embedded relay only: publish it where a phone can open it, with TLS:"
        " 'tailscale' serves it on this machine's tailnet name (tailscale serve), undone on"
        " stop; 'lan' on this machine's network address with a certificate of its own (made"
        " once, its fingerprint shown by the QR code) (see docs/phone.md)",
    )
    public_url: str | None = option(
        "--public-url",
        parse=base_url,
        metavar="URL",
        help="embedded relay only: the https://HOST[:PORT] a reverse proxy or tunnel you run"
        " (Caddy, nginx, tailscale serve, cloudflared) publishes it at; the sign-in link and"
        " QR code use it (see docs/phone.md)",
    )
    notify_command: tuple[str, ...] | None = option(
        "--notify-command",
        parse=notify_command,
        metavar="CMD",
        help="embedded relay only: run CMD for every notification (a permission request, a"
        " long turn, an error, a session that ended by itself, a machine offline), with it as"
        " JSON on its standard input, to route them to ntfy or a chat webhook; CMD is split"
        " as a shell would, not run by one",
        render=shlex.join,
    )
    relay_data_dir: Path | None = option(
        "--relay-data-dir",
        parse=Path,
        metavar="DIR",
        help="data directory of the embedded relay (default: ~/.local/share/rcd/relay)",
        render=_absolute,
    )
    verbose: bool = option("--verbose", "-v", store_true=True, help="log more")
    #: ``--agent acp -- CMD ARGS...``: the words after the first ``--`` (not an option).
    agent_command: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    @property
    def spares(self) -> int:
        """Spare worktrees to keep ready: ``--spare-worktrees``, else the capacity."""
        return self.capacity if self.spare_worktrees is None else self.spare_worktrees

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Self:
        """The options parsed by a parser :func:`add_start_options` built."""
        values = {o.dest: getattr(args, o.dest) for o in options_of(cls)}
        if values.get("sandbox") and values.get("no_sandbox"):
            raise ConfigError(SANDBOX_CONFLICT)
        command = tuple(getattr(args, "agent_command", None) or ())
        if values.get("agent") == "acp" and not command:
            raise ConfigError(
                "--agent acp needs the agent's command after `--`: rcd start"
                " --agent acp -- CMD ARGS..."
            )
        if command and values.get("agent") != "acp":
            raise ConfigError(
                f"words after `--` ({shlex.join(command)[:80]}) are the command of --agent acp"
            )
        if command and values.get("agent_bin"):
            raise ConfigError(
                "--agent-bin replaces a preset's program; with --agent acp the program is"
                " the first word after `--`"
            )
        if command and "/" in command[0] and not os.path.isabs(command[0]):
            # Sessions start in their own directories: a relative program is made
            # absolute from where rcd start was run.
            command = (os.path.abspath(os.path.expanduser(command[0])), *command[1:])
        return cls(directory=args.directory, agent_command=command, **values)

    @property
    def agents(self) -> list[str]:
        """The agents sessions may ask for, the default first."""
        return list(dict.fromkeys([self.agent, *self.allow_agent]))

    def agent_argv(self) -> list[str]:
        """The command of an ACP agent (--agent other than claude), --agent-bin first."""
        argv = list(self.agent_command) if self.agent == "acp" else list(ACP_PRESETS[self.agent])
        if self.agent_bin and self.agent != "acp":
            argv[0] = self.agent_bin
        return argv


START_OPTIONS: tuple[Option, ...] = options_of(StartOptions)
StartOption = Option


def add_start_options(parser: argparse.ArgumentParser) -> None:
    """Add ``[DIR]`` and every option of ``rcd start``, with its type, choices and default."""
    parser.add_argument(
        "directory",
        nargs="?",
        default=".",
        type=Path,
        metavar="DIR",
        help="the project directory (default: the current one)",
    )
    add_options(parser, START_OPTIONS)


def start_args(args: argparse.Namespace, *, command_needed: bool = True) -> list[str]:
    """The start options in ``args`` as ``--flag=value`` words (not ``start``, not DIR,
    not ``--agent acp``'s command: :attr:`StartOptions.agent_command`).

    Raises :class:`ConfigError` for a value ``rcd start`` would refuse (a bad relay URL,
    plain HTTP to another machine without ``--insecure-http``, ``--agent acp`` without its
    command unless not ``command_needed``).
    """
    if getattr(args, "relay", None):
        check_relay_url(args.relay, insecure_http=bool(getattr(args, "insecure_http", False)))
    problem = publishing_conflict(args)
    if problem is not None:
        raise ConfigError(problem)
    if getattr(args, "sandbox", False) and getattr(args, "no_sandbox", False):
        raise ConfigError(SANDBOX_CONFLICT)
    if getattr(args, "agent_command", None) or (
        getattr(args, "agent", None) == "acp" and command_needed
    ):
        StartOptions.from_args(args)  # --agent acp and its command go together
    return option_words(args, START_OPTIONS)


def publishing_conflict(options: object) -> str | None:
    """Why ``--expose`` / ``--public-url`` / ``--notify-command`` cannot go with the other
    options (None: they can): each is about the embedded relay (``options``: StartOptions,
    or the parsed command line)."""
    relay, expose = getattr(options, "relay", None), getattr(options, "expose", None)
    public_url = getattr(options, "public_url", None)
    if expose is not None and (relay or public_url):
        return f"--expose {expose} publishes the embedded relay: it means nothing with" + (
            " --relay (a relay you host is published by its own)"
            if relay
            else " --public-url (which says where you published it yourself): pick one"
        )
    if relay is not None and public_url is not None:
        return (
            "--public-url is for the embedded relay; a relay you host is published by its"
            " own: rcd relay --public-url URL"
        )
    if relay is not None and getattr(options, "notify_command", None):
        return (
            "--notify-command is for the embedded relay; a relay you host runs its own:"
            " rcd relay --notify-command CMD"
        )
    return None
