"""Approval grants with the real ``claude`` CLI (against the fake Messages API), a real
``rcd start`` and the relay: "Edit/Write under src/ for 10 minutes" writes under src/
without asking, asks for a file outside it and for Bash, stops at once when another client
revokes it, names itself in the log, and outlives a daemon restart and a relay restart
(with what notifies a subscribed device: both kinds of settings the walk-away needs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trio

from relay import admin
from testkit.fakes import FakeMessagesAPI, claude_env, find_claude
from testkit.fakes.push_service import open_push_service
from testkit.harness import Relay, start_daemon, start_relay

Events = list[dict[str, Any]]


async def _turn(relay: Relay, session_id: str, text: str, n: int) -> Events:
    """Send message ``n``; answer "deny" to whatever it asks; its turn's events."""
    before = len(await relay.events(session_id))
    assert (await relay.post_message(session_id, text, f"m{n}")).status_code == 202
    while True:
        events = await relay.wait_events(
            session_id,
            lambda evs: (
                sum(e["kind"] == "turn_result" for e in evs) >= n or _open_request(evs) is not None
            ),
        )
        request = _open_request(events)
        if request is None:
            return events[before:]
        assert (await relay.decide(session_id, request, "deny")).status_code == 202
        await relay.wait_events(session_id, _resolved(request))


def _open_request(events: Events) -> str | None:
    asked = [e["data"]["request_id"] for e in events if e["kind"] == "permission_request"]
    answered = {e["data"]["request_id"] for e in events if e["kind"] == "permission_resolved"}
    return next((r for r in asked if r not in answered), None)


def _resolved(request_id: str) -> Callable[[Events], bool]:
    def holds(events: Events) -> bool:
        return any(
            e["kind"] == "permission_resolved" and e["data"]["request_id"] == request_id
            for e in events
        )

    return holds


def _asked(events: Events) -> list[str]:
    return [e["data"]["tool"] for e in events if e["kind"] == "permission_request"]


def _granted(events: Events) -> list[str | None]:
    return [
        e["data"].get("grant")
        for e in events
        if e["kind"] == "permission_resolved" and e["data"]["origin"] == "grant"
    ]


