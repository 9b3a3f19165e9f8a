"""Web Push from a real relay to a fake push service (``testkit.fakes.push_service``), which
checks the VAPID signature and decrypts each payload with the subscribed browser's keys."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from relay import RelayConfig, RunningRelay, serve_relay
from relay.auth import hash_secret
from relay.notify import Note
from testkit.fakes.push_service import PushService, Subscription, open_push_service
from testkit.sse import sse
from testkit.waiting import eventually
from wire import PushSettings

from .conftest import (
    GUARD,
    PUBLIC_URL,
    Daemon,
    create_session,
    event,
    make_device_token,
    register,
    started,
    uplink,
)


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    async with open_push_service() as service:
        yield service


async def _subscribe(
    http: httpx.AsyncClient, service: PushService, headers: dict[str, str], **body: Any
) -> tuple[Subscription, dict[str, Any]]:
    key = await http.get("/api/push/key", headers=headers)
    assert key.status_code == 200, key.text
    subscription = service.subscribe(expected_key=key.json()["public_key"])
    made = await http.post(
        "/api/push/subscriptions", json=subscription.as_json() | body, headers=headers
    )
    assert made.status_code == 201, made.text
    return subscription, made.json()


async def _session(
    http: httpx.AsyncClient, relay: RunningRelay, user: dict[str, str]
) -> tuple[Daemon, str]:
    daemon = await register(http, relay.storage)
    await relay.storage.open_downlink(daemon.environment_id, "link_test")
    session = await create_session(http, user, daemon.environment_id, title="fix the tests")
    assert (await uplink(http, daemon, session["id"], started())).status_code == 200
    return daemon, session["id"]


def _permission(seq: int, request_id: str = "req-1") -> dict[str, Any]:
    return event(
        seq,
        "permission_request",
        request_id=request_id,
        tool="Bash",
        input={"command": "rm -rf build && make"},
        description="run make",
    )


async def test_a_permission_request_reaches_a_subscribed_device(
    relay: RunningRelay, http: httpx.AsyncClient, push_service: PushService
) -> None:
    with trio.fail_after(GUARD):
        user = await make_device_token(relay.storage)
        subscription, shown = await _subscribe(http, push_service, user)
        assert shown["settings"]["permission"] is True
        daemon, session_id = await _session(http, relay, user)
        raised = trio.current_time()
        assert (await uplink(http, daemon, session_id, _permission(2))).status_code == 200
        [delivery] = await push_service.wait_for(subscription.id)
    note = delivery.json()
    assert note["kind"] == "permission"
    assert note["title"] == "fix the tests: allow Bash?"
    assert note["request"] == {"id": "req-1", "tool": "Bash", "summary": "rm -rf build && make"}
    assert note["tag"] == f"session-{session_id}"
    assert note["url"] == f"/?session={session_id}"
    # Only what the notification shows: never the conversation, never a credential.
    assert set(note) == {"kind", "tag", "session_id", "title", "body", "url", "request"}
    assert delivery.urgency == "high"
    assert delivery.topic is not None and len(delivery.topic) <= 32
    assert delivery.ttl > 0
    assert delivery.received_at - raised < GUARD
    assert push_service.rejections == []
    listed = await http.get("/api/push/subscriptions", headers=user)
    assert listed.json()["subscriptions"][0]["last_sent_at"] is not None


async def test_settings_choose_what_notifies(
    relay: RunningRelay, http: httpx.AsyncClient, push_service: PushService
) -> None:
    with trio.fail_after(GUARD):
        user = await make_device_token(relay.storage)
        quiet, _ = await _subscribe(
            http, push_service, user, settings={"permission": False, "long_turn_seconds": 30}
        )
        loud, made = await _subscribe(http, push_service, user)
        changed = await http.put(
            f"/api/push/subscriptions/{made['id']}/settings",
            json={"long_turn_seconds": 30},
            headers=user,
        )
        assert changed.status_code == 200, changed.text
        daemon, session_id = await _session(http, relay, user)
        short = event(3, "turn_result", ok=True, duration_ms=29_000, cost_usd=None)
        long = event(4, "turn_result", ok=True, duration_ms=95_000, cost_usd=None)
        await uplink(http, daemon, session_id, _permission(2), short, long)
        [turn] = await push_service.wait_for(quiet.id)
        first, second = await push_service.wait_for(loud.id, 2)
    assert turn.json()["kind"] == "long_turn"
    assert turn.json()["body"] == "after 1 min 35 s"
    assert [first.json()["kind"], second.json()["kind"]] == ["permission", "long_turn"]


async def test_a_gone_subscription_is_dropped(
    relay: RunningRelay, http: httpx.AsyncClient, push_service: PushService
) -> None:
    with trio.fail_after(GUARD):
        user = await make_device_token(relay.storage)
        gone, _ = await _subscribe(http, push_service, user)
        kept, _ = await _subscribe(http, push_service, user)
        push_service.expire(gone.id, status=410)
        daemon, session_id = await _session(http, relay, user)
        await uplink(http, daemon, session_id, _permission(2, "req-1"))
        await push_service.wait_for(kept.id)
        await push_service.wait_until(lambda: len(push_service.gone) == 1)
        # The next notification goes to the one left only.
        await uplink(http, daemon, session_id, _permission(3, "req-2"))
        await push_service.wait_for(kept.id, 2)
        listed = await http.get("/api/push/subscriptions", headers=user)
    assert [s["endpoint"] for s in listed.json()["subscriptions"]] == [kept.endpoint]
    assert len(push_service.gone) == 1


@pytest.mark.parametrize("how", ["token revoked", "signed out"])
async def test_a_device_revoked_or_signed_out_gets_nothing(
    relay: RunningRelay, http: httpx.AsyncClient, push_service: PushService, how: str
) -> None:
    with trio.fail_after(GUARD):
        user = await make_device_token(relay.storage)
        if how == "token revoked":
            leaving = await make_device_token(relay.storage, "old-phone")
        else:
            await relay.storage.add_login_code(hash_secret("login"), 60)
            assert await relay.storage.redeem_login_code(
                hash_secret("login"), hash_secret("cookie"), 3600
            )
            leaving = {"cookie": "rcd_session=cookie", "x-requested-with": "rcd"}
        left, _ = await _subscribe(http, push_service, leaving)
        staying, _ = await _subscribe(http, push_service, user)
        if how == "token revoked":
            assert await relay.storage.revoke_device_token("old-phone")
        else:
            assert (await http.post("/logout", headers=leaving)).status_code == 204
        daemon, session_id = await _session(http, relay, user)
        # Two notifications: each one's pushes are all answered before the next's.
        await uplink(http, daemon, session_id, _permission(2, "req-1"), _permission(3, "req-2"))
        await push_service.wait_for(staying.id, 2)
    assert push_service.deliveries_to(left.id) == []
    assert push_service.gone == [] and push_service.rejections == []


async def test_a_device_sees_and_changes_only_its_own_subscriptions(
    relay: RunningRelay, http: httpx.AsyncClient, push_service: PushService
) -> None:
    with trio.fail_after(GUARD):
        phone = await make_device_token(relay.storage)
        tablet = await make_device_token(relay.storage, "tablet")
        _, mine = await _subscribe(http, push_service, phone)
        assert (await http.get("/api/push/subscriptions", headers=tablet)).json() == {
            "subscriptions": []
        }
        path = f"/api/push/subscriptions/{mine['id']}"
        refused = await http.put(f"{path}/settings", json={"error": False}, headers=tablet)
        assert refused.status_code == 404
        assert (await http.delete(path, headers=tablet)).status_code == 404
        assert (await http.delete(path, headers=phone)).status_code == 204
        assert (await http.get("/api/push/subscriptions", headers=phone)).json() == {
            "subscriptions": []
        }


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"endpoint": "http://push.example/x"}, "endpoint must be an https:// URL"),
        ({"keys": {"p256dh": "short", "auth": "A" * 21 + "g"}}, "p256dh must be"),
        ({"settings": {"long_turn_seconds": 5}}, "long_turn_seconds must be between"),
        ({"settings": {"loud": True}}, "loud"),
    ],
)
async def test_bad_subscriptions_are_refused_with_what_is_wrong(
    relay: RunningRelay,
    http: httpx.AsyncClient,
    push_service: PushService,
    body: dict[str, Any],
    says: str,
) -> None:
    user = await make_device_token(relay.storage)
    valid = push_service.subscribe().as_json()
    answer = await http.post("/api/push/subscriptions", json=valid | body, headers=user)
    assert answer.status_code == 400
    assert says in answer.json()["error"]["message"]


async def test_the_relay_keeps_its_key_across_restarts(config: RelayConfig) -> None:
    """Every browser's subscription names the key: a new one would orphan them all."""
    keys = []
    for n in range(2):
        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                running: RunningRelay = await nursery.start(serve_relay, config)
                user = await make_device_token(running.storage, f"phone-{n}")
                url = f"http://127.0.0.1:{running.port}"
                async with httpx.AsyncClient(base_url=url) as http:
                    keys.append((await http.get("/api/push/key", headers=user)).json())
                nursery.cancel_scope.cancel()
    assert keys[0] == keys[1] and len(keys[0]["public_key"]) == 87
    assert (config.data_dir / "vapid.pem").stat().st_mode & 0o077 == 0


