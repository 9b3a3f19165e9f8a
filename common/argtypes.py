"""Argument types for argparse that more than one command uses (``rcd start``, ``rcd relay``):
each raises ``argparse.ArgumentTypeError`` with a sentence for the user."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil

__all__ = [
    "HOST_PATTERN",
    "base_url",
    "count",
    "host_pattern",
    "notify_command",
    "port",
    "positive_int",
    "positive_seconds",
    "seconds",
]

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
#: A name or address, or ``*.`` and a domain of two labels at least (``*.com`` is no host):
#: what ``--sandbox-allow-host`` and the settings' allowed hosts take.
HOST_PATTERN = rf"\*\.{_LABEL}(\.{_LABEL})+|{_LABEL}(\.{_LABEL})*"
_HOST = re.compile(HOST_PATTERN)


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1)


def count(text: str) -> int:
    """A whole number, 0 or more."""
    return _whole_number(text, 0)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number, not negative, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    value = seconds(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {value}")
    return value


def base_url(text: str) -> str:
    """An ``http(s)://host[:port]`` URL (a site's root: no path, query or fragment), without
    a trailing slash."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text.strip())
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a URL: {text!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"expected https://HOST[:PORT] (or http://), got {text!r}")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(
            f"the relay is served at a site's root: give https://HOST[:PORT] without a path,"
            f" got {text!r}"
        )
    return f"{parts.scheme}://{parts.netloc}"


def host_pattern(text: str) -> str:
    """A host name or IPv4 address, or ``*.`` and a domain (its every subdomain); no
    scheme, port or path."""
    host = text.strip().lower()
    if not _HOST.fullmatch(host) or len(host) > 253:
        raise argparse.ArgumentTypeError(
            f"expected a host such as api.example.com, 10.0.0.5 or *.example.com, got {text!r}"
        )
    return host


def notify_command(text: str) -> tuple[str, ...]:
    """A ``--notify-command`` value: words as a shell would split them (no shell runs
    them), its program found now rather than at the first notification."""
    try:
        words = tuple(shlex.split(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text!r} as a command: {exc}") from None
    if not words:
        raise argparse.ArgumentTypeError("the command is empty")
    if shutil.which(words[0]) is None:
        raise argparse.ArgumentTypeError(
            f"{words[0]!r} is not a program on PATH (nor an executable file)"
        )
    return words
