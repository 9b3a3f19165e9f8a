"""An environment's settings, kept by its daemon and set from any signed-in client.

A client sends a :class:`SettingsUpdate` (``PUT /api/environments/{id}/settings``); the
relay hands it to the daemon as an :class:`UpdateSettings` directive; the daemon applies
it to the sessions it starts from then on, keeps it (0600, in its config dir), and reports
a :class:`SettingsView` (on every registration too), which the relay keeps and shows. The
values of environment variables go one way only: a view names them, never says them.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import attrs

from common.argtypes import HOST_PATTERN

from .events import Spawn
from .grants import GRANT_ID_PATTERN, Grant, GrantRequest

__all__ = [
    "ENV_NAME_PATTERN",
    "MAX_ENV_VARIABLES",
    "PermissionMode",
    "SettingsChange",
    "SettingsUpdate",
    "SettingsView",
    "UpdateSettings",
]

#: Claude Code's ``--permission-mode`` values a session may start in.
PermissionMode = Literal["default", "acceptEdits", "plan", "dontAsk"]
ENV_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,127}"
MAX_ENV_VARIABLES = 100
MAX_ENV_VALUE = 32 * 1024
MAX_ALLOWED_TOOLS = 100
#: Names a client may not set, in any case: rcd's own, and what decides which program runs
#: or where a program takes its configuration or code from (the agent's CLI itself runs
#: outside its sandbox: such a variable would be a way around ``--sandbox``).
RESERVED_ENV_NAMES = (
    "RCD_.*", "PATH", "HOME", "SHELL", "ENV", "BASH_ENV", "ZDOTDIR", "TMPDIR", "IFS",
    "PROMPT_COMMAND", "PS4", "LD_.*", "DYLD_.*", "NOTIFY_SOCKET", "LISTEN_.*", "CLAUDE_.*",
    "NODE_.*", "BUN_.*", "NPM_CONFIG_.*", "PYTHON.*", "PERL5.*", "RUBY.*", "GIT_.*", "XDG_.*",
    ".*_PROXY", "NO_PROXY", "SSL_CERT_.*",
)  # fmt: skip
RESERVED_ENV = re.compile("|".join(RESERVED_ENV_NAMES))


def _any_case(pattern: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in pattern)


#: The same, for a JSON Schema (whose patterns know no flags).
RESERVED_ENV_PATTERN = "|".join(_any_case(name) for name in RESERVED_ENV_NAMES)
#: A rule that starts with "-" would be read by the agent's CLI as an option of its own.
TOOL_RULE_PATTERN = r"(?!-)[^\n]*\S[^\n]*"
#: The largest capacity a client may set (a relay may allow fewer).
MAX_CAPACITY = 10_000
#: A field's JSON Schema when its validator says more than its type (the OpenAPI document).
SCHEMA_KEY = "rcd.schema"
_ENV_SCHEMA = {
    "anyOf": [
        {
            "type": "object",
            "maxProperties": MAX_ENV_VARIABLES,
            "propertyNames": {
                "pattern": f"^{ENV_NAME_PATTERN}$",
                "not": {"pattern": f"^(?:{RESERVED_ENV_PATTERN})$"},
            },
            "additionalProperties": {
                "anyOf": [
                    {"type": "string", "maxLength": MAX_ENV_VALUE, "pattern": "^[^\\u0000]*$"},
                    {"type": "null"},
                ]
            },
        },
        {"type": "null"},
    ]
}
_TOOLS_SCHEMA = {
    "anyOf": [
        {
            "type": "array",
            "maxItems": MAX_ALLOWED_TOOLS,
            "items": {"type": "string", "maxLength": 500, "pattern": f"^{TOOL_RULE_PATTERN}$"},
        },
        {"type": "null"},
    ]
}
_HOSTS_SCHEMA = {
    "anyOf": [
        {
            "type": "array",
            "items": {"type": "string", "maxLength": 253, "pattern": f"^(?:{HOST_PATTERN})$"},
        },
        {"type": "null"},
    ]
}


def _env(_: object, attribute: attrs.Attribute[Any], value: dict[str, str | None] | None) -> None:
    if value is None:
        return
    if len(value) > MAX_ENV_VARIABLES:
        raise ValueError(f"{attribute.name}: at most {MAX_ENV_VARIABLES} variables")
    for name, text in value.items():
        if not re.fullmatch(ENV_NAME_PATTERN, name):
            raise ValueError(f"{attribute.name}: {name!r} is not a variable name")
        if RESERVED_ENV.fullmatch(name.upper()):
            raise ValueError(f"{attribute.name}: {name} is not for settings to change")
        if text is not None and (len(text) > MAX_ENV_VALUE or "\0" in text):
            raise ValueError(f"{attribute.name}: the value of {name} is too long or has a NUL")


def _tools(_: object, attribute: attrs.Attribute[Any], value: list[str] | None) -> None:
    if value is None:
        return
    if len(value) > MAX_ALLOWED_TOOLS:
        raise ValueError(f"{attribute.name}: at most {MAX_ALLOWED_TOOLS} rules")
    for rule in value:
        if len(rule) > 500 or not re.fullmatch(TOOL_RULE_PATTERN, rule):
            raise ValueError(f"{attribute.name}: {rule[:40]!r} is not a tool rule")


def _hosts(_: object, attribute: attrs.Attribute[Any], value: list[str] | None) -> None:
    for host in value or []:
        if not re.fullmatch(HOST_PATTERN, host) or len(host) > 253:
            raise ValueError(f"{attribute.name}: {host!r} is not a host")


@attrs.frozen(kw_only=True)
class SettingsUpdate:
    """What a client changes; a field left out (None) stays as it is."""

    #: Variables for the agents of new sessions: a value sets one, ``null`` removes it.
    env: dict[str, str | None] | None = attrs.field(
        default=None, validator=_env, metadata={SCHEMA_KEY: _ENV_SCHEMA}
    )
    spawn: Spawn | None = None
    permission_mode: PermissionMode | None = None
    #: Tool rules the agent may use without asking (``--allowedTools``), e.g. ``Bash(git
    #: status)``; ``[]`` clears them.
    allowed_tools: list[str] | None = attrs.field(
        default=None, validator=_tools, metadata={SCHEMA_KEY: _TOOLS_SCHEMA}
    )
    sandbox: bool | None = None
    sandbox_allow_hosts: list[str] | None = attrs.field(
        default=None, validator=_hosts, metadata={SCHEMA_KEY: _HOSTS_SCHEMA}
    )
    capacity: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            [attrs.validators.ge(1), attrs.validators.le(MAX_CAPACITY)]
        ),
        metadata={
            SCHEMA_KEY: {
                "anyOf": [
                    {"type": "integer", "minimum": 1, "maximum": MAX_CAPACITY},
                    {"type": "null"},
                ]
            }
        },
    )


@attrs.frozen(kw_only=True)
class SettingsChange:
    at: float
    #: Who made it (the client's name: a device token's, or the browser's).
    by: str
    #: The settings it changed (``env FOO`` for a variable).
    changed: list[str]


@attrs.frozen(kw_only=True)
class SettingsView:
    """The settings new sessions start with, as the daemon applies them."""

    #: The variables set (their values are never shown).
    env_names: list[str]
    spawn: Spawn
    permission_mode: PermissionMode
    allowed_tools: list[str]
    sandbox: bool
    sandbox_allow_hosts: list[str]
    capacity: int
    #: Settings the daemon's command line sets (``rcd start --spawn ...``): they win over
    #: what is stored, and cannot be changed from here.
    pinned: list[str]
    #: The newest changes, oldest first.
    changes: list[SettingsChange]
    #: The last update the daemon took (:attr:`UpdateSettings.id`), and why it refused it
    #: (None: applied).
    last_update: str | None = None
    last_refusal: str | None = None
    #: The approval grants in force (:mod:`wire.grants`); left out when none.
    grants: list[Grant] = attrs.Factory(list)
    #: The agents a session may ask for (:attr:`wire.CreateSession.agent`), the default
    #: first (``rcd start --agent``, ``--allow-agent``); left out when none.
    agents: list[str] = attrs.Factory(list)


@attrs.frozen(kw_only=True)
class UpdateSettings:
    """Relay → daemon: apply ``update`` (asked for by ``origin``)."""

    type: Literal["update_settings"] = "update_settings"
    #: Echoed as :attr:`SettingsView.last_update` once the daemon took it.
    id: str
    update: SettingsUpdate
    origin: str = "relay"
    #: A grant to take (its id made by the relay), or one to revoke; each left out when
    #: None, and sent only to a daemon that listed ``grants`` in its features.
    grant: GrantRequest | None = None
    grant_id: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.matches_re(GRANT_ID_PATTERN)),
    )
    revoke_grant: str | None = None
