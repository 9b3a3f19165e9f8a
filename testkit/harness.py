"""Real parts for end-to-end tests and benchmarks: a relay on a loopback port, a daemon as
a real subprocess (``python -m daemon start``) with a throwaway home, and a client that
speaks the public API with a device token."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from relay import RelayConfig, RunningRelay, admin, serve_relay
from relay.storage import SqliteStorage

from .waiting import eventually

REPO = Path(__file__).resolve().parents[1]
TINY_AGENT_SCRIPT = REPO / "testkit" / "fakes" / "tiny_agent.py"


def _tiny_agent_launcher() -> str:
    """An executable that runs the tiny agent with this very interpreter, skipping ``site``
    and any version-manager shim on PATH (both cost tens of milliseconds per start)."""
    # One file per interpreter and checkout, rewritten in place: nothing piles up in /tmp.
    key = hashlib.sha256(f"{sys.executable}\0{TINY_AGENT_SCRIPT}".encode()).hexdigest()[:12]
    launcher = Path(tempfile.gettempdir()) / f"rcd-tiny-agent-{os.getuid()}-{key}"
    launcher.write_text(
        # Linux passes everything after the interpreter as ONE argument: "-SE", not "-S -E".
        f"#!{sys.executable} -SE\n"
        "import runpy\n"
        f"runpy.run_path({str(TINY_AGENT_SCRIPT)!r}, run_name='__main__')\n"
    )
    launcher.chmod(0o755)
    return str(launcher)


TINY_AGENT = _tiny_agent_launcher()

Events = list[dict[str, Any]]


@attrs.define
class Relay:
    #: The relay when it serves in this process; None when it runs in a process of its own
    #: (``rcd relay``), reached only through ``client``.
    running: RunningRelay | None
    data_dir: Path
    client: httpx.AsyncClient
    token: str
    #: Daemons started against this relay; :meth:`aclose` kills any still running.
    daemons: list[Daemon] = attrs.Factory(list)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            for daemon in self.daemons:
                if daemon.process.returncode is None:
                    daemon.process.kill()
                await daemon.process.wait()
            await self.client.aclose()

    @property
    def url(self) -> str:
        return str(self.client.base_url).rstrip("/")

    @property
    def port(self) -> int:
        port = self.client.base_url.port
        assert port is not None
        return port

    @property
    def storage(self) -> SqliteStorage:
        """The storage of a relay serving in this process."""
        assert self.running is not None, "this relay runs in a process of its own"
        return self.running.storage

    async def environments(self) -> list[dict[str, Any]]:
        r = await self.client.get("/api/environments")
        r.raise_for_status()
        envs: list[dict[str, Any]] = r.json()["environments"]
        return envs

    async def create_session(self, env_id: str, **body: Any) -> httpx.Response:
        return await self.client.post(f"/api/environments/{env_id}/sessions", json=body)

    async def session(self, session_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/api/sessions/{session_id}")
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    async def events(self, session_id: str, after: int = 0) -> Events:
        r = await self.client.get(f"/api/sessions/{session_id}/events", params={"after": after})
        r.raise_for_status()
        events: Events = r.json()["events"]
        return events

    async def wait_events(
        self, session_id: str, predicate: Callable[[Events], bool], timeout: float = 30
    ) -> Events:
        """Poll the session log until ``predicate(events)`` holds; fails after ``timeout``
        naming the session and its log."""
        events: Events = []

        async def holds() -> bool:
            nonlocal events
            events = await self.events(session_id)
            return predicate(events)

        try:
            await eventually(holds, timeout=timeout, what=f"session {session_id}'s log")
        except AssertionError:
            kinds = [(e["seq"], e["kind"], e["data"]) for e in events]
            raise AssertionError(
                f"timed out waiting on session {session_id}; log: {kinds}"
            ) from None
        return events

    async def wait_kind(
        self, session_id: str, kind: str, count: int = 1, timeout: float = 30
    ) -> Events:
        return await self.wait_events(
            session_id, lambda evs: sum(e["kind"] == kind for e in evs) >= count, timeout
        )

    async def post_message(self, session_id: str, text: str, message_id: str) -> httpx.Response:
        return await self.client.post(
            f"/api/sessions/{session_id}/messages", json={"id": message_id, "text": text}
        )

    async def decide(self, session_id: str, request_id: str, decision: str) -> httpx.Response:
        return await self.client.post(
            f"/api/sessions/{session_id}/permissions/{request_id}", json={"decision": decision}
        )


async def start_relay(
    nursery: trio.Nursery, data_dir: Path, *, token: str | None = None, **config: Any
) -> Relay:
    """A relay on loopback (``port=0`` unless given) and a client with a device token
    (a new one named "tests", or ``token`` when restarting on the same data dir)."""
    config.setdefault("port", 0)
    running: RunningRelay = await nursery.start(
        serve_relay, RelayConfig(host="127.0.0.1", data_dir=data_dir, **config)
    )
    if token is None:
        token = await trio.to_thread.run_sync(admin.create_device_token, data_dir, "tests")
    client = httpx.AsyncClient(
        base_url=running.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    return Relay(running=running, data_dir=data_dir, client=client, token=token)


def home_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """An environment whose every rcd path lives under ``home``.

    The runtime dir (control sockets) is ``home/run``, a link to a short directory in /tmp
    named after ``home``: a socket's path must fit in 108 bytes, and pytest's own temporary
    paths grow past that as its counter does.
    """
    home.mkdir(parents=True, exist_ok=True)
    short = Path("/tmp") / f"rcd-t-{hashlib.sha256(os.fsencode(home)).hexdigest()[:12]}"
    short.mkdir(exist_ok=True, mode=0o700)
    runtime = home / "run"
    if not runtime.is_symlink() and not runtime.exists():
        runtime.symlink_to(short)
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".state"),
        XDG_DATA_HOME=str(home / ".data"),
        XDG_RUNTIME_DIR=str(short if runtime.is_symlink() else runtime),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def as_user(uid: int | None) -> list[str]:
    """The words that run a command as user ``uid`` (``setpriv``; the caller is root), none
    for None: rcd as a user runs it, without root's way past file modes."""
    if uid is None:
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


