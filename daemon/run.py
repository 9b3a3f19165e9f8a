"""``rcd start``: the daemon's main task.

Order of things: (embedded relay) → register → uplink, supervisor, control socket, link →
wait for a signal → stop taking work → stop every session at once and flush their last
events under one deadline (``--stop-timeout``) → goodbye → exit 0. A second signal forces.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import attrs
import httpx
import structlog
import trio

import wire
from spawn import AgentAdapter, ClaudeCode

from .control import serve_control
from .errors import ConfigError, DaemonError, NotPaired, RelayRejected, RelayUnreachable
from .link import RelayLink
from .paths import control_socket_path, data_dir, load_credential, normalise_relay_url
from .relay_client import RelayClient
from .supervisor import Supervisor
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
    agent: str = "claude"
    agent_bin: str | None = None
    outage_timeout: float = 600.0
    stop_timeout: float = 10.0
    relay_port: int = 7878
    relay_data_dir: Path | None = None
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
        except RelayUnreachable as exc:
            if outage and trio.current_time() - start >= outage:
                raise
            attempt += 1
            delay = random.uniform(0, min(30.0, 0.25 * 2**attempt))
            log.warning("register_retry", error=str(exc), delay=round(delay, 2))
            await trio.sleep(delay)


def _end_orphans(uplink: Uplink, orphans: list[wire.OpenSession]) -> None:
    # Sessions an earlier run of this daemon left open can no longer run here: the log's one
    # writer closes them, so no client waits on a ghost.
    for orphan in orphans:
        at = time.time()
        uplink.publish(
            orphan.session_id,
            wire.make_event(
                orphan.last_seq + 1,
                at,
                wire.SessionEnded(reason="daemon_restarted", worktree_kept=False, branch=None),
            ),
        )


@attrs.define(eq=False)
class _Stopper:
    requested: trio.Event = attrs.Factory(trio.Event)
    forced: trio.Event = attrs.Factory(trio.Event)
    exit_code: int = 0
    error: BaseException | None = None

    async def watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if not self.requested.is_set():
                    log.info("stopping", signal=signal.Signals(signum).name)
                    self.requested.set()
                else:
                    log.warning("forced_stop", signal=signal.Signals(signum).name)
                    self.forced.set()

    def fail(self, exc: BaseException, code: int) -> None:
        self.error = exc
        self.exit_code = code
        self.requested.set()


async def run_daemon(options: StartOptions, out: TextIO = sys.stdout) -> int:
    """Run until stopped; returns the process exit code.

    Raises :class:`DaemonError` for problems found before the daemon is up (bad options,
    not paired, relay refusing registration).
    """
    directory = options.directory.resolve()
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory")
    adapter = make_adapter(options)
    stopper = _Stopper()
    async with httpx.AsyncClient(timeout=15.0) as http, trio.open_nursery() as root:
        root.start_soon(stopper.watch_signals)
        if options.relay is None:
            relay_url, credential = await _start_embedded_relay(root, options, out)
        else:
            relay_url = normalise_relay_url(options.relay)
            stored = load_credential(relay_url)
            if stored is None:
                raise NotPaired(relay_url)
            credential = stored
        client = RelayClient(http=http, relay=relay_url, credential=credential)
        name = options.name or default_name(directory)
        registration = await _register(
            client,
            wire.RegisterRequest(
                name=name,
                machine=machine_id(),
                directory=str(directory),
                spawn=options.spawn,
                capacity=options.capacity,
                agent=adapter.name,
            ),
            options.outage_timeout,
        )
        env_id = registration.environment_id
        structlog.contextvars.bind_contextvars(environment_id=env_id)
        log.info("registered", relay=relay_url, name=name, capacity=options.capacity)

        uplink = Uplink(client=client)
        await root.start(uplink.run)
        _end_orphans(uplink, registration.open_sessions)
        supervisor = Supervisor(
            adapter=adapter,
            directory=directory,
            spawn=options.spawn,
            capacity=options.capacity,
            uplink=uplink,
            env=dict(os.environ),
        )
        await root.start(supervisor.run)
        link = RelayLink(
            client=client,
            environment_id=env_id,
            apply=supervisor.apply,
            applied_through=lambda: supervisor.applied_through,
            outage_timeout=options.outage_timeout,
        )

        def status(request: dict[str, Any]) -> dict[str, Any]:
            if request.get("op", "status") != "status":
                raise ValueError(f"unknown op {request.get('op')!r}; known: status")
            stats = supervisor.statistics()
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
            }

        await root.start(serve_control, control_socket_path(directory), status)

        async def hold_link(
            task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
        ) -> None:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                try:
                    await link.run()
                except DaemonError as exc:
                    log.error("link_failed", error=str(exc))
                    stopper.fail(exc, 1)

        link_scope: trio.CancelScope = await root.start(hold_link)
        print(
            f"rcd: environment {name!r} online at {relay_url} (capacity {options.capacity})",
            file=out,
            flush=True,
        )

        await stopper.requested.wait()
        # 1. Stop taking work: no new directives, no new sessions.
        supervisor.stop_accepting()
        link_scope.cancel()
        # 2. End every session at once and flush their last events, under one deadline.
        with trio.move_on_after(options.stop_timeout) as deadline:
            async with trio.open_nursery() as teardown:

                async def force_on_second_signal() -> None:
                    await stopper.forced.wait()
                    supervisor.kill_all()

                teardown.start_soon(force_on_second_signal)
                await supervisor.stop_all()
                await uplink.drain()
                teardown.cancel_scope.cancel()
        if deadline.cancelled_caught:
            log.warning("stop_timeout", stop_timeout=options.stop_timeout, pending=uplink.pending())
            supervisor.kill_all()
        # 3. Goodbye: the environment goes offline (sessions still open are ended by it).
        with trio.move_on_after(3):
            try:
                await client.goodbye(env_id)
            except (RelayUnreachable, RelayRejected) as exc:
                log.warning("goodbye_failed", error=str(exc))
        root.cancel_scope.cancel()
    if stopper.error is not None:
        print(f"rcd: {stopper.error}", file=sys.stderr)
    return stopper.exit_code


async def _start_embedded_relay(
    root: trio.Nursery, options: StartOptions, out: TextIO
) -> tuple[str, str]:
    """Start the relay in this process on 127.0.0.1 and mint this machine's credential."""
    from relay import RelayConfig, serve_relay
    from relay.admin import create_login_link

    relay_dir = options.relay_data_dir or data_dir() / "relay"
    config = RelayConfig(host="127.0.0.1", port=options.relay_port, data_dir=relay_dir)
    running = await root.start(serve_relay, config)
    credential = await running.storage.create_environment_credential(machine_id())
    link = await trio.to_thread.run_sync(
        lambda: create_login_link(relay_dir, public_url=running.url)
    )
    print(f"rcd: relay running at {running.url} (embedded, loopback only)", file=out)
    print(f"rcd: sign in from a browser on this machine: {link}", file=out, flush=True)
    return running.url, credential
