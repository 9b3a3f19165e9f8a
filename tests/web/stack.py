"""A real relay and a real daemon as separate processes, driven from plain (sync) code.

The browser tests use Playwright's sync API, which runs its own asyncio loop; so they are
plain functions (pytest-trio leaves those alone) and everything they start is a subprocess:
``rcd relay`` (which can be stopped and started again on the same port, as a real relay
restart is) and ``rcd start`` with the tiny stand-in agent.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import httpx

from relay import admin
from testkit.harness import REPO, home_env
from testkit.waiting import eventually_sync

__all__ = ["DaemonProcess", "RelayProcess", "Stack", "bad_gateway", "start_stack"]

Events = list[dict[str, Any]]

#: The stand-in agent, run as the executable script it is.
TINY_AGENT = str(REPO / "testkit" / "fakes" / "tiny_agent.py")


def _stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it lingers; always reaped."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@attrs.define(eq=False)
class RelayProcess:
    """``rcd relay`` on 127.0.0.1; :meth:`restart` keeps its port and data dir."""

    data_dir: Path
    log_path: Path
    port: int = 0
    url: str = ""
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            offset = log.tell()
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daemon",
                    "relay",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    "--push-loopback-http",  # the tests' push service is on loopback
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(REPO),
            )
        process = self.process

        def serving() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the relay exited {process.returncode}: {self.log()}")
            text = self.log_path.read_bytes()[offset:].decode(errors="replace")
            for line in text.splitlines():
                if line.startswith("rcd relay: serving "):
                    self.url = line.split()[3]
                    self.port = int(self.url.rsplit(":", 1)[1])
                    return True
            return False

        eventually_sync(serving, timeout=20, what="the relay to listen")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def login_link(self) -> str:
        """A one-time sign-in URL, as ``rcd relay login-link`` prints it."""
        return admin.create_login_link(self.data_dir)


@attrs.define(eq=False)
class DaemonProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        _stop(self.process)


@attrs.define(eq=False)
class Stack:
    relay: RelayProcess
    daemon: DaemonProcess
    project: Path
    environment_id: str
    #: The public API with a device token, for checks behind the browser's back.
    api: httpx.Client
    #: The daemon's environment (its home, and the agent's settings).
    env: dict[str, str] = attrs.Factory(dict)

    def events(self, session_id: str) -> Events:
        r = self.api.get(f"/api/sessions/{session_id}/events")
        r.raise_for_status()
        events: Events = r.json()["events"]
        return events

    def wait_events(
        self, session_id: str, predicate: Callable[[Events], bool], timeout: float = 20
    ) -> Events:
        events: Events = []

        def check() -> bool:
            nonlocal events
            events = self.events(session_id)
            return predicate(events)

        try:
            eventually_sync(check, timeout=timeout, what=f"events of {session_id}")
        except AssertionError:
            log = [(e["seq"], e["kind"], e["data"]) for e in events]
            raise AssertionError(f"timed out waiting on {session_id}; log: {log}") from None
        return events

    def environment(self) -> dict[str, Any]:
        r = self.api.get("/api/environments")
        r.raise_for_status()
        for env in r.json()["environments"]:
            if env["id"] == self.environment_id:
                found: dict[str, Any] = env
                return found
        raise AssertionError(f"no environment {self.environment_id}")

    def close(self) -> None:
        self.daemon.stop()
        self.relay.stop()
        self.api.close()


def start_stack(
    tmp: Path,
    *daemon_args: str,
    name: str = "laptop",
    agent_bin: str = TINY_AGENT,
    agent_env: dict[str, str] | None = None,
    prepare_project: Callable[[Path], None] | None = None,
) -> Stack:
    """Relay, paired daemon (the tiny agent, or ``agent_bin`` with ``agent_env``) online,
    and an API client; :meth:`Stack.close` it. ``prepare_project`` fills the (new, empty)
    project directory before the daemon starts in it (a git repository for worktrees)."""
    project = tmp / "project"
    project.mkdir()
    if prepare_project is not None:
        prepare_project(project)
    relay = RelayProcess(data_dir=tmp / "relay", log_path=tmp / "relay.log")
    relay.start()
    daemon: DaemonProcess | None = None
    try:
        token = admin.create_device_token(relay.data_dir, "web-tests")
        api = httpx.Client(
            base_url=relay.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        env = home_env(tmp / "home", agent_env)
        code = admin.create_pair_code(relay.data_dir)
        subprocess.run(
            [sys.executable, "-m", "daemon", "pair", relay.url, code],
            env=env,
            cwd=str(REPO),
            check=True,
            capture_output=True,
            timeout=30,
        )
        log_path = tmp / "daemon.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daemon",
                    "start",
                    str(project),
                    "--relay",
                    relay.url,
                    "--agent-bin",
                    agent_bin,
                    "--name",
                    name,
                    *daemon_args,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(REPO),
            )
        daemon = DaemonProcess(process=process, log_path=log_path)
        found: list[str] = []

        def online() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the daemon exited {process.returncode}: {daemon.log()}")
            r = api.get("/api/environments")
            r.raise_for_status()
            found[:] = [e["id"] for e in r.json()["environments"] if e["online"]]
            return bool(found)

        eventually_sync(online, timeout=20, what="the daemon to come online")
        return Stack(
            relay=relay,
            daemon=daemon,
            project=project,
            environment_id=found[0],
            api=api,
            env=env,
        )
    except BaseException:
        if daemon is not None:
            daemon.stop()
        relay.stop()
        raise


class _BadGatewayHandler(BaseHTTPRequestHandler):
    server: _BadGatewayServer

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        body = b"bad gateway"
        self.send_response(502)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


class _BadGatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    paths: list[str]


@contextmanager
def bad_gateway(port: int) -> Iterator[list[str]]:
    """What a reverse proxy shows while the relay behind it is down: every request on
    127.0.0.1:``port`` gets 502. Yields the paths requested, as they come."""
    server = _BadGatewayServer(("127.0.0.1", port), _BadGatewayHandler)
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def fake_messages_api() -> Iterator[str]:
    """The scripted fake Messages API as a process of its own; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from testkit.fakes.messages_api import main; main()"],
        stdout=subprocess.PIPE,
        cwd=str(REPO),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if not line.startswith("ANTHROPIC_BASE_URL="):
            raise AssertionError(f"the fake Messages API did not start: {line!r}")
        yield line.strip().split("=", 1)[1]
    finally:
        _stop(process)
        if process.stdout is not None:
            process.stdout.close()
