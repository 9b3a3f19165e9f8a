"""The environment's settings set from clients (see :mod:`wire.settings`), kept by the daemon
in ``<config dir>/settings/<directory key>.json`` (mode 0600: it holds the variables' values).

What new sessions start with is, setting by setting: the command line's value when ``rcd
start`` was given that option (*pinned*: it wins, and cannot be changed from a client),
else the stored one when a client set it, else the command line's default.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import structlog
import trio

import wire
from spawn import AgentOptions
from spawn.sandbox import SandboxPolicy, missing_tools
from worktrees import WorktreeError, Worktrees

from . import grants
from .errors import ConfigError, DaemonError
from .options import START_OPTIONS, StartOptions
from .paths import config_dir, directory_key, read_private_json, write_private_json
from .relay_client import RelayClient
from .supervisor import Supervisor

__all__ = ["EnvironmentSettings", "SettingsKeeper", "given_options", "settings_path"]

log = structlog.get_logger("daemon.settings")

#: The newest changes kept (and shown).
MAX_CHANGES = 50
#: Setting → the ``rcd start`` options that pin it.
PINNED_BY = {
    "spawn": ("spawn",),
    "capacity": ("capacity",),
    "sandbox": ("sandbox", "no_sandbox"),
    # The owner who said --sandbox (or --no-sandbox) said which hosts too: none, or these.
    "sandbox_allow_hosts": ("sandbox_allow_host", "sandbox", "no_sandbox"),
}


def settings_path(directory: Path) -> Path:
    return config_dir() / "settings" / f"{directory_key(directory)}.json"


def given_options(argv: Sequence[str]) -> frozenset[str]:
    """The ``rcd start`` options present in ``argv`` (by their field names), however
    written: ``--spawn x``, ``--spawn=x``, or a prefix argparse takes for it (``--cap``)."""
    given = set()
    for word in argv:
        if word == "--":
            break  # the rest are not options
        if not word.startswith("--"):
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
    #: Approval grants taken (see :mod:`daemon.grants`); expired ones are dropped as seen.
    grants: list[wire.Grant] = attrs.Factory(list)


@attrs.define(eq=False)
class EnvironmentSettings:
    path: Path
    options: StartOptions
    stored: Stored = attrs.Factory(Stored)
    #: The last update taken (its id) and why it was refused (None: applied).
    last_update: tuple[str, str | None] | None = None

    @property
    def given(self) -> frozenset[str]:
        """The ``rcd start`` options given on its command line (:func:`given_options`)."""
        return self.options.given

    @classmethod
    def load(cls, options: StartOptions) -> EnvironmentSettings:
        """The settings kept for ``options.directory`` (none yet: all from the options).
        ConfigError naming the file when it cannot be read."""
        path = settings_path(options.directory)
        data = read_private_json(path, "environment settings")
        try:
            stored = wire.decode(Stored, data) if data else Stored()
        except wire.DecodeError as exc:
            raise ConfigError(f"{path} is not settings rcd can read: {exc}") from None
        return cls(path=path, options=options, stored=stored)

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
        # Worked out on a copy, taken only once it is on disk: a failed write changes nothing.
        stored = attrs.evolve(
            self.stored, env=dict(self.stored.env), changes=list(self.stored.changes)
        )
        changed = []
        for name, value in sorted((update.env or {}).items()):
            if value is None and stored.env.pop(name, None) is not None:
                changed.append(f"env {name}")
            elif value is not None and stored.env.get(name) != value:
                stored.env[name] = value
                changed.append(f"env {name}")
        for setting in ("spawn", "permission_mode", "allowed_tools", "sandbox", "capacity"):
            value = getattr(update, setting)
            if value is not None and value != getattr(stored, setting):
                setattr(stored, setting, value)
                changed.append(setting)
        hosts = update.sandbox_allow_hosts
        if hosts is not None and hosts != stored.sandbox_allow_hosts:
            stored.sandbox_allow_hosts = [h.lower() for h in hosts]
            changed.append("sandbox_allow_hosts")
        if changed:
            change = wire.SettingsChange(at=now, by=by, changed=changed)
            stored.changes = [*stored.changes, change][-MAX_CHANGES:]
            write_private_json(self.path, wire.encode(stored))
            self.stored = stored
        return changed

    def take_grant(self, grant_id: str, request: wire.GrantRequest, by: str, now: float) -> str:
        """Take the grant ``request`` asks for and keep it; what changed, for the log.
        ConfigError (nothing taken) when it cannot be."""
        current = grants.in_force(self.stored.grants, now)
        if any(g.id == grant_id for g in current):
            return ""  # the same directive again: taken already
        if len(current) >= wire.grants.MAX_GRANTS:
            raise ConfigError(
                f"{len(current)} grants are in force already (at most {wire.grants.MAX_GRANTS}):"
                " revoke one first"
            )
        grant = grants.new_grant(grant_id, request, by, now)
        change = f"grant {grant_id}: {grant.describe()}"
        self._keep(attrs.evolve(self.stored, grants=[*current, grant]), by, now, change)
        return change

    def revoke_grant(self, grant_id: str, by: str, now: float) -> str:
        """Drop grant ``grant_id``; what changed. ConfigError when there is none in force."""
        current = grants.in_force(self.stored.grants, now)
        if not any(g.id == grant_id for g in current):
            raise ConfigError(f"no grant {grant_id} in force: it ended, or was revoked")
        change = f"revoked grant {grant_id}"
        kept = [g for g in current if g.id != grant_id]
        self._keep(attrs.evolve(self.stored, grants=kept), by, now, change)
        return change

    def _keep(self, stored: Stored, by: str, now: float, change: str) -> None:
        entry = wire.SettingsChange(at=now, by=by, changed=[change])
        stored = attrs.evolve(stored, changes=[*stored.changes, entry][-MAX_CHANGES:])
        write_private_json(self.path, wire.encode(stored))
        self.stored = stored

    def drop_expired(self, now: float) -> int:
        """Forget the grants ended by ``now`` (kept on disk when it can be); how many."""
        current = grants.in_force(self.stored.grants, now)
        dropped = len(self.stored.grants) - len(current)
        if dropped:
            log.info("grants_expired", count=dropped)
            self.stored.grants = current
            with contextlib.suppress(OSError):  # they are ended either way
                write_private_json(self.path, wire.encode(self.stored))
        return dropped

    def grant_for(
        self, session_id: str, cwd: str, request: wire.PermissionRequest, now: float
    ) -> str | None:
        """The id of the grant in force that covers ``request``, or None (ask)."""
        grant = grants.find(
            self.stored.grants, session_id=session_id, cwd=cwd, request=request, now=now
        )
        return None if grant is None else grant.id

    def view(self, now: float | None = None) -> wire.SettingsView:
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
            last_update=self.last_update[0] if self.last_update else None,
            last_refusal=self.last_update[1] if self.last_update else None,
            grants=grants.in_force(self.stored.grants, time.time() if now is None else now),
            agents=self.options.agents,
        )


@attrs.define(eq=False)
class SettingsKeeper:
    """Applies the settings to the supervisor, takes changes (:class:`wire.UpdateSettings`)
    and reports them to the relay (when it keeps settings)."""

    settings: EnvironmentSettings
    supervisor: Supervisor
    client: RelayClient
    #: The agents' environment before the variables set here.
    base_env: dict[str, str]
    #: Registers again (the relay shows the spawn mode and enforces the capacity).
    reregister: Callable[[], Awaitable[None]]
    nursery: trio.Nursery
    clock: Callable[[], float] = time.time
    #: Seconds between looks for grants that ended (see :meth:`expire_grants`).
    recheck: float = 30.0

    _lock: trio.Lock = attrs.Factory(trio.Lock)
    _grants_changed: trio.Event = attrs.Factory(trio.Event)

    def configure(self, changed: Sequence[str] | None = None) -> None:
        """What new sessions start with, from the settings (after a change: what it
        changed; a spawn mode switched on the daemon's own screen stays)."""
        supervisor, settings = self.supervisor, self.settings
        if changed is None or "spawn" in changed:
            supervisor.spawn = settings.spawn
        if changed is None or "capacity" in changed:
            supervisor.capacity = settings.capacity
        supervisor.env = settings.agent_env(self.base_env)
        supervisor.options = settings.agent_options()

    def update(self, directive: wire.UpdateSettings) -> None:
        self.nursery.start_soon(self._update, directive)

    async def _update(self, directive: wire.UpdateSettings) -> None:
        async with self._lock:  # one at a time, in the order they came
            refusal = await self._refusal(directive.update)
            changed: list[str] = []
            if refusal is None:
                try:
                    changed = self.settings.apply(directive.update, directive.origin, self.clock())
                    changed += self._grants(directive)
                except (ConfigError, OSError, ValueError) as exc:
                    refusal = str(exc)
            self.settings.last_update = (directive.id, refusal)
            log.info("settings_changed", origin=directive.origin, changed=changed, refused=refusal)
            self.configure(changed)
            if {"spawn", "capacity"} & set(changed):
                await self.reregister()
            await self.report()

    def _grants(self, directive: wire.UpdateSettings) -> list[str]:
        """Take or revoke the grant ``directive`` carries; what changed."""
        settings, by, now = self.settings, directive.origin, self.clock()
        changed = []
        if directive.grant is not None:
            if directive.grant_id is None:
                raise ConfigError("a grant came without its id")
            changed.append(settings.take_grant(directive.grant_id, directive.grant, by, now))
        if directive.revoke_grant is not None:
            changed.append(settings.revoke_grant(directive.revoke_grant, by, now))
        if changed:
            self._grants_changed.set()
        return [c for c in changed if c]

    def approve(self, session_id: str, cwd: str, request: wire.PermissionRequest) -> str | None:
        """For :attr:`Supervisor.approve`: the grant covering ``request``, by this
        daemon's clock."""
        return self.settings.grant_for(session_id, cwd, request, self.clock())

    async def expire_grants(self) -> None:
        """Report the grants in force again as each one ends (they end where they are
        decided, at once: this only keeps the clients' list true)."""
        while True:
            self._grants_changed = trio.Event()
            ends = [g.expires_at for g in self.settings.stored.grants]
            wait = min(ends) - self.clock() if ends else math.inf
            # Looked at again at least every ``recheck`` s while grants are in force: the
            # clock may jump (a machine that slept: trio's clock stood still meanwhile).
            # With none, nothing wakes an idle daemon but a new grant.
            with trio.move_on_after(min(max(wait, 0) + 0.1, self.recheck) if ends else math.inf):
                await self._grants_changed.wait()
            now = self.clock()
            if ends and min(ends) <= now:
                async with self._lock:
                    if self.settings.drop_expired(now):
                        await self.report()

    async def _refusal(self, update: wire.SettingsUpdate) -> str | None:
        """Why this machine cannot take ``update`` (None: it can)."""
        if update.sandbox and (missing := missing_tools()):
            return f"this machine cannot sandbox sessions: {' and '.join(missing)} missing"
        if update.spawn == "worktree":
            try:
                await (await Worktrees.open(self.supervisor.directory)).head()
            except WorktreeError as exc:
                return f"no worktrees here: {exc}"
        return None

    async def report(self) -> None:
        """Tell the relay what applies now (a relay of before settings is not told)."""
        if not self.client.takes_settings:
            return
        try:
            view = self.settings.view(self.clock())
            if not self.client.takes_grants:
                view = attrs.evolve(view, grants=[])  # a relay of before grants refuses them
            if not self.client.takes_agents:
                view = attrs.evolve(view, agents=[])  # ... and one of before agents these
            await self.client.post_settings(view)
        except DaemonError as exc:
            log.warning("settings_not_reported", error=str(exc))
