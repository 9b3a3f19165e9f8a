"""A record of the daemon's agents in its state dir, so that the next daemon for the same
directory ends what a killed one left running.

The record (``agents_record_path(directory)``, JSON, mode 0600) names the daemon that owns
it and every agent process it runs, each as pid + start time (``/proc/<pid>/stat``), so a
pid the kernel has since given to another process is never signalled. The daemon marks it
``stopped`` when it ends through its own code (a signal, an outage, an error); a record
found without that mark means the daemon before was killed (``kill -9``, OOM, power loss).

What an agent leaves running is found two ways: its session (agents are session leaders,
``start_new_session``), and a marker in the environment, ``RCD_AGENT_OF=<token>`` with a
token of the daemon's run, which every process the agent starts inherits, even one in a
session of its own (Claude Code runs each shell command in a new session) or reparented to
init (a background job). On Linux an agent also gets SIGTERM the moment the daemon dies
(see :mod:`spawn.process`); the record covers what it leaves, and other systems.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn

import attrs
import structlog
import trio

import wire
from common.procs import ProcessId, Stat, process_id, stat_of
from spawn import AgentAdapter, AgentHandle, AgentLaunch, EventSink, earlier_of

from .errors import DaemonError
from .paths import read_private_json, write_private_json

__all__ = [
    "AGENT_MARKER",
    "AgentsRecord",
    "PreviousRun",
    "ProcessId",
    "RecordedAdapter",
    "end_agents",
    "process_id",
    "take_over",
]

log = structlog.get_logger("daemon.agents")

#: The environment variable that marks every process an agent of this daemon starts.
AGENT_MARKER = "RCD_AGENT_OF"

#: How the daemon before this one ended: ``none`` (no record), ``stopped`` (through its own
#: code) or ``died`` (killed).
PreviousRun = Literal["none", "stopped", "died"]


def _all_stats() -> list[Stat]:
    stats = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and (stat := stat_of(int(entry.name))) is not None:
                stats.append(stat)
    return stats


def _marked(pid: int, marker: bytes) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or another user's
        return False
    return marker in environ.split(b"\0")


def _left_by(agents: Iterable[ProcessId], token: str | None) -> list[int]:
    """Live processes the recorded agents (and what they started) left: those of the
    agents' sessions, and those marked with ``token`` in their environment.

    An agent whose pid now belongs to another process (its start time differs) is skipped:
    its session is long gone, since Linux never reuses a pid that still names a session. A
    gone leader whose session lives on (tools it started) still has its session ended.
    """
    sessions = set()
    for agent in agents:
        now = process_id(agent.pid)
        if now is not None and now != agent:
            log.info("agent_pid_reused", pid=agent.pid)
            continue
        sessions.add(agent.pid)
    if not sessions and token is None:
        return []
    marker = f"{AGENT_MARKER}={token}".encode() if token else None
    return [
        s.pid
        for s in _all_stats()
        if s.pid != os.getpid()
        and (s.session in sessions or (marker is not None and _marked(s.pid, marker)))
    ]


def _signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def end_agents(
    agents: Iterable[ProcessId], token: str | None = None, grace: float = 3.0
) -> int:
    """End every process the agents left (see :func:`_left_by`): SIGTERM, then SIGKILL
    after ``grace``. Returns how many processes there were. Waits (at most ``grace`` + 2 s)
    until they are gone."""
    agents = list(agents)
    pids = await trio.to_thread.run_sync(_left_by, agents, token)
    if not pids:
        return 0
    log.warning("ending_agents_left_by_earlier_run", pids=pids)
    _signal_all(pids, signal.SIGTERM)
    alive = pids
    for sig, wait in ((signal.SIGKILL, grace), (None, 2.0)):
        with trio.move_on_after(wait):
            while alive:
                await trio.sleep(0.05)
                alive = [pid for pid in alive if stat_of(pid) is not None]
        if not alive:
            break
        if sig is not None:
            log.warning("agents_killed", pids=alive)
            # Re-read which are still the same processes before the harder signal.
            again = set(await trio.to_thread.run_sync(_left_by, agents, token))
            _signal_all((pid for pid in alive if pid in again), sig)
    if alive:
        log.error("agents_survived", pids=alive)
    return len(pids)


@attrs.define(eq=False)
class AgentsRecord:
    """This daemon's record (see the module docstring). Writes go to disk at once (a small
    file, replaced atomically)."""

    path: Path
    daemon: ProcessId
    #: Marks this run's agents and everything they start (``RCD_AGENT_OF``).
    token: str = attrs.Factory(lambda: secrets.token_hex(16))
    agents: dict[int, ProcessId] = attrs.Factory(dict)
    stopped: bool = False

    def add(self, pid: int) -> None:
        """Record a just-started agent (a no-op if it is already gone)."""
        found = process_id(pid)
        if found is not None:
            self.agents[pid] = found
            self.save()

    def discard(self, pid: int) -> None:
        """Forget an agent that was reaped."""
        if self.agents.pop(pid, None) is not None:
            self.save()

    def save(self) -> None:
        write_private_json(
            self.path,
            {
                "daemon": attrs.asdict(self.daemon),
                "token": self.token,
                "stopped": self.stopped,
                "agents": [attrs.asdict(a) for a in self.agents.values()],
            },
        )

    async def hold(self) -> NoReturn:
        """Run for the daemon's life; when cancelled (the daemon ends through its own code),
        mark the record ``stopped``. A killed daemon never gets there."""
        try:
            await trio.sleep_forever()
        finally:
            self.stopped = True
            try:
                self.save()
            except OSError as exc:
                log.warning("agents_record_unwritable", path=str(self.path), error=str(exc))


@attrs.frozen(kw_only=True)
class _Found:
    """A record as read from disk."""

    owner: ProcessId | None = None
    token: str | None = None
    stopped: bool = False
    agents: list[ProcessId] = attrs.Factory(list)


def _read(path: Path) -> _Found:
    """A record; a damaged one reads as a killed daemon's."""
    try:
        data = read_private_json(path, "agents")
    except DaemonError as exc:
        log.warning("agents_record_unreadable", error=str(exc))
        return _Found()
    if not data:
        return _Found(stopped=True)

    def as_id(value: Any) -> ProcessId | None:
        if isinstance(value, dict) and all(isinstance(value.get(k), int) for k in ("pid", "start")):
            return ProcessId(pid=value["pid"], start=value["start"])
        return None

    raw_agents = data.get("agents")
    token = data.get("token")
    return _Found(
        owner=as_id(data.get("daemon")),
        token=token if isinstance(token, str) and token else None,
        stopped=data.get("stopped") is True,
        agents=[a for a in map(as_id, raw_agents if isinstance(raw_agents, list) else []) if a],
    )