async def test_an_environment_still_offline_after_the_grace_notifies(
    data_dir: Path, push_service: PushService
) -> None:
    config = RelayConfig(
        data_dir=data_dir, port=0, public_url=PUBLIC_URL, keepalive_interval=0.2, offline_grace=0.2
    )
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            relay: RunningRelay = await nursery.start(serve_relay, config)
            url = f"http://127.0.0.1:{relay.port}"
            async with httpx.AsyncClient(base_url=url, timeout=GUARD) as http:
                user = await make_device_token(relay.storage)
                watching, _ = await _subscribe(
                    http, push_service, user, settings={"offline": True, "permission": False}
                )
                daemon = await register(http, relay.storage)
                downlink = f"/daemon/v1/environments/{daemon.environment_id}/downlink"
                async with sse(http, downlink, daemon.headers) as (response, _):
                    assert response.status_code == 200
                # The daemon's link is gone (the connection closed) and stays gone.
                [delivery] = await push_service.wait_for(watching.id)
            nursery.cancel_scope.cancel()
    note = delivery.json()
    assert note["kind"] == "offline"
    assert note["title"] == "laptop is offline"
    assert note["tag"] == f"environment-{daemon.environment_id}"
    assert push_service.rejections == []


def test_offline_notifies_only_who_asked() -> None:
    note = Note(kind="offline", tag="environment-e", title="t", body="b", url="/")
    assert not note.wanted_by(PushSettings())
    assert note.wanted_by(PushSettings(offline=True))
    turn = Note(kind="long_turn", tag="session-s", title="t", body="b", url="/", duration_ms=61_000)
    assert turn.wanted_by(PushSettings()) and not turn.wanted_by(PushSettings(long_turn_seconds=62))


