"""The world the ACP adapter's tests run in: the daemon's supervisor with the adapter over
the scripted ACP agent (``testkit/fakes/acp_agent.py``, a real subprocess), and a log of
what the session would send up (events and the reply being written)."""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

import wire
from daemon import Supervisor
from spawn import AgentOptions
from spawn.acp import AcpAgent
from testkit.harness import REPO

TIMEOUT = 20
AGENT = [sys.executable, str(REPO / "testkit" / "fakes" / "acp_agent.py")]
#: Only the test that runs bubblewrap (on Linux a missing bwrap fails it: tests/run.sh
#: installs it).
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="bubblewrap is Linux's"
)


@attrs.define
class Log:
    events: dict[str, list[wire.Event]] = attrs.Factory(lambda: defaultdict(list))
    partials: list[wire.AssistantPartial] = attrs.Factory(list)
    _changed: trio.Event = attrs.Factory(trio.Event)

    def publish(self, session_id: str, event: wire.Event) -> None:
        self.events[session_id].append(event)
        self._changed.set()
        self._changed = trio.Event()

    def publish_partial(self, session_id: str, piece: wire.AssistantPartial) -> None:
        self.partials.append(piece)
        self._changed.set()
        self._changed = trio.Event()

    def of(self, session_id: str, kind: str) -> list[dict[str, Any]]:
        return [e.data for e in self.events[session_id] if e.kind == kind]

    def kinds(self, session_id: str) -> list[str]:
        return [e.kind for e in self.events[session_id]]

    async def until(self, condition: Callable[[], bool]) -> None:
        with trio.fail_after(TIMEOUT):
            while not condition():
                await self._changed.wait()


@attrs.define
class World:
    supervisor: Supervisor
    log: Log
    project: Path
    dseq: int = 0

    def apply(self, directive: wire.Directive) -> None:
        self.dseq += 1
        self.supervisor.apply(self.dseq, directive)

    def say(self, session_id: str, text: str) -> None:
        n = self.dseq + 1
        self.apply(wire.SendMessage(session_id=session_id, input_id=f"m{n}", text=text, origin="t"))

    async def turns(self, session_id: str, count: int) -> None:
        await self.log.until(lambda: len(self.log.of(session_id, "turn_result")) >= count)

    async def asked(self, session_id: str, count: int = 1) -> dict[str, Any]:
        await self.log.until(lambda: len(self.log.of(session_id, "permission_request")) >= count)
        return self.log.of(session_id, "permission_request")[count - 1]

    async def ended(self, session_id: str) -> None:
        await self.log.until(lambda: "session_ended" in self.log.kinds(session_id))


@asynccontextmanager
async def open_world(
    tmp_path: Path,
    env: dict[str, str] | None = None,
    *,
    argv: list[str] = AGENT,
    options: AgentOptions | None = None,
) -> AsyncIterator[World]:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "state").mkdir()
    log = Log()
    supervisor = Supervisor(
        adapter=AcpAgent(argv=argv, name="acp"),
        directory=project,
        spawn="same-dir",
        capacity=8,
        uplink=log,
        env={"PATH": "/usr/bin:/bin", "ACP_FAKE_STATE": str(tmp_path / "state"), **(env or {})},
        options=options or AgentOptions(),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        yield World(supervisor=supervisor, log=log, project=project)
        with trio.fail_after(TIMEOUT):
            await supervisor.stop_all()
        nursery.cancel_scope.cancel()
