"""Approval grants: "allow Edit and Write under ``src/`` for 10 minutes".

A client asks for one (``POST /api/environments/{id}/grants``, a :class:`GrantRequest`);
the relay hands it to the daemon inside an :class:`~wire.settings.UpdateSettings`
directive; the daemon dates it by its own clock, keeps it with the environment's settings
and, until it expires or a client revokes it, answers "allow" for the permission requests
it covers without asking anyone. Each such answer is a ``permission_resolved`` event whose
``origin`` is ``grant`` and whose ``grant`` names it. The daemon reports the grants in force
in its :class:`~wire.settings.SettingsView`.

What a grant covers (decided at the daemon, see ``daemon/grants.py``): a request for one of
its ``tools``, of its session (or of any session of the environment); for a tool that
names a file (Read, Edit, Write, MultiEdit, NotebookEdit, Glob, Grep, LS) a path inside
``path`` under the session's directory, symbolic links resolved, never outside that
directory; for Bash a simple command (no ``;``, ``&``, ``|``, redirection, substitution or
new line) whose first words are ``command``'s.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from typing import Any

import attrs

__all__ = ["GRANT_ID_PATTERN", "Grant", "GrantRequest", "Grants"]

#: A tool's name as the agent gives it (``Write``, ``mcp__github__create_issue``).
TOOL_NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_.:-]{0,127}"
GRANT_ID_PATTERN = r"grt_[A-Za-z0-9_-]{1,64}"
MAX_TOOLS = 20
#: The longest a grant may last: a working day.
MAX_MINUTES = 12 * 60
MAX_PATH = 1024
MAX_COMMAND = 1024
#: The most grants in force at once in one environment.
MAX_GRANTS = 100
_SCHEMA = "rcd.schema"
#: What makes a shell command more than one simple command (or a word computed): a Bash
#: command holding any of these is never covered, and a grant's prefix may hold none.
SHELL_SPECIAL = frozenset(";&|<>`$(){}\n\r")


def _tools(_: object, attribute: attrs.Attribute[Any], value: list[str]) -> None:
    if not 1 <= len(value) <= MAX_TOOLS:
        raise ValueError(f"{attribute.name}: name 1 to {MAX_TOOLS} tools")
    for name in value:
        if not re.fullmatch(TOOL_NAME_PATTERN, name):
            raise ValueError(f"{attribute.name}: {name[:40]!r} is not a tool name")


def _path(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    value = value.strip()  # as it is kept (normal_path)
    if len(value) > MAX_PATH or "\0" in value or "\\" in value:
        raise ValueError(f"{attribute.name}: {value[:40]!r} is not a path")
    if value.startswith("/") or value.startswith("~"):
        raise ValueError(
            f"{attribute.name}: {value[:40]!r} must be relative to the session's directory"
        )
    normal = posixpath.normpath(value)
    if normal == ".." or normal.startswith("../"):
        raise ValueError(f"{attribute.name}: {value[:40]!r} leads out of the session's directory")


def _command(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    if len(value) > MAX_COMMAND or "\0" in value:
        raise ValueError(f"{attribute.name}: {value[:40]!r} is not a command prefix")
    if SHELL_SPECIAL & set(value):
        raise ValueError(
            f"{attribute.name}: {value[:40]!r} holds shell syntax (; & | < > ` $ ( ) {{ }}"
            " or a new line): a grant covers a simple command's first words"
        )
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"{attribute.name}: {value[:40]!r} does not split: {exc}") from None
    if not words:
        raise ValueError(f"{attribute.name}: {value[:40]!r} is not a command prefix")


def normal_path(path: str | None) -> str | None:
    """``path`` as a grant keeps it: normalised, ``None`` for the whole directory."""
    if path is None:
        return None
    normal = posixpath.normpath(path.strip())
    return None if normal in (".", "") else normal


@attrs.frozen(kw_only=True)
class GrantRequest:
    """What a client asks for."""

    #: The tools it allows (exact names: ``["Edit", "Write"]``).
    tools: list[str] = attrs.field(
        validator=_tools,
        metadata={
            _SCHEMA: {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_TOOLS,
                "items": {"type": "string", "pattern": f"^{TOOL_NAME_PATTERN}$"},
            }
        },
    )
    #: How long it lasts, counted by the daemon's clock from when the daemon takes it.
    minutes: int = attrs.field(
        validator=[attrs.validators.ge(1), attrs.validators.le(MAX_MINUTES)],
        metadata={_SCHEMA: {"type": "integer", "minimum": 1, "maximum": MAX_MINUTES}},
    )
    #: For tools that name a file: a directory or file, relative to the session's
    #: directory, that the file must be in (``src/``); None: anywhere in that directory.
    path: str | None = attrs.field(default=None, validator=_path)
    #: For Bash: the words a command must start with (``git status``); None: any command.
    command: str | None = attrs.field(default=None, validator=_command)
    #: The one session it is for; None: every session of the environment.
    session_id: str | None = None


@attrs.frozen(kw_only=True)
class Grant:
    """A grant in force, as the daemon keeps it."""

    id: str = attrs.field(validator=attrs.validators.matches_re(GRANT_ID_PATTERN))
    tools: list[str]
    path: str | None
    command: str | None
    session_id: str | None
    #: When the daemon took it and when it ends, by the daemon's clock (Unix seconds).
    granted_at: float
    expires_at: float
    #: Who asked for it (the client's name).
    by: str

    def describe(self) -> str:
        """One line for people: ``Edit, Write under src for 10 min``."""
        what = ", ".join(self.tools)
        if self.path is not None:
            what += f" under {self.path}"
        if self.command is not None:
            what += f" for commands starting {self.command!r}"
        where = f" in session {self.session_id}" if self.session_id else ""
        minutes = max(1, round((self.expires_at - self.granted_at) / 60))
        return f"{what}{where} for {minutes} min"


@attrs.frozen(kw_only=True)
class Grants:
    """``GET /api/environments/{id}/grants``: the grants in force, newest last."""

    grants: list[Grant]
