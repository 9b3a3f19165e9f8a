"""A real relay on loopback and a real daemon (with the tiny agent) for the attach tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from relay import admin
from testkit.harness import Daemon, Relay, home_env, start_daemon, start_relay


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        yield relay
        await relay.client.aclose()
        nursery.cancel_scope.cancel()


@pytest.fixture
async def daemon(relay: Relay, tmp_path: Path) -> AsyncIterator[Daemon]:
    project = tmp_path / "project"
    project.mkdir()
    daemon = await start_daemon(relay, tmp_path / "daemon-home", project)
    yield daemon
    await daemon.stop()


@pytest.fixture
def attach_env(tmp_path: Path) -> dict[str, str]:
    """The environment of an attach process: its own throwaway home, no $RCD_TOKEN."""
    env = home_env(tmp_path / "attach-home")
    env.pop("RCD_TOKEN", None)
    env.pop("NO_COLOR", None)
    return env


async def device_token(relay: Relay, name: str) -> str:
    return await trio.to_thread.run_sync(admin.create_device_token, relay.data_dir, name)


async def new_session(relay: Relay, daemon: Daemon, prompt: str, title: str) -> str:
    """A session whose first turn (``echo: PROMPT``) is over."""
    r = await relay.create_session(daemon.environment_id, prompt=prompt, title=title)
    assert r.status_code == 201, r.text
    session_id: str = r.json()["id"]
    await relay.wait_kind(session_id, "turn_result", timeout=10)
    return session_id