async def test_a_notify_command_gets_each_notification_as_json(
    data_dir: Path, tmp_path: Path
) -> None:
    received = tmp_path / "received.jsonl"
    script = tmp_path / "notify.py"
    script.write_text(
        f"import sys\nwith open({str(received)!r}, 'a') as out:\n    out.write(sys.stdin.read())\n"
    )
    config = RelayConfig(
        data_dir=data_dir,
        port=0,
        public_url=PUBLIC_URL,
        notify_command=(sys.executable, str(script)),
    )
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            relay: RunningRelay = await nursery.start(serve_relay, config)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{relay.port}") as http:
                user = await make_device_token(relay.storage)
                daemon, session_id = await _session(http, relay, user)
                quick = event(3, "turn_result", ok=True, duration_ms=2_000, cost_usd=None)
                ended = event(4, "session_ended", reason="agent_exited", worktree_kept=False,
                              branch=None)  # fmt: skip
                await uplink(http, daemon, session_id, _permission(2), quick, ended)

                async def both() -> bool:
                    return received.exists() and received.read_text().count("\n") == 2

                await eventually(both, timeout=GUARD, what="two notifications")
            nursery.cancel_scope.cancel()
    first, second = (json.loads(line) for line in received.read_text().splitlines())
    assert first["kind"] == "permission" and first["request"]["tool"] == "Bash"
    assert first["url"] == f"{PUBLIC_URL}/?session={session_id}"
    assert second["kind"] == "session_ended" and second["body"] == "agent exited"
