"""Approval grants at the daemon (see :mod:`wire.grants`): taken, kept, revoked, and asked
whether they cover a permission request.

The daemon alone decides, by its own clock: a grant's end is its ``expires_at`` as this
machine counts time, whatever the relay's or the phone's clock says. Grants are kept with
the environment's settings (``daemon/settings.py``), so a restarted daemon still has them;
an expired one is dropped at the next look.

What a grant covers is deliberately narrow, and anything it cannot be sure of is asked:

* a tool that names a file must name one inside the grant's path, inside the session's
  directory, with symbolic links resolved (``src/link -> /etc`` is outside);
* Bash must be a simple command — none of ``; & | < > ` $ ( )`` or a new line — whose
  first words (split as the shell would) are the grant's command's;
* any other tool is covered by its name alone, unless the grant has a path or a command,
  which it then cannot check (asked).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from typing import Any

import wire

__all__ = ["FILE_TOOLS", "covers", "new_grant"]

#: Tools that name a file or directory, and the input key that names it.
FILE_TOOLS = {
    "Read": "file_path",
    "Edit": "file_path",
    "MultiEdit": "file_path",
    "Write": "file_path",
    "NotebookEdit": "notebook_path",
    "NotebookRead": "notebook_path",
    "Glob": "path",
    "Grep": "path",
    "LS": "path",
}
#: Glob's and Grep's inputs that are paths too (a pattern may name another directory).
PATTERN_KEYS = {"Glob": ("pattern",), "Grep": ("glob",)}
#: What no grant covers, anywhere in a session's directory, whatever its scope: files the
#: agent's CLI, git or the shell read as settings, hooks or code to run. A write there
#: would outlast the grant (``.claude/settings.local.json`` allowing Bash for good, a git
#: hook), so it is always asked, as Claude Code itself asks for its own settings.
PROTECTED = frozenset({".git", ".claude", ".mcp.json", ".envrc", ".rcd"})


def new_grant(grant_id: str, request: wire.GrantRequest, by: str, now: float) -> wire.Grant:
    """The grant ``request`` asks for, taken at ``now`` (the daemon's clock)."""
    return wire.Grant(
        id=grant_id,
        tools=sorted(set(request.tools)),
        path=wire.grants.normal_path(request.path),
        command=shlex.join(shlex.split(request.command)) if request.command else None,
        session_id=request.session_id,
        granted_at=now,
        expires_at=now + request.minutes * 60,
        by=by,
    )


def covers(
    grant: wire.Grant,
    *,
    session_id: str,
    cwd: str,
    tool: str,
    tool_input: Mapping[str, Any],
    now: float,
) -> bool:
    """Whether ``grant`` answers "allow" for ``tool`` with ``tool_input`` in session
    ``session_id``, whose directory is ``cwd``, at ``now``."""
    if now >= grant.expires_at or tool not in grant.tools:
        return False
    if grant.session_id is not None and grant.session_id != session_id:
        return False
    if tool in FILE_TOOLS:
        named = tool_input.get(FILE_TOOLS[tool])
        patterns = [tool_input.get(key) for key in PATTERN_KEYS.get(tool, ())]
        return _path_covered(grant, cwd, named, tool) and all(map(_inside_pattern, patterns))
    if tool == "Bash":
        return grant.path is None and _command_covered(grant.command, tool_input.get("command"))
    return grant.path is None and grant.command is None


def _path_covered(grant: wire.Grant, cwd: str, named: object, tool: str) -> bool:
    if named is None and tool in ("Glob", "Grep", "LS"):
        named = "."  # they search the session's directory when given no path
    if not isinstance(named, str) or not named or "\0" in named or grant.command is not None:
        return False
    top = os.path.realpath(cwd)
    target = os.path.realpath(os.path.join(top, os.path.expanduser(named)))
    scope = os.path.realpath(os.path.join(top, grant.path)) if grant.path else top
    if not (_within(target, top) and _within(scope, top) and _within(target, scope)):
        return False
    parts = os.path.relpath(target, top).split(os.sep)
    return not any(part.lower() in PROTECTED for part in parts)


def _inside_pattern(pattern: object) -> bool:
    """A glob pattern that stays below the directory it is searched from (or none)."""
    if pattern is None:
        return True
    if not isinstance(pattern, str) or pattern.startswith(("/", "~", "\\")):
        return False
    parts = pattern.replace("\\", "/").split("/")
    return ".." not in parts and not any(p.lower() in PROTECTED for p in parts)


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _command_covered(prefix: str | None, command: object) -> bool:
    if not isinstance(command, str) or not command.strip():
        return False
    if wire.grants.SHELL_SPECIAL & set(command):
        return False
    try:
        words = shlex.split(command)
        wanted = shlex.split(prefix) if prefix is not None else []
    except ValueError:  # unbalanced quotes: not a command it can judge
        return False
    return bool(words) and words[: len(wanted)] == wanted


def find(
    grants: list[wire.Grant],
    *,
    session_id: str,
    cwd: str,
    request: wire.PermissionRequest,
    now: float,
) -> wire.Grant | None:
    """The first grant that covers ``request`` (oldest first), or None."""
    for grant in grants:
        if covers(
            grant,
            session_id=session_id,
            cwd=cwd,
            tool=request.tool,
            tool_input=request.input,
            now=now,
        ):
            return grant
    return None


def in_force(grants: list[wire.Grant], now: float) -> list[wire.Grant]:
    return [g for g in grants if g.expires_at > now]