async def rcd(
    env: dict[str, str], *args: str, check: bool = True, uid: int | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``rcd ARGS`` (as ``python -m daemon``; as user ``uid`` if given) to completion,
    capturing its output."""
    with trio.fail_after(30):
        result = await trio.run_process(
            [*as_user(uid), sys.executable, "-m", "daemon", *args],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=str(REPO),
        )
    if check and result.returncode != 0:
        raise AssertionError(
            f"rcd {' '.join(args)} exited {result.returncode}: {result.stderr.decode()}"
        )
    return result


@attrs.define
class Daemon:
    process: trio.Process
    env: dict[str, str]
    directory: Path
    log_path: Path
    environment_id: str = ""
    #: The user it runs as (None: this process's; see :func:`as_user`).
    uid: int | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def status(self) -> dict[str, Any]:
        result = await rcd(self.env, "status", str(self.directory), "--json", uid=self.uid)
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the daemon and wait for it to exit; returns its exit code."""
        if self.process.returncode is None:
            self.process.send_signal(sig)
        with trio.fail_after(timeout):
            return await self.process.wait()


async def start_daemon(
    relay: Relay,
    home: Path,
    directory: Path,
    *args: str,
    agent_bin: str | None = TINY_AGENT,
    extra_env: dict[str, str] | None = None,
    via: str | None = None,
    uid: int | None = None,
) -> Daemon:
    """Pair a throwaway home with ``relay``, start ``rcd start`` and wait until it is online.

    ``via`` is the URL the daemon uses to reach the relay (e.g. a flaky proxy in front of it).
    ``agent_bin`` None gives no ``--agent-bin`` (``--agent acp -- CMD`` names its program).
    ``uid``: pair and run as that user (see :func:`as_user`; ``home`` is then theirs).
    """
    relay_url = via or relay.url
    env = home_env(home, extra_env)
    credentials = home / ".config" / "rcd" / "credentials.json"
    if not (credentials.exists() and relay_url in credentials.read_text()):
        # Pair once per home, as a user does: a restart reuses the stored credential.
        code = await trio.to_thread.run_sync(admin.create_pair_code, relay.data_dir)
        await rcd(env, "pair", relay_url, code, uid=uid)
    log_path = home / "daemon.log"
    log_file = log_path.open("wb")
    process = await trio.lowlevel.open_process(
        [
            *as_user(uid),
            sys.executable,
            "-m",
            "daemon",
            "start",
            str(directory),
            "--relay",
            relay_url,
            *(("--agent-bin", agent_bin) if agent_bin is not None else ()),
            *args,
        ],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=str(REPO),
    )
    log_file.close()
    daemon = Daemon(process=process, env=env, directory=directory, log_path=log_path, uid=uid)
    relay.daemons.append(daemon)

    async def online() -> str | None:
        if process.returncode is not None:
            raise AssertionError(f"daemon exited {process.returncode}: {daemon.log()}")
        for e in await relay.environments():
            if e["online"] and e["directory"] == str(directory.resolve()):
                return str(e["id"])
        return None

    try:
        found = await eventually(online, timeout=20, what="the daemon online")
    except AssertionError as exc:
        if process.returncode is None:
            process.kill()
            await process.wait()
            raise AssertionError(f"daemon never came online: {daemon.log()}") from None
        raise exc from None
    daemon.environment_id = str(found)
    return daemon


def count_processes(marker: str) -> int:
    """How many live processes have ``marker`` in their command line."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            count += 1
    return count


def processes_in(directory: Path) -> list[int]:
    """Live processes whose working directory is ``directory`` or below it (agents and
    whatever they started), found through /proc."""
    root = str(directory.resolve())
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (cwd == root or cwd.startswith(root + "/")) and state != "Z":
            pids.append(int(entry.name))
    return pids


#: A command that sleeps, and leaves a job in a session of its own that outlives its
#: parent (as ``setsid server &`` would): no process tree, group or session leads to it
#: any more. It writes the job's pid to ``job.pid`` in its working directory.
LEAVE_BEHIND = """\
import os, time
if os.fork() == 0:
    if os.fork() == 0:
        os.setsid()
        with open("job.pid", "w") as f:
            f.write(str(os.getpid()))
        time.sleep(300)
    os._exit(0)
time.sleep(300)
"""


def pids_alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` that are still running (not zombies), found through /proc."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            alive.append(pid)
    return alive


@asynccontextmanager
async def daemon_on_pty(
    env: dict[str, str], *args: str
) -> AsyncIterator[tuple[trio.Process, trio.lowlevel.FdStream]]:
    """``rcd start ARGS`` as a person runs it, on a real pseudo-terminal (so with its live
    screen); yields the process and the terminal's other end. Killed and reaped at exit
    if it is still running."""
    master_fd, slave_fd = os.openpty()
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "daemon", "start", *args],
        stdin=slave_fd,
        stdout=slave_fd,
        stderr=slave_fd,
        env=env,
        cwd=str(REPO),
        start_new_session=True,
    )
    os.close(slave_fd)
    master = trio.lowlevel.FdStream(master_fd)
    try:
        yield process, master
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            await master.aclose()
