"""The options of ``rcd start``, defined once: ``rcd start`` and ``rcd service install``
accept exactly the same ones, and a service renders them back into its command line."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from common.argtypes import count, port, positive_int, positive_seconds, seconds

from .paths import normalise_relay_url
from .transport import CA_CERT_HELP, INSECURE_HTTP_HELP, check_relay_url

__all__ = [
    "START_OPTIONS",
    "StartOption",
    "add_start_options",
    "count",
    "port",
    "positive_int",
    "positive_seconds",
    "seconds",
    "start_args",
]


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _absolute(value: Path) -> str:
    # The service runs in DIR, not where `rcd service install` ran: pin relative paths now.
    return str(Path(value).expanduser().absolute())


def _executable(value: str) -> str:
    # A bare name ("claude") is looked up on the service's PATH; a path is pinned.
    return _absolute(Path(value)) if "/" in value or value.startswith("~") else value


@attrs.frozen(kw_only=True)
class StartOption:
    """One option of ``rcd start``: how argparse reads it and how a service passes it on."""

    flags: tuple[str, ...]
    help: str
    default: Any = None
    parse: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    store_true: bool = False
    always: bool = False
    """Written into the service even at its default (the service's stop deadline uses it)."""
    render: Callable[[Any], str] = str

    @property
    def dest(self) -> str:
        return self.flags[0].removeprefix("--").replace("-", "_")


START_OPTIONS: tuple[StartOption, ...] = (
    StartOption(
        flags=("--relay",),
        metavar="URL",
        help="relay to register with (pair first: rcd pair)",
        render=normalise_relay_url,
    ),
    StartOption(
        flags=("--insecure-http",),
        store_true=True,
        help="with --relay (or relay in config.toml): " + INSECURE_HTTP_HELP,
    ),
    StartOption(
        flags=("--ca-cert",),
        parse=Path,
        metavar="PATH",
        help="with an https:// relay: " + CA_CERT_HELP,
        render=_absolute,
    ),
    StartOption(
        flags=("--name",), help="environment name shown in the app (default: DIR@hostname)"
    ),
    StartOption(
        flags=("--spawn",),
        choices=("same-dir", "worktree"),
        default="same-dir",
        help="where sessions run (default: same-dir)",
    ),
    StartOption(
        flags=("--capacity",),
        parse=positive_int,
        default=32,
        metavar="N",
        help="most sessions at once; more are refused with at_capacity (default: 32)",
    ),
    StartOption(
        flags=("--spare-worktrees",),
        parse=count,
        metavar="N",
        help=(
            "with --spawn worktree, worktrees kept checked out ahead of need in .rcd/pool,"
            " so a session starts without waiting for git; made one at a time at the lowest"
            " CPU priority, never more than a quarter of the free disk; 0 = none"
            " (default: the capacity)"
        ),
    ),
    StartOption(
        flags=("--agent",),
        default="claude",
        choices=("claude",),
        help="agent to run (default: claude)",
    ),
    StartOption(
        flags=("--agent-bin",),
        metavar="PATH",
        help="the agent's executable (default: found on PATH)",
        render=_executable,
    ),
    StartOption(
        flags=("--outage-timeout",),
        parse=seconds,
        default=600.0,
        metavar="S",
        help="exit non-zero after the relay is unreachable this long; 0 = never (default: 600)",
        render=_format_seconds,
    ),
    StartOption(
        flags=("--stop-timeout",),
        parse=seconds,
        default=10.0,
        metavar="S",
        help="deadline for ending every session on stop (default: 10)",
        render=_format_seconds,
        always=True,
    ),
    StartOption(
        flags=("--relay-port",),
        parse=port,
        default=7878,
        metavar="PORT",
        help="port of the embedded relay (default: 7878; 0 picks a free one)",
    ),
    StartOption(
        flags=("--relay-data-dir",),
        parse=Path,
        metavar="DIR",
        help="data directory of the embedded relay (default: ~/.local/share/rcd/relay)",
        render=_absolute,
    ),
    StartOption(flags=("--verbose", "-v"), store_true=True, help="log more"),
)


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
    for option in START_OPTIONS:
        if option.store_true:
            parser.add_argument(*option.flags, action="store_true", help=option.help)
            continue
        kwargs: dict[str, Any] = {"help": option.help}
        if option.default is not None:
            kwargs["default"] = option.default
        if option.parse is not None:
            kwargs["type"] = option.parse
        if option.choices is not None:
            kwargs["choices"] = list(option.choices)
        if option.metavar is not None:
            kwargs["metavar"] = option.metavar
        parser.add_argument(*option.flags, **kwargs)


def start_args(args: argparse.Namespace) -> list[str]:
    """The start options in ``args`` as ``--flag=value`` words (not ``start``, not DIR).

    Options left at their default are omitted, except those marked ``always``. The
    ``--flag=value`` form keeps a value that starts with '-' from reading as an option.
    Raises :class:`ConfigError` for a value ``rcd start`` would refuse (a bad relay URL,
    plain HTTP to another machine without ``--insecure-http``).
    """
    if getattr(args, "relay", None):
        check_relay_url(args.relay, insecure_http=bool(getattr(args, "insecure_http", False)))
    words: list[str] = []
    for option in START_OPTIONS:
        value = getattr(args, option.dest)
        if option.store_true:
            if value:
                words.append(option.flags[0])
        elif value is not None and (option.always or value != option.default):
            words.append(f"{option.flags[0]}={option.render(value)}")
    return words