async def take_over(
    path: Path, directory: Path, grace: float = 3.0
) -> tuple[AgentsRecord, PreviousRun]:
    """Become the daemon of ``directory``: end the agents an earlier daemon left, and start
    a fresh record. Returns it and how the earlier daemon ended.

    Raises :class:`DaemonError` (changing nothing) when the record's daemon still runs:
    another ``rcd start`` serves the directory.
    """
    me = process_id(os.getpid()) or ProcessId(pid=os.getpid(), start=0)
    existed = await trio.Path(path).exists()
    found = await trio.to_thread.run_sync(_read, path)
    owner = found.owner
    if owner is not None and owner != me and process_id(owner.pid) == owner:
        raise DaemonError(
            f"another rcd daemon (pid {owner.pid}) already serves {directory}; "
            f"'rcd status {directory}' tells about it"
        )
    previous: PreviousRun = "none" if not existed else "stopped" if found.stopped else "died"
    if previous == "died":
        log.warning("earlier_daemon_died", pid=owner.pid if owner else None)
    ended = await end_agents(found.agents, found.token, grace)
    if ended:
        log.warning("agents_of_earlier_daemon_ended", processes=ended)
    record = AgentsRecord(path=path, daemon=me)
    record.save()
    return record, previous


@attrs.define(eq=False)
class _RecordOnStart(trio.TaskStatus[AgentHandle]):
    """Records the agent's pid, then passes the handle on to whoever started the session."""

    record: AgentsRecord
    forward: trio.TaskStatus[AgentHandle]
    pids: list[int] = attrs.Factory(list)

    def started(self, value: AgentHandle | None = None) -> None:
        assert value is not None, "an adapter starts with its handle"
        if value.pid is not None:
            self.pids.append(value.pid)
            self.record.add(value.pid)
        self.forward.started(value)


@attrs.define(eq=False)
class RecordedAdapter:
    """An :class:`~spawn.AgentAdapter` whose agents are kept in an :class:`AgentsRecord`
    from the moment they accept input until they are reaped, and carry its marker in their
    environment."""

    inner: AgentAdapter
    record: AgentsRecord
    name: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.name = self.inner.name

    def earlier(
        self, conversation_id: str, env: Mapping[str, str], directory: str | None
    ) -> list[wire.EventData]:
        return earlier_of(self.inner, conversation_id, env, directory)

    async def run(
        self,
        launch: AgentLaunch,
        sink: EventSink,
        *,
        task_status: trio.TaskStatus[AgentHandle] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        recording = _RecordOnStart(record=self.record, forward=task_status)
        launch = attrs.evolve(launch, env={**launch.env, AGENT_MARKER: self.record.token})
        try:
            await self.inner.run(launch, sink, task_status=recording)
        finally:
            # The inner adapter returns only once its process was reaped.
            for pid in recording.pids:
                self.record.discard(pid)
