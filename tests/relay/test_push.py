"""Web Push from a real relay to a fake push service (``testkit.fakes.push_service``), which
checks the VAPID signature and decrypts each payload with the subscribed browser's keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from relay import RelayConfig, RunningRelay, serve_relay
from relay.auth import hash_secret
from relay.notify import Note
from testkit.fakes.push_service import PushService
from testkit.sse import sse
from wire import PushSettings

from .conftest import (
    GUARD,
    PUBLIC_URL,
    event,
    make_device_token,
    register,
    uplink,
)
from .pushing import permission, session_with, subscribe


async def test_a_permission_request_reaches_a_subscribed_device(
    relay: RunningRelay, http: httpx.AsyncClient, push_service: PushService
) -> None:
    with trio.fail_after(GUARD):
        user = await make_device_token(relay.storage)
        subscription, shown = await subscribe(http, push_service, user)
        assert shown["settings"]["permission"] is True
        daemon, session_id = await session_with(http, relay, user)
        raised = trio.current_time()
        assert (await uplink(http, daemon, session_id, permission(2))).status_code == 200
        [delivery] = await push_service.wait_for(subscription.id)
    note = delivery.json()
    assert note["kind"] == "permission"
    assert note["title"] == "fix the tests: allow Bash?"
    token = note["request"].pop("answer_token")
    assert note["request"] == {"id": "req-1", "tool": "Bash", "summary": "rm -rf build && make"}
    # Its Allow and Deny answer with a credential for this one request, never the device's.
    assert token.startswith("rcd_ans_") and user["authorization"].split()[1] not in token
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
        quiet, _ = await subscribe(
            http, push_service, user, settings={"permission": False, "long_turn_seconds": 30}
        )
        loud, made = await subscribe(http, push_service, user)
        changed = await http.put(
            f"/api/push/subscriptions/{made['id']}/settings",
            json={"long_turn_seconds": 30},
            headers=user,
        )
        assert changed.status_code == 200, changed.text
        daemon, session_id = await session_with(http, relay, user)
        short = event(3, "turn_result", ok=True, duration_ms=29_000, cost_usd=None)
        long = event(4, "turn_result", ok=True, duration_ms=95_000, cost_usd=None)
        await uplink(http, daemon, session_id, permission(2), short, long)
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
        gone, _ = await subscribe(http, push_service, user)
        kept, _ = await subscribe(http, push_service, user)
        push_service.expire(gone.id, status=410)
        daemon, session_id = await session_with(http, relay, user)
        await uplink(http, daemon, session_id, permission(2, "req-1"))
        await push_service.wait_for(kept.id)
        await push_service.wait_until(lambda: len(push_service.gone) == 1)
        # The next notification goes to the one left only.
        await uplink(http, daemon, session_id, permission(3, "req-2"))
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
        left, _ = await subscribe(http, push_service, leaving)
        staying, _ = await subscribe(http, push_service, user)
        if how == "token revoked":
            assert await relay.storage.revoke_device_token("old-phone")
        else:
            assert (await http.post("/logout", headers=leaving)).status_code == 204
        daemon, session_id = await session_with(http, relay, user)
        # Two notifications: each one's pushes are all answered before the next's.
        await uplink(http, daemon, session_id, permission(2, "req-1"), permission(3, "req-2"))
        await push_service.wait_for(staying.id, 2)
    assert push_service.deliveries_to(left.id) == []
    assert push_service.gone == [] and push_service.rejections == []


async def test_a_device_sees_and_changes_only_its_own_subscriptions(
    relay: RunningRelay, http: httpx.AsyncClient, push_service: PushService
) -> None:
    with trio.fail_after(GUARD):
        phone = await make_device_token(relay.storage)
        tablet = await make_device_token(relay.storage, "tablet")
        _, mine = await subscribe(http, push_service, phone)
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
    ("endpoint", "says"),
    [
        ("https://localhost:8443/x", "not an address or a local name"),
        ("https://10.0.0.1:8443/x", "not an address"),
        ("https://169.254.169.254/latest", "not an address"),
        ("https://0/x", "not an address"),
        ("https://printer.local/x", "not an address or a local name"),
    ],
)
async def test_endpoints_that_are_no_push_service_are_refused(
    data_dir: Path, endpoint: str, says: str
) -> None:
    """The relay posts to what a device gives: never this machine, the LAN, a cloud's
    metadata service, or plain HTTP (loopback HTTP only where a test says so)."""
    config = RelayConfig(data_dir=data_dir, port=0, public_url=PUBLIC_URL)
    keys = {"p256dh": "B" + "A" * 85 + "Q", "auth": "A" * 21 + "g"}
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            relay: RunningRelay = await nursery.start(serve_relay, config)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{relay.port}") as http:
                user = await make_device_token(relay.storage)
                for url, why in ((endpoint, says), ("http://127.0.0.1:9/push/1", "over https")):
                    answer = await http.post(
                        "/api/push/subscriptions", json={"endpoint": url, "keys": keys},
                        headers=user,
                    )  # fmt: skip
                    assert answer.status_code == 403, answer.text
                    assert answer.json()["error"]["code"] == "endpoint_refused"
                    assert why in answer.json()["error"]["message"]
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"endpoint": "ftp://push.example/x"}, "endpoint must be an https:// URL"),
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
        data_dir=data_dir,
        port=0,
        public_url=PUBLIC_URL,
        keepalive_interval=0.2,
        offline_grace=0.2,
        push_loopback_http=True,
    )
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            relay: RunningRelay = await nursery.start(serve_relay, config)
            url = f"http://127.0.0.1:{relay.port}"
            async with httpx.AsyncClient(base_url=url, timeout=GUARD) as http:
                user = await make_device_token(relay.storage)
                watching, _ = await subscribe(
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


async def test_a_key_that_is_no_point_drops_its_subscription_and_harms_no_other(
    relay: RunningRelay, http: httpx.AsyncClient, push_service: PushService
) -> None:
    """A key of the right shape that is not on the curve: its pushes cannot be made, so the
    subscription goes; the relay and the other devices carry on."""
    with trio.fail_after(GUARD):
        user = await make_device_token(relay.storage)
        broken = push_service.subscribe().as_json()
        broken["keys"]["p256dh"] = "BA" + "A" * 84 + "Q"  # 0x04 then zeros: no P-256 point
        made = await http.post("/api/push/subscriptions", json=broken, headers=user)
        assert made.status_code == 201, made.text
        good, _ = await subscribe(http, push_service, user)
        daemon, session_id = await session_with(http, relay, user)
        # Bad data in an event (the daemon's to fill) notifies nothing and fails nothing.
        odd = event(2, "turn_result", ok=True, duration_ms="95000", cost_usd=None)
        assert (await uplink(http, daemon, session_id, odd)).status_code == 200
        assert (await uplink(http, daemon, session_id, permission(3))).status_code == 200
        [delivery] = await push_service.wait_for(good.id)
        listed = (await http.get("/api/push/subscriptions", headers=user)).json()
    assert delivery.json()["kind"] == "permission"
    assert [s["endpoint"] for s in listed["subscriptions"]] == [good.endpoint]