async def test_a_grant_answers_what_it_covers_asks_the_rest_and_ends_when_revoked(
    tmp_path: Path,
) -> None:
    project, home = tmp_path / "project", tmp_path / "home"
    (project / "src").mkdir(parents=True)
    async with trio.open_nursery() as nursery:
        base_url: str = await nursery.start(FakeMessagesAPI().run)
        relay = await start_relay(nursery, tmp_path / "relay")
        other_token = await trio.to_thread.run_sync(
            admin.create_device_token, tmp_path / "relay", "laptop"
        )
        other = httpx.AsyncClient(
            base_url=relay.url, headers={"Authorization": f"Bearer {other_token}"}, timeout=10
        )
        try:
            daemon = await start_daemon(
                relay, home, project, agent_bin=find_claude(), extra_env=claude_env(home, base_url)
            )
            grants = f"/api/environments/{daemon.environment_id}/grants"
            made = await relay.client.post(
                grants, json={"tools": ["Edit", "Write"], "path": "src/", "minutes": 10}
            )
            assert made.status_code == 201, made.text
            grant = made.json()
            assert grant["path"] == "src" and grant["tools"] == ["Edit", "Write"]
            assert grant["expires_at"] - grant["granted_at"] == 600
            assert grant["by"] == "tests"
            listed = (await other.get(grants)).json()["grants"]
            assert [g["id"] for g in listed] == [grant["id"]]

            session_id = (await relay.create_session(daemon.environment_id)).json()["id"]
            inside = await _turn(relay, session_id, f"write {project}/src/a.txt one", 1)
            assert _asked(inside) == [] and _granted(inside) == [grant["id"]]
            assert (project / "src" / "a.txt").read_text() == "one"

            outside = await _turn(relay, session_id, f"write {project}/b.txt two", 2)
            assert _asked(outside) == ["Write"] and _granted(outside) == []
            assert not (project / "b.txt").exists()
            bash = await _turn(relay, session_id, f"run touch {project}/src/t", 3)
            assert _asked(bash) == ["Bash"] and _granted(bash) == []
            # A relative path and a path that only looks inside (..) are judged as resolved.
            sneaky = await _turn(relay, session_id, f"write {project}/src/../c.txt x", 4)
            assert _asked(sneaky) == ["Write"]

            revoked = await other.delete(f"{grants}/{grant['id']}")
            assert revoked.status_code == 200, revoked.text
            assert revoked.json() == {"grants": []}
            after = await _turn(relay, session_id, f"write {project}/src/d.txt three", 5)
            assert _asked(after) == ["Write"] and _granted(after) == []
            assert not (project / "src" / "d.txt").exists()
            again = await other.delete(f"{grants}/{grant['id']}")
            assert again.status_code == 404 and again.json()["error"]["code"] == "unknown_grant"

            # A grant for the whole directory still asks for what would outlast it: the
            # agent's own settings (allowing Bash for good), git's hooks.
            whole = await relay.client.post(grants, json={"tools": ["Write"], "minutes": 10})
            assert whole.status_code == 201, whole.text
            settings = project / ".claude" / "settings.local.json"
            escalate = await _turn(
                relay, session_id, f'write {settings} {{"permissions":{{"allow":["Bash"]}}}}', 6
            )
            assert _asked(escalate) == ["Write"] and not settings.exists()
            top = await _turn(relay, session_id, f"write {project}/top.txt fine", 7)
            assert _asked(top) == [] and _granted(top) == [whole.json()["id"]]
        finally:
            await other.aclose()
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def test_grants_and_notification_settings_outlive_daemon_and_relay_restarts(
    tmp_path: Path,
) -> None:
    project, home = tmp_path / "project", tmp_path / "home"
    (project / "src").mkdir(parents=True)
    async with trio.open_nursery() as nursery, open_push_service() as push:
        base_url: str = await nursery.start(FakeMessagesAPI().run)
        relay = await start_relay(nursery, tmp_path / "relay", push_loopback_http=True)
        key = (await relay.client.get("/api/push/key")).json()["public_key"]
        settings = {"permission": False, "long_turn_seconds": 300, "offline": True}
        subscribed = await relay.client.post(
            "/api/push/subscriptions",
            json=push.subscribe(expected_key=key).as_json() | {"settings": settings},
        )
        assert subscribed.status_code == 201, subscribed.text
        env, claude = claude_env(home, base_url), find_claude()
        try:
            daemon = await start_daemon(relay, home, project, agent_bin=claude, extra_env=env)
            grants = f"/api/environments/{daemon.environment_id}/grants"
            made = await relay.client.post(
                grants, json={"tools": ["Write"], "path": "src", "minutes": 30}
            )
            assert made.status_code == 201, made.text
            await daemon.stop()
            daemon = await start_daemon(relay, home, project, agent_bin=claude, extra_env=env)
            assert [g["id"] for g in (await relay.client.get(grants)).json()["grants"]] == [
                made.json()["id"]
            ]
            session_id = (await relay.create_session(daemon.environment_id)).json()["id"]
            written = await _turn(relay, session_id, f"write {project}/src/kept.txt yes", 1)
            assert _asked(written) == [] and _granted(written) == [made.json()["id"]]

            # The relay keeps what the daemon last reported: a restarted relay lists it
            # while the daemon is away.
            await daemon.stop()
            await relay.aclose()
            relay = await start_relay(
                nursery, tmp_path / "relay", token=relay.token, push_loopback_http=True
            )
            listed = (await relay.client.get(grants)).json()["grants"]
            assert [g["id"] for g in listed] == [made.json()["id"]]
            # What notifies this device, kept through both restarts as it was set.
            (kept,) = (await relay.client.get("/api/push/subscriptions")).json()["subscriptions"]
            assert kept["id"] == subscribed.json()["id"]
            assert {k: kept["settings"][k] for k in settings} == settings
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
