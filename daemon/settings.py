"""The environment's settings set from clients (see :mod:`wire.settings`), kept by the daemon
in ``<config dir>/settings/<directory key>.json`` (mode 0600: it holds the variables' values).

What new sessions start with is, setting by setting: the command line's value when ``rcd
start`` was given that option (*pinned*: it wins, and cannot be changed from a client),
else the stored one when a client set it, else the command line's default.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

import wire
from spawn import AgentOptions
from spawn.sandbox import SandboxPolicy

from .errors import ConfigError
from .options import START_OPTIONS, StartOptions
from .paths import config_dir, directory_key, read_private_json, write_private_json

__all__ = ["EnvironmentSettings", "given_options", "settings_path"]

#: The newest changes kept (and shown).
MAX_CHANGES = 50
#: Setting → the ``rcd start`` options that pin it.
PINNED_BY = {
    "spawn": ("spawn",),
    "capacity": ("capacity",),
    "sandbox": ("sandbox", "no_sandbox"),
    "sandbox_allow_hosts": ("sandbox_allow_host",),
}


def settings_path(directory: Path) -> Path:
    return config_dir() / "settings" / f"{directory_key(directory)}.json"


def given_options(argv: Sequence[str]) -> frozenset[str]:
    """The ``rcd start`` options present in ``argv`` (by their field names), however
    written: ``--spawn x``, ``--spawn=x``, or a prefix argparse takes for it (``--cap``)."""
    given = set()
    for word in argv:
        if not word.startswith("--") or word == "--":
            continue
        name = word.split("=", 1)[0]
        exact = [o for o in START_OPTIONS if name in o.flags]
        found = exact or [o for o in START_OPTIONS if any(f.startswith(name) for f in o.flags)]
        if len(found) == 1:
            given.add(found[0].dest)
    return frozenset(given)


@attrs.define(kw_only=True)
class Stored:
    """What clients set (None: not set)."""

    env: dict[str, str] = attrs.Factory(dict)
    spawn: wire.Spawn | None = None
    permission_mode: wire.PermissionMode | None = None
    allowed_tools: list[str] | None = None
    sandbox: bool | None = None
    sandbox_allow_hosts: list[str] | None = None
    capacity: int | None = None
    changes: list[wire.SettingsChange] = attrs.Factory(list)


@attrs.define(eq=False)
class EnvironmentSettings:
    path: Path
    options: StartOptions
    #: The ``rcd start`` options given on its command line (:func:`given_options`).
    given: frozenset[str]
    stored: Stored = attrs.Factory(Stored)

    @classmethod
    def load(cls, options: StartOptions, given: frozenset[str]) -> EnvironmentSettings:
        """The settings kept for ``options.directory`` (none yet: all from the options).
        ConfigError naming the file when it cannot be read."""
        path = settings_path(options.directory)
        data = read_private_json(path, "environment settings")
        try:
            stored = wire.decode(Stored, data) if data else Stored()
        except wire.DecodeError as exc:
            raise ConfigError(f"{path} is not settings rcd can read: {exc}") from None
        return cls(path=path, options=options, given=given, stored=stored)

    @property
    def pinned(self) -> list[str]:
        return sorted(s for s, flags in PINNED_BY.items() if self.given & set(flags))

    def _pick(self, setting: str, from_options: Any) -> Any:
        stored = getattr(self.stored, setting)
        return from_options if setting in self.pinned or stored is None else stored

    @property
    def spawn(self) -> wire.Spawn:
        spawn: wire.Spawn = self._pick("spawn", self.options.spawn)
        return spawn

    @property
    def capacity(self) -> int:
        capacity: int = self._pick("capacity", self.options.capacity)
        return capacity

    @property
    def sandbox(self) -> SandboxPolicy:
        enabled = self._pick("sandbox", self.options.sandbox)
        hosts = self._pick("sandbox_allow_hosts", list(self.options.sandbox_allow_host))
        return SandboxPolicy(enabled=bool(enabled), allow_hosts=tuple(hosts))

    def agent_options(self) -> AgentOptions:
        """How new sessions' agents start."""
        return AgentOptions(
            sandbox=self.sandbox,
            permission_mode=self.stored.permission_mode,
            allowed_tools=tuple(self.stored.allowed_tools or ()),
        )

    def agent_env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` (the agents' environment) with the variables set here."""
        return {**base, **self.stored.env}

    def apply(self, update: wire.SettingsUpdate, by: str, now: float) -> list[str]:
        """Apply ``update`` and keep it; returns what changed. ConfigError (nothing
        applied) when it would change a pinned setting."""
        refused = [s for s in self.pinned if getattr(update, s) is not None]
        if refused:
            flags = ", ".join(f"--{s.replace('_', '-')}" for s in refused)
            raise ConfigError(
                f"{', '.join(refused)} set by the daemon's command line ({flags}): change it there"
            )
        changed = []
        for name, value in sorted((update.env or {}).items()):
            if value is None and self.stored.env.pop(name, None) is not None:
                changed.append(f"env {name}")
            elif value is not None and self.stored.env.get(name) != value:
                self.stored.env[name] = value
                changed.append(f"env {name}")
        for setting in ("spawn", "permission_mode", "allowed_tools", "sandbox", "capacity"):
            value = getattr(update, setting)
            if value is not None and value != getattr(self.stored, setting):
                setattr(self.stored, setting, value)
                changed.append(setting)
        hosts = update.sandbox_allow_hosts
        if hosts is not None and hosts != self.stored.sandbox_allow_hosts:
            self.stored.sandbox_allow_hosts = [h.lower() for h in hosts]
            changed.append("sandbox_allow_hosts")
        if changed:
            change = wire.SettingsChange(at=now, by=by, changed=changed)
            self.stored.changes = [*self.stored.changes, change][-MAX_CHANGES:]
            write_private_json(self.path, wire.encode(self.stored))
        return changed

    def view(self) -> wire.SettingsView:
        sandbox = self.sandbox
        return wire.SettingsView(
            env_names=sorted(self.stored.env),
            spawn=self.spawn,
            permission_mode=self.stored.permission_mode or "default",
            allowed_tools=list(self.stored.allowed_tools or []),
            sandbox=sandbox.enabled,
            sandbox_allow_hosts=list(sandbox.allow_hosts),
            capacity=self.capacity,
            pinned=self.pinned,
            changes=list(self.stored.changes),
        )
