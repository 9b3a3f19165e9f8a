"""``rcd start``: the daemon's main task.

Order of things: (embedded relay) → register → uplink, supervisor, control socket, link →
wait for a signal → stop taking work → stop every session at once and flush their last
events under one deadline (``--stop-timeout``) → goodbye → exit 0. A second signal forces.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import ssl
import sys
from pathlib import Path
from typing import Any, TextIO

import attrs
import httpx
import structlog
import trio

import wire
from spawn import AgentAdapter, ClaudeCode
from worktrees import WorktreeError, Worktrees

from . import sdnotify
from .agent_env import agent_environment
from .agents_record import RecordedAdapter, take_over
from .applied import AppliedStore
from .backoff import full_jitter
from .control import serve_control
from .display import DisplayState, SessionLine, TerminalDisplay
from .errors import (
    CertificateRejected,
    ConfigError,
    DaemonError,
    NotPaired,
    RelayRejected,
    RelayUnreachable,
)
from .exits import EXIT_ERROR, EXIT_RELAY_OUTAGE
from .link import OutageTimeout, RelayLink
from .paths import (
    agents_record_path,
    control_socket_path,
    load_credential,
    state_dir,
)
from .procstats import process_stats
from .relay_client import RelayClient
from .supervisor import Supervisor
from .transport import check_relay_url, tls_context, warn_insecure_http
from .uplink import Uplink

__all__ = ["StartOptions", "run_daemon"]

log = structlog.get_logger("daemon")


@attrs.frozen(kw_only=True)
class StartOptions:
    directory: Path
    relay: str | None = None
    name: str | None = None
    spawn: wire.Spawn = "same-dir"
    capacity: int = 32
    #: Spare worktrees kept ready (``--spawn worktree``); None: as many as the capacity.
    spare_worktrees: int | None = None
    agent: str = "claude"
    agent_bin: str | None = None
    outage_timeout: float = 600.0
    stop_timeout: float = 10.0
    relay_port: int = 7878
    relay_data_dir: Path | None = None
    #: Allow plain ``http://`` to a relay that is not on this machine (warned at each start).
    insecure_http: bool = False
    #: CA certificates (PEM) trusted for the relay's TLS certificate, besides the usual ones.
    ca_cert: Path | None = None
    verbose: bool = False


def machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        if value:
            return value
    return socket.gethostname()


def default_name(directory: Path) -> str:
    return f"{directory.name or directory}@{socket.gethostname()}"


def make_adapter(options: StartOptions) -> AgentAdapter:
    if options.agent != "claude":
        raise ConfigError(f"unknown agent {options.agent!r}; available: claude")
    return ClaudeCode(binary=options.agent_bin or "claude")


async def _register(
    client: RelayClient, request: wire.RegisterRequest, outage: float
) -> wire.RegisterResponse:
    """Register, retrying while the relay is unreachable (a service may start before the
    network); a refusal is final."""
    attempt = 0
    start = trio.current_time()
    while True:
        try:
            return await client.register(request)
        except CertificateRejected:
            raise  # no network coming up fixes that: the user must say whom to trust
        except RelayUnreachable as exc:
            if outage and trio.current_time() - start >= outage:
                raise
            attempt += 1
            delay = full_jitter(attempt, base=0.25, cap=30.0)
            log.warning("register_retry", error=str(exc), delay=round(delay, 2))
            await trio.sleep(delay)


@attrs.define(eq=False)
class _Stopper:
    requested: trio.Event = attrs.Factory(trio.Event)
    forced: trio.Event = attrs.Factory(trio.Event)
    exit_code: int = 0
    error: BaseException | None = None

    def stop(self, why: str) -> None:
        """The first call asks for a graceful stop; a second one forces it."""
        if not self.requested.is_set():
            log.info("stopping", by=why)
            self.requested.set()
        elif not self.forced.is_set():
            log.warning("forced_stop", by=why)
            self.forced.set()

    async def watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                self.stop(signal.Signals(signum).name)

    def fail(self, exc: BaseException, code: int) -> None:
        self.error = exc
        self.exit_code = code
        self.requested.set()


async def run_daemon(
    options: StartOptions, out: TextIO = sys.stdout, *, display: bool = False
) -> int:
    """Run until stopped; returns the process exit code.

    Raises :class:`DaemonError` for problems found before the daemon is up (bad options,
    plain HTTP to another machine without ``insecure_http``, not paired, the relay's
    certificate refused, relay refusing registration). With ``display`` (stdout and stdin are a
    terminal) a live status screen is drawn on ``out`` and keys are read from stdin.
    """
    directory = options.directory.resolve()
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory")
    adapter = make_adapter(options)
    # The relay's URL, from --relay or config.toml: never plain HTTP to another machine
    # unless asked for, and then said at every start.
    remote = (
        None
        if options.relay is None
        else check_relay_url(options.relay, insecure_http=options.insecure_http)
    )
    if remote is not None and warn_insecure_http(remote):
        log.warning("insecure_http", relay=remote)
    verify: ssl.SSLContext | bool = True
    if remote is not None and remote.startswith("https://"):
        verify = tls_context(options.ca_cert)
    if options.spawn == "worktree":
        try:
            # Refused now rather than failing every session: no repository, no commit.
            await (await Worktrees.open(directory)).head()
        except WorktreeError as exc:
            raise ConfigError(str(exc)) from None
    stopper = _Stopper()
    # Two downlinks while one is renewed, two uplink requests in flight and one open ahead
    # of the next batch, an ack, a token: a small pool keeps httpx's per-request
    # bookkeeping cheap when every session flushes at once (teardown).
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    async with (
        httpx.AsyncClient(timeout=15.0, limits=limits, verify=verify) as http,
        trio.open_nursery() as root,
    ):
        root.start_soon(stopper.watch_signals)
        # Before anything else: end what a killed daemon of this directory left running (and
        # refuse to start beside one that runs); the record marks a clean stop at the end.
        agents, previous_run = await take_over(agents_record_path(directory), directory)
        root.start_soon(agents.hold)
        sign_in: str | None = None
        if remote is None:
            relay_url, credential, sign_in = await _start_embedded_relay(root, options, out)
        else:
            relay_url = remote
            stored = load_credential(relay_url)
            if stored is None:
                raise NotPaired(relay_url)
            credential = stored
        client = RelayClient(http=http, relay=relay_url, credential=credential)
        name = options.name or default_name(directory)

        def registration_request(spawn: wire.Spawn) -> wire.RegisterRequest:
            return wire.RegisterRequest(
                name=name,
                machine=machine_id(),
                directory=str(directory),
                spawn=spawn,
                capacity=options.capacity,
                agent=adapter.name,
                hostname=socket.gethostname(),
            )

        registration = await _register(
            client, registration_request(options.spawn), options.outage_timeout
        )
        env_id = registration.environment_id
        structlog.contextvars.bind_contextvars(environment_id=env_id)
        log.info("registered", relay=relay_url, name=name, capacity=options.capacity)
        sdnotify.notify_ready()  # systemd (Type=notify): up once registered

        await root.start(client.run)
        uplink = Uplink(client=client, spool_dir=state_dir() / "spool" / env_id)
        # Events an earlier run could not send go first.
        spooled = uplink.recover({o.session_id: o.last_seq for o in registration.open_sessions})
        await root.start(uplink.run)
        applied = AppliedStore(state_dir(), env_id)
        supervisor = Supervisor(
            adapter=RecordedAdapter(inner=adapter, record=agents),
            directory=directory,
            spawn=options.spawn,
            capacity=options.capacity,
            uplink=uplink,
            env=agent_environment(os.environ),
            spares=(
                options.capacity if options.spare_worktrees is None else options.spare_worktrees
            ),
        )
        # Work the last run applied is not applied again; its sessions are over.
        supervisor.applied_through = applied.load()
        supervisor.mark_ended(o.session_id for o in registration.open_sessions)
        await root.start(supervisor.run)
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

        def apply(dseq: int, directive: wire.Directive) -> None:
            supervisor.apply(dseq, directive)
            if isinstance(directive, wire.StartSession | wire.ResumeSession):
                # Work is saved as applied at once: replayed after a crash it would start an
                # agent twice. Inputs are saved with the (coalesced) acks: replayed, they
                # find no session and are dropped.
                applied.save(supervisor.applied_through)

        link = RelayLink(
            client=client,
            environment_id=env_id,
            apply=apply,
            applied_through=lambda: supervisor.applied_through,
            on_acked=applied.save,
            outage_timeout=options.outage_timeout,
        )

        async def announce_spawn(spawn: wire.Spawn) -> None:
            # The relay shows the environment's default spawn mode: tell it.
            try:
                await client.register(registration_request(spawn))
            except DaemonError as exc:
                log.warning("reregister_failed", error=str(exc))

        def set_spawn(spawn: wire.Spawn) -> None:
            supervisor.set_spawn(spawn)
            root.start_soon(announce_spawn, spawn)

        def control(request: dict[str, Any]) -> dict[str, Any]:
            op = request.get("op", "status")
            if op == "set_spawn":
                spawn = request.get("spawn")
                if spawn not in ("same-dir", "worktree"):
                    raise ValueError(f"spawn must be same-dir or worktree, got {spawn!r}")
                set_spawn(spawn)
            elif op != "status":
                raise ValueError(f"unknown op {op!r}; known: status, set_spawn")
            stats = supervisor.statistics()
            sent = uplink.statistics()
            return {
                "environment": {
                    "id": env_id,
                    "name": name,
                    "relay": relay_url,
                    "connected": link.connected,
                    "spawn": stats.spawn,
                    "capacity": stats.capacity,
                    "directory": str(directory),
                },
                "sessions": [
                    {
                        "id": s.id,
                        "title": s.title,
                        "state": s.state,
                        "cwd": s.cwd,
                        "branch": s.branch,
                        "pid": s.pid,
                    }
                    for s in stats.sessions
                ],
                "uplink": {
                    "buffered_events": sent.buffered_events,
                    "batches": sent.batches_sent,
                    "requests": client.uplink_requests,
                    "batches_on_open_requests": client.spares_used,
                    "failures": sent.failures,
                },
                "process": attrs.asdict(process_stats()),
                "kept_worktrees": [
                    {"path": k.path, "branch": k.branch, "reasons": list(k.reasons)}
                    for k in stats.kept_worktrees
                ],
                "spare_worktrees": (
                    attrs.asdict(stats.spares) if stats.spares is not None else None
                ),
            }

        await root.start(serve_control, control_socket_path(directory), control)

        async def hold_link(
            task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
        ) -> None:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                try:
                    await link.run()
                except DaemonError as exc:
                    if isinstance(exc, OutageTimeout):
                        # The one line that says why; the service manager restarts us.
                        log.error("relay_outage", error=str(exc), exit_code=EXIT_RELAY_OUTAGE)
                        stopper.fail(exc, EXIT_RELAY_OUTAGE)
                    else:
                        log.error("link_failed", error=str(exc))
                        stopper.fail(exc, EXIT_ERROR)

        link_scope: trio.CancelScope = await root.start(hold_link)
        print(
            f"rcd: environment {name!r} registered with {relay_url} "
            f"(capacity {options.capacity}, spawn {options.spawn})",
            file=out,
            flush=True,
        )
        display_scope = trio.CancelScope()
        if display:

            def display_state() -> DisplayState:
                stats = supervisor.statistics()
                return DisplayState(
                    name=name,
                    relay=relay_url,
                    connected=link.connected,
                    spawn=stats.spawn,
                    capacity=stats.capacity,
                    sign_in=sign_in,
                    stopping=stopper.requested.is_set(),
                    sessions=tuple(
                        SessionLine(
                            id=s.id,
                            title=s.title,
                            state=s.state,
                            activity=s.activity,
                            url=f"{relay_url}/s/{s.id}",
                        )
                        for s in stats.sessions
                    ),
                )

            def toggle_spawn() -> None:
                set_spawn("worktree" if supervisor.spawn == "same-dir" else "same-dir")

            screen = TerminalDisplay(
                out=out,
                stdin_fd=sys.stdin.fileno(),
                state=display_state,
                toggle_spawn=toggle_spawn,
                quit=lambda: stopper.stop("q"),
            )

            async def show() -> None:
                with display_scope:
                    await screen.run()

            root.start_soon(show)

        await stopper.requested.wait()
        sdnotify.notify_stopping()
        # 1. Stop taking work: no new directives, no new sessions.
        supervisor.stop_accepting()
        link_scope.cancel()
        # 2. End every session at once and flush their last events, under one deadline
        #    that leaves room for forcing what is left and for the goodbye.
        stop_started = trio.current_time()
        hard_deadline = stop_started + options.stop_timeout
        # Room after the sessions' deadline: forcing what is left, the goodbye, and the
        # process exiting, all before the service manager's own deadline.
        reserve = min(3.0, options.stop_timeout / 3)
        with trio.move_on_at(hard_deadline - reserve) as deadline:
            async with trio.open_nursery() as teardown:

                async def force_on_second_signal() -> None:
                    await stopper.forced.wait()
                    supervisor.kill_all()

                teardown.start_soon(force_on_second_signal)
                uplink.pause()
                try:
                    await supervisor.stop_all()
                finally:
                    uplink.resume()
                sessions_done = trio.current_time()
                if not isinstance(stopper.error, OutageTimeout):
                    # (After an outage the relay is gone: the events stay unsent.)
                    await uplink.drain()
                log.info(
                    "sessions_stopped",
                    stop_ms=round((sessions_done - stop_started) * 1000, 1),
                    flush_ms=round((trio.current_time() - sessions_done) * 1000, 1),
                )
                teardown.cancel_scope.cancel()
        if deadline.cancelled_caught:
            log.warning(
                "stop_timeout",
                stop_timeout=options.stop_timeout,
                sessions_left=supervisor.active(),
                pending=uplink.pending(),
            )
            # Forced: agents get a moment, are killed and reaped; their sessions still end
            # (workspaces reported as kept, unreleased) and those last events go up.
            supervisor.kill_all()
            with trio.move_on_at(hard_deadline - reserve / 2):
                await supervisor.wait_all_ended()
                if not isinstance(stopper.error, OutageTimeout):
                    await uplink.drain()
        # 3. Goodbye: the environment goes offline (sessions still open are ended by it).
        goodbye_by = trio.current_time() if isinstance(stopper.error, OutageTimeout) else None
        with trio.move_on_at(goodbye_by or max(hard_deadline - 0.8, trio.current_time() + 0.3)):
            try:
                await client.goodbye(env_id)
            except (RelayUnreachable, RelayRejected) as exc:
                log.warning("goodbye_failed", error=str(exc))
        # 4. Clean worktrees of the sessions just ended stay where they are: the next start
        #    makes them spares again (a stop waits for no git work it can leave).
        if supervisor.recycles_left:
            log.info("worktrees_left_to_next_start", worktrees=supervisor.recycles_left)
        log.info("stopped")
        display_scope.cancel()
        root.cancel_scope.cancel()
    # Events that could not go up (the relay away, the deadline past) wait on disk.
    uplink.spool_unsent()
    if stopper.error is not None and not isinstance(stopper.error, OutageTimeout):
        # (An outage has said so in its one log line already.)
        print(f"rcd: {stopper.error}", file=sys.stderr)
    return stopper.exit_code


async def _start_embedded_relay(
    root: trio.Nursery, options: StartOptions, out: TextIO
) -> tuple[str, str, str]:
    """Start the relay in this process on 127.0.0.1 (on a data dir no other relay serves),
    get this machine's credential (the same at every start) and a sign-in link; returns
    (relay URL, credential, link)."""
    from relay import RelayConfig, RelayError, serve_relay
    from relay.admin import create_login_link

    from .embedded import embedded_credential, port_taken_message, relay_dir_for

    relay_dir, note = await relay_dir_for(
        options.directory.resolve(), options.relay_data_dir, options.relay_port
    )
    if note is not None:
        print(f"rcd: {note}", file=out)
    config = RelayConfig(host="127.0.0.1", port=options.relay_port, data_dir=relay_dir)
    try:
        running = await root.start(serve_relay, config)
    except RelayError as exc:
        if isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.EADDRINUSE:
            raise DaemonError(port_taken_message(options.relay_port)) from exc
        raise
    credential = await embedded_credential(running.storage, relay_dir, machine_id())
    link = await trio.to_thread.run_sync(
        lambda: create_login_link(relay_dir, public_url=running.url)
    )
    print(f"rcd: relay running at {running.url} (embedded, loopback only)", file=out)
    print(f"rcd: sign in from a browser on this machine: {link}", file=out, flush=True)
    return running.url, credential, link
