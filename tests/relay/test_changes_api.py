"""The relay's side of a session's work: a client's call becomes a ``workspace`` directive,
the daemon's answer goes to the waiting client and nowhere else — never to another
environment's question, never into storage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing

import wire
from relay import Hub, RelayConfig, SqliteStorage, create_app
from testkit.asgi import ASGITransport
from testkit.waiting import eventually

from .conftest import PUBLIC_URL, Daemon, create_session, register, started, uplink

SECRET = "kiwi-ozone-5531 code that is the user's"


@pytest.fixture
def quick_config(data_dir: Path) -> RelayConfig:
    return RelayConfig(data_dir=data_dir, port=0, public_url=PUBLIC_URL, changes_wait=5)


async def _setup(
    storage: SqliteStorage, client: httpx.AsyncClient, user: dict[str, str]
) -> tuple[Daemon, Daemon, str]:
    mine = await register(client, storage)
    other = await register(client, storage, machine="m2")
    for d in (mine, other):
        await storage.open_downlink(d.environment_id, f"link_{d.environment_id}")
        await storage.save_features(d.environment_id, ["changes"])
    session = (await create_session(client, user, mine.environment_id, prompt="go"))["id"]
    cwd = "/home/dev/project/.rcd/worktrees/go"
    assert (await uplink(client, mine, session, started(cwd=cwd, spawn="worktree"))).status_code
    return mine, other, session


async def _question(storage: SqliteStorage, env_id: str) -> wire.WorkspaceRequest:
    """The newest workspace directive queued for ``env_id``, once there is one."""

    async def queued() -> wire.WorkspaceRequest | None:
        read = await storage.read_downlink(env_id, f"link_{env_id}", 0, 100)
        asked = [
            q.directive for q in read.directives if isinstance(q.directive, wire.WorkspaceRequest)
        ]
        return asked[-1] if asked else None

    found: wire.WorkspaceRequest = await eventually(queued, timeout=5, what="the question")
    return found


def _answer(question: wire.WorkspaceRequest) -> dict[str, Any]:
    change = wire.FileChange(path="lib.py", status="modified", added=1, removed=0)
    diff = wire.FileDiff(
        file=change,
        hunks=[wire.Hunk(header="@@ -0,0 +1 @@", old_start=0, new_start=1, lines=[f"+{SECRET}"])],
    )
    return wire.encode(wire.WorkspaceAnswer(id=question.id, diff=diff))  # type: ignore[no-any-return]


async def test_only_the_asked_environment_answers_and_nothing_is_stored(
    storage: SqliteStorage, hub: Hub, quick_config: RelayConfig, data_dir: Path,
    user: dict[str, str],
) -> None:  # fmt: skip
    app = create_app(storage, hub, quick_config)
    transport = ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
        mine, other, session = await _setup(storage, client, user)
        got: list[httpx.Response] = []

        async def ask() -> None:
            got.append(
                await client.get(
                    f"/api/sessions/{session}/changes", params={"path": "lib.py"}, headers=user
                )
            )

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask)
                question = await _question(storage, mine.environment_id)
                assert (question.ask, question.path, question.session_id) == (
                    "diff", "lib.py", session,
                )  # fmt: skip
                assert question.cwd == "/home/dev/project/.rcd/worktrees/go"
                # Another environment's daemon cannot answer it (it is told nothing).
                stolen = await client.post(
                    f"/daemon/v1/environments/{other.environment_id}/answers",
                    json=_answer(question),
                    headers=other.headers,
                )
                assert stolen.status_code == 204
                await trio.testing.wait_all_tasks_blocked()
                assert not got  # still waiting
                answered = await client.post(
                    f"/daemon/v1/environments/{mine.environment_id}/answers",
                    json=_answer(question),
                    headers=mine.headers,
                )
                assert answered.status_code == 204
        (response,) = got
        assert response.status_code == 200, response.text
        assert response.json()["hunks"][0]["lines"] == [f"+{SECRET}"]
    for stored in data_dir.rglob("*"):
        if stored.is_file():
            assert SECRET.encode() not in stored.read_bytes(), stored


async def test_refusals_keep_their_files_and_silence_is_said(
    storage: SqliteStorage, hub: Hub, quick_config: RelayConfig, user: dict[str, str]
) -> None:
    app = create_app(storage, hub, attrs.evolve(quick_config, changes_wait=0.2))
    transport = ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
        mine, _, session = await _setup(storage, client, user)
        got: list[httpx.Response] = []

        async def merge() -> None:
            got.append(
                await client.post(f"/api/sessions/{session}/changes/merge", json={}, headers=user)
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(merge)
            question = await _question(storage, mine.environment_id)
            assert question.ask == "merge" and question.origin == "phone"
            refusal = wire.WorkspaceError(code="conflicts", message="2 files", files=["a", "b"])
            await client.post(
                f"/daemon/v1/environments/{mine.environment_id}/answers",
                json=wire.encode(wire.WorkspaceAnswer(id=question.id, error=refusal)),
                headers=mine.headers,
            )
        assert got[0].status_code == 409
        assert got[0].json() == {
            "error": {"code": "conflicts", "message": "2 files", "files": ["a", "b"]}
        }
        silent = await client.get(f"/api/sessions/{session}/changes", headers=user)
        assert silent.status_code == 409 and silent.json()["error"]["code"] == "no_answer"
        bad = await client.post(
            f"/api/sessions/{session}/changes/commit", json={"message": ""}, headers=user
        )
        assert bad.status_code == 400
        unsupported_env = (await register(client, storage, machine="m3")).environment_id
        await storage.open_downlink(unsupported_env, "link_x")
        old = await client.get(f"/api/environments/{unsupported_env}/worktrees", headers=user)
        assert old.status_code == 409
        assert old.json()["error"]["code"] == "changes_unsupported"
