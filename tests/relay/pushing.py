"""Helpers of the Web Push tests: a subscribed device, a session that asks permission (the
fake push service is the ``push_service`` fixture of conftest)."""

from __future__ import annotations

from typing import Any

import httpx

from relay import RunningRelay
from testkit.fakes.push_service import PushService, Subscription

from .conftest import (
    Daemon,
    create_session,
    event,
    register,
    started,
    uplink,
)


async def subscribe(
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


async def session_with(
    http: httpx.AsyncClient, relay: RunningRelay, user: dict[str, str]
) -> tuple[Daemon, str]:
    daemon = await register(http, relay.storage)
    await relay.storage.open_downlink(daemon.environment_id, "link_test")
    session = await create_session(http, user, daemon.environment_id, title="fix the tests")
    assert (await uplink(http, daemon, session["id"], started())).status_code == 200
    return daemon, session["id"]


def permission(seq: int, request_id: str = "req-1") -> dict[str, Any]:
    return event(
        seq,
        "permission_request",
        request_id=request_id,
        tool="Bash",
        input={"command": "rm -rf build && make"},
        description="run make",
    )
