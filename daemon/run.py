"""``rcd start``: the :class:`Daemon` and its services.

Order of things: (embedded relay) → register → uplink, supervisor, control socket, link →
wait for a signal → the stop (:mod:`daemon.teardown`: stop taking work → stop every session
at once and flush their last events under one deadline, ``--stop-timeout`` → goodbye) →
exit 0. A second signal forces.

The daemon's parts are named services started under one nursery, in that order: ``signals``,
``agents_record``, (``relay``), ``relay_client``, ``uplink``, ``supervisor``, ``control``,
``link``, (``screen``). Each is a method or an object of its own module; this module only
wires them together.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import attrs
import httpx
import structlog
import trio

import wire
from common.agent_env import agent_environment
from spawn import AgentAdapter
from spawn.sandbox import missing_tools
from worktrees import WorktreeError, Worktrees
from worktrees.snapshots import Snapshots

from . import sdnotify
from .agents import check_agents, make_adapter, other_adapters
from .agents_record import AgentsRecord, RecordedAdapter, take_over
from .applied import AppliedStore
from .changes import WorkspaceDesk
from .checks import (
    check_credential,
    sandbox_missing_message,
)
from .control import serve_control
from .display import TerminalDisplay
from .errors import ConfigError, DaemonError, NotPaired
from .exits import EXIT_ERROR, EXIT_RELAY_OUTAGE
from .link import OutageTimeout, RelayLink
from .options import StartOptions, publishing_conflict
from .paths import (
    agents_record_path,
    control_socket_path,
    directory_key,
    load_credential,
    state_dir,
)
from .registration import default_name, machine_id, register
from .relay_client import RelayClient
from .settings import EnvironmentSettings, SettingsKeeper
from .starts import SameDirStarts
from .status import Identity, display_state, status_report
from .stopper import Stopper
from .supervisor import Supervisor
from .teardown import Teardown
from .transport import check_relay_url, tls_context, warn_insecure_http
from .uplink import Uplink

__all__ = ["Daemon", "StartOptions", "run_daemon"]

if TYPE_CHECKING:
    from .expose import Tailscale

log = structlog.get_logger("daemon")


async def run_daemon(
    options: StartOptions, out: TextIO = sys.stdout, *, display: bool = False
) -> int:
    """Run until stopped; returns the process exit code (see :meth:`Daemon.run`)."""
    return await Daemon(options=options, out=out, display=display).run()


@attrs.define(eq=False, kw_only=True)
class Daemon:
    """One ``rcd start``: an environment of one directory, registered with one relay.

    With ``display`` (stdout and stdin are a terminal) a live status screen is drawn on
    ``out`` and keys are read from stdin.
    """

    options: StartOptions
    out: TextIO = sys.stdout
    display: bool = False
    stopper: Stopper = attrs.Factory(Stopper)

    directory: Path = attrs.field(init=False)
    adapter: AgentAdapter = attrs.field(init=False)
    settings: EnvironmentSettings = attrs.field(init=False)
    # Set as the services start (see run()).
    client: RelayClient = attrs.field(init=False)
    me: Identity = attrs.field(init=False)
    uplink: Uplink = attrs.field(init=False)
    supervisor: Supervisor = attrs.field(init=False)
    link: RelayLink = attrs.field(init=False)
    _remote: str | None = attrs.field(init=False, default=None)
    _applied: AppliedStore | None = attrs.field(default=None, init=False)
    _root: trio.Nursery = attrs.field(init=False)
    #: Closed once the root nursery has ended.
    _exits: AsyncExitStack = attrs.field(init=False)

    async def run(self) -> int:
        """Run until stopped; returns the process exit code.

        Raises :class:`DaemonError` for problems found before the daemon is up (bad options,
        plain HTTP to another machine without ``insecure_http``, not paired, the relay's
        certificate refused, relay refusing registration).
        """
        verify = await self._check_options()
        # Two downlinks while one is renewed, two uplink requests in flight and one open
        # ahead of the next batch, an ack, a token: a small pool keeps httpx's per-request
        # bookkeeping cheap when every session flushes at once (teardown).
        # An idle connection is dropped after 5 s, well before the relay closes it (its
        # keep_alive_timeout): a request never goes out on a connection being closed.
        limits = httpx.Limits(max_connections=8, max_keepalive_connections=8, keepalive_expiry=5.0)
        async with (
            httpx.AsyncClient(timeout=15.0, limits=limits, verify=verify) as http,
            AsyncExitStack() as self._exits,
            trio.open_nursery() as root,
        ):
            self._root = root
            root.start_soon(self.stopper.watch_signals)
            # Before anything else: end what a killed daemon of this directory left running
            # (and refuse to start beside one that runs); the record marks a clean stop.
            agents, previous_run = await take_over(
                agents_record_path(self.directory), self.directory
            )
            root.start_soon(agents.hold)
            registration = await self._register(http)
            await root.start(self.client.run)
            await self._start_sessions(agents, registration, previous_run)
            await root.start(
                serve_control, control_socket_path(self.directory), self._answer_control
            )
            link_scope: trio.CancelScope = await root.start(self._hold_link)
            options = self.options
            print(
                f"rcd: environment {self.me.name!r} registered with {self.me.relay} "
                f"(capacity {self.settings.capacity}, spawn {self.settings.spawn})",
                file=self.out,
                flush=True,
            )
            screen_scope = trio.CancelScope()
            if self.display:
                root.start_soon(self._show_screen, screen_scope)
            await self.stopper.requested.wait()
            await Teardown(
                stopper=self.stopper,
                supervisor=self.supervisor,
                uplink=self.uplink,
                client=self.client,
                environment_id=self.me.environment_id,
                stop_timeout=options.stop_timeout,
            ).run(link_scope)
            screen_scope.cancel()
            root.cancel_scope.cancel()
        # Events that could not go up (the relay away, the deadline past) wait on disk.
        self.uplink.spool_unsent()
        if self._applied is not None:
            self._applied.close()
        error = self.stopper.error
        if error is not None and not isinstance(error, OutageTimeout):
            # (An outage has said so in its one log line already.)
            print(f"rcd: {error}", file=sys.stderr)
        return self.stopper.exit_code

    # -- before anything runs ----------------------------------------------------------------

    async def _check_options(self) -> ssl.SSLContext | bool:
        """Refuse now what would fail later; returns how to verify the relay's TLS."""
        options = self.options
        self.directory = options.directory.resolve()
        if not self.directory.is_dir():
            raise ConfigError(f"{self.directory} is not a directory")
        self.settings = EnvironmentSettings.load(attrs.evolve(options, directory=self.directory))
        self.adapter = make_adapter(options)
        problem = publishing_conflict(options)
        if problem is not None:
            raise ConfigError(problem)
        # The relay's URL, from --relay or config.toml: never plain HTTP to another machine
        # unless asked for, and then said at every start.
        if options.relay is not None:
            self._remote = check_relay_url(options.relay, insecure_http=options.insecure_http)
            if warn_insecure_http(self._remote):
                log.warning("insecure_http", relay=self._remote)
        if self.settings.spawn == "worktree":
            try:
                # Refused now rather than failing every session: no repository, no commit.
                await (await Worktrees.open(self.directory)).head()
            except WorktreeError as exc:
                raise ConfigError(str(exc)) from None
        if self.settings.sandbox.enabled and (missing := missing_tools()):
            raise ConfigError(sandbox_missing_message(missing))
        # The agent last: a bad option is named before a missing prerequisite.
        claude = options.agent == "claude"
        if not options.no_agent_check:
            check_agents(options)
        credential = check_credential(os.environ, Path.home())
        if claude and credential.status == "problem":
            print(f"rcd: warning: {credential.detail}: {credential.fix}", file=sys.stderr)
        if self._remote is not None and self._remote.startswith("https://"):
            return tls_context(options.ca_cert)
        return True

    # -- services ----------------------------------------------------------------------------

    async def _register(self, http: httpx.AsyncClient) -> wire.RegisterResponse:
        """(Start the embedded relay,) register, and say so to systemd."""
        options = self.options
        sign_in = fingerprint = None
        if self._remote is None:
            from .embedded import start_embedded_relay

            tailscale = None
            if options.expose == "tailscale":
                from .expose import find_tailscale

                tailscale = find_tailscale()
                # Undone once the relay has stopped, whatever stops it.
                self._exits.push_async_callback(_unserve, tailscale)
            embedded = await start_embedded_relay(
                self._root, options, self.out, machine_id(), tailscale
            )
            relay_url, credential, sign_in = (
                embedded.local_url, embedded.credential, embedded.sign_in
            )  # fmt: skip
            fingerprint = embedded.fingerprint
            # The relay is in this process: its app is called directly, without a socket.
            http = await self._exits.enter_async_context(
                httpx.AsyncClient(transport=embedded.transport, timeout=http.timeout)
            )
        else:
            relay_url = self._remote
            stored = load_credential(relay_url)
            if stored is None:
                raise NotPaired(relay_url)
            credential = stored
        self.client = RelayClient(http=http, relay=relay_url, credential=credential)
        name = options.name or default_name(self.directory)
        registration = await register(
            self.client,
            self._registration_request(name, self.settings.spawn),
            options.outage_timeout,
        )
        env_id = registration.environment_id
        self.me = Identity(
            environment_id=env_id,
            name=name,
            relay=relay_url,
            directory=str(self.directory),
            sign_in=sign_in,
            fingerprint=fingerprint,
        )
        structlog.contextvars.bind_contextvars(environment_id=env_id)
        log.info("registered", relay=relay_url, name=name, capacity=self.settings.capacity)
        sdnotify.notify_ready()  # systemd (Type=notify): up once registered
        return registration

    def _registration_request(self, name: str, spawn: wire.Spawn) -> wire.RegisterRequest:
        return wire.RegisterRequest(
            name=name,
            machine=machine_id(),
            directory=str(self.directory),
            spawn=spawn,
            capacity=self.settings.capacity,
            agent=self.adapter.name,
            hostname=socket.gethostname(),
        )

    async def _start_sessions(
        self, agents: AgentsRecord, registration: wire.RegisterResponse, previous_run: str
    ) -> None:
        """The uplink (events an earlier run could not send go first) and the supervisor;
        then close what an earlier run left open."""
        env_id = self.me.environment_id
        self.uplink = uplink = Uplink(client=self.client, spool_dir=state_dir() / "spool" / env_id)
        spooled = uplink.recover({o.session_id: o.last_seq for o in registration.open_sessions})
        await self._root.start(uplink.run)
        self.supervisor = supervisor = Supervisor(
            adapter=RecordedAdapter(inner=self.adapter, record=agents),
            adapters={
                name: RecordedAdapter(inner=adapter, record=agents)
                for name, adapter in other_adapters(self.options).items()
            },
            directory=self.directory,
            spawn=self.settings.spawn,
            capacity=self.settings.capacity,
            uplink=uplink,
            spares=self.options.spares,
        )
        keeper = SettingsKeeper(
            settings=self.settings,
            supervisor=supervisor,
            client=self.client,
            base_env=agent_environment(os.environ),
            reregister=lambda: self._announce_spawn(supervisor.spawn),
            nursery=self._root,
        )
        keeper.configure()
        supervisor.on_settings = keeper.update
        supervisor.approve = keeper.approve
        self._root.start_soon(keeper.expire_grants)
        supervisor.worktrees.starts = SameDirStarts(
            state_dir() / "starts" / f"{directory_key(self.directory)}.json"
        )
        desk = WorkspaceDesk(
            supervisor=supervisor,
            client=self.client,
            uplink=uplink,
            nursery=self._root,
            snapshots=Snapshots(state_dir() / "snapshots" / directory_key(self.directory)),
        )
        supervisor.on_workspace = desk.handle
        self._root.start_soon(keeper.report)
        # Work the last run applied is not applied again; its sessions are over.
        self._applied = applied = AppliedStore(state_dir(), env_id)
        supervisor.applied_through = applied.load()
        supervisor.mark_ended(o.session_id for o in registration.open_sessions)
        await self._root.start(supervisor.run)
        # Sessions an earlier run of this daemon left open can no longer run here: the
        # log's one writer closes them (after what it spooled), so no client waits on a
        # ghost. The reason says whether that daemon was killed or stopped without getting
        # their ends to the relay; either way they can be resumed.
        await supervisor.end_orphans(
            registration.open_sessions,
            spooled,
            reason="daemon_died" if previous_run == "died" else "daemon_restarted",
            already_ended=uplink.is_complete,
        )
        await supervisor.report_leftovers()
        self.link = RelayLink(
            client=self.client,
            environment_id=env_id,
            apply=self._apply,
            applied_through=lambda: supervisor.applied_through,
            on_acked=applied.save,
            outage_timeout=self.options.outage_timeout,
        )

    def _apply(self, dseq: int, directive: wire.Directive) -> None:
        self.supervisor.apply(dseq, directive)
        if isinstance(directive, wire.StartSession | wire.ResumeSession | wire.UpdateSettings):
            # Work is saved as applied at once: replayed after a crash it would start an
            # agent twice. Inputs are saved with the (coalesced) acks: replayed, they find
            # no session and are dropped.
            assert self._applied is not None
            self._applied.save(self.supervisor.applied_through)

    async def _hold_link(
        self, task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            try:
                await self.link.run()
            except DaemonError as exc:
                if isinstance(exc, OutageTimeout):
                    # The one line that says why; the service manager restarts us.
                    log.error("relay_outage", error=str(exc), exit_code=EXIT_RELAY_OUTAGE)
                    self.stopper.fail(exc, EXIT_RELAY_OUTAGE)
                else:
                    log.error("link_failed", error=str(exc))
                    self.stopper.fail(exc, EXIT_ERROR)

    def _answer_control(self, request: wire.ControlRequest) -> wire.StatusReport:
        if request.op == "set_spawn":
            if request.spawn is None:
                raise ValueError("set_spawn needs spawn: same-dir or worktree")
            self._set_spawn(request.spawn)
        return status_report(
            self.me, self.supervisor, self.uplink, self.client, self.link, self.settings.view()
        )

    def _set_spawn(self, spawn: wire.Spawn) -> None:
        self.supervisor.set_spawn(spawn)
        self._root.start_soon(self._announce_spawn, spawn)

    async def _announce_spawn(self, spawn: wire.Spawn) -> None:
        # The relay shows the environment's default spawn mode: tell it.
        try:
            await self.client.register(self._registration_request(self.me.name, spawn))
        except DaemonError as exc:
            log.warning("reregister_failed", error=str(exc))

    async def _show_screen(self, scope: trio.CancelScope) -> None:
        def toggle_spawn() -> None:
            self._set_spawn("worktree" if self.supervisor.spawn == "same-dir" else "same-dir")

        screen = TerminalDisplay(
            out=self.out,
            stdin_fd=sys.stdin.fileno(),
            state=lambda: display_state(
                self.me, self.supervisor, self.link, stopping=self.stopper.requested.is_set()
            ),
            toggle_spawn=toggle_spawn,
            quit=lambda: self.stopper.stop("q"),
        )
        with scope:
            await screen.run()


async def _unserve(tailscale: Tailscale) -> None:
    """Undo ``--expose tailscale`` (shielded, and briefly: the daemon is on its way out)."""
    with trio.CancelScope(shield=True), trio.move_on_after(10):
        await tailscale.unserve()
