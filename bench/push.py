"""A permission request raised → the push taken by the device's push service: how long the
phone waits to be woken, through a real relay (its own event loop, SQLite on disk) and a
push service on loopback (``testkit.fakes.push_service``, which checks the VAPID signature
and decrypts the payload as a real one would).

The daemon's side is stood in for by its HTTP calls (register, mint a session token, post
the events), so the figure is what the relay adds; the daemon's own part of a permission
round trip is measured by the round-trip benchmarks. Baseline, in the same run: the same
uplink request's own answer (the event stored and acknowledged), which every notification
comes after.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import attrs
import httpx
import trio

from relay import RelayConfig, RunningRelay, serve_relay
from relay.auth import hash_secret, issue_environment_credential
from testkit.fakes.push_service import open_push_service

from .stats import Check, Figure

__all__ = ["PushResult", "checks", "measure_push", "section"]

TARGET_S = 1.0


@attrs.frozen(kw_only=True)
class PushResult:
    woken: Figure
    stored: Figure


async def measure_push(trials: int = 30) -> PushResult:
    with tempfile.TemporaryDirectory(prefix="rcd-bench-push-") as root:
        config = RelayConfig(data_dir=Path(root) / "relay", port=0)
        async with open_push_service() as service, trio.open_nursery() as nursery:
            relay: RunningRelay = await nursery.start(serve_relay, config)
            try:
                return await _measure(relay, service, trials)
            finally:
                nursery.cancel_scope.cancel()


async def _measure(relay: RunningRelay, service: object, trials: int) -> PushResult:
    await relay.storage.add_device_token("bench", hash_secret("rcd_dev_bench"))
    user = {"authorization": "Bearer rcd_dev_bench"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{relay.port}", timeout=30) as http:
        key = (await http.get("/api/push/key", headers=user)).json()["public_key"]
        subscription = service.subscribe(expected_key=key)  # type: ignore[attr-defined]
        made = await http.post("/api/push/subscriptions", json=subscription.as_json(), headers=user)
        assert made.status_code == 201, made.text
        credential = await issue_environment_credential(relay.storage, "bench-machine")
        daemon = {"authorization": f"Bearer {credential}"}
        registered = await http.post(
            "/daemon/v1/register",
            headers=daemon,
            json={
                "name": "bench", "machine": "bench-machine", "directory": "/srv/project",
                "spawn": "same-dir", "capacity": 4, "agent": "claude",
            },
        )  # fmt: skip
        environment_id = registered.json()["environment_id"]
        await relay.storage.open_downlink(environment_id, "link_bench")
        created = await http.post(
            f"/api/environments/{environment_id}/sessions", json={"title": "bench"}, headers=user
        )
        session_id = created.json()["id"]
        minted = await http.post(
            f"/daemon/v1/environments/{environment_id}/tokens",
            json={"session_id": session_id},
            headers=daemon,
        )
        session = {"authorization": f"Bearer {minted.json()['token']}"}
        events = f"/daemon/v1/sessions/{session_id}/events"

        async def post(seq: int, kind: str, **data: object) -> None:
            event = {"seq": seq, "kind": kind, "at": 1.7e9 + seq, "data": data}
            answer = await http.post(events, json={"events": [event]}, headers=session)
            assert answer.status_code == 200, answer.text

        await post(
            1, "session_started", cwd="/srv/project", spawn="same-dir", branch=None,
            agent="claude", agent_session_id="bench",
        )  # fmt: skip
        woken, stored = [], []
        for n in range(trials):
            raised = trio.current_time()
            await post(
                n + 2, "permission_request", request_id=f"req-{n}", tool="Bash",
                input={"command": f"make test-{n}"}, description="run the tests",
            )  # fmt: skip
            stored.append(trio.current_time() - raised)
            [*_, delivery] = await service.wait_for(subscription.id, n + 1)  # type: ignore[attr-defined]
            woken.append(delivery.received_at - raised)
        assert service.rejections == [], service.rejections  # type: ignore[attr-defined]

    def figure(name: str, seconds: list[float]) -> Figure:
        return Figure(name=name, unit="ms", samples=tuple(s * 1000 for s in seconds))

    return PushResult(
        woken=figure("permission request raised → push taken by the push service", woken),
        stored=figure("baseline: the same event's uplink request answered", stored),
    )


def checks(result: PushResult) -> list[Check]:
    return [
        Check(
            name="a permission request reaches a subscribed device (Web Push), p99",
            target=f"< {TARGET_S:.0f} s",
            measured=f"{result.woken.p99:.0f} ms (median {result.woken.median:.0f} ms)",
            ok=result.woken.p99 < TARGET_S * 1000,
        )
    ]


def section(result: PushResult) -> list[str]:
    return [
        "## Notifications (a permission request → the device's push service)",
        "",
        "| figure | median | p99 | trials |",
        "|---|---|---|---|",
        result.stored.row(),
        result.woken.row(),
        "",
        "A real relay (in this process) and a push service on loopback that verifies the"
        " VAPID signature and decrypts each payload; the daemon is stood in for by its HTTP"
        " calls. The push goes out after the event is stored, from the relay's notifier task,"
        f" so it adds **{result.woken.median - result.stored.median:.1f} ms** at the median"
        " to the event's own uplink answer. A phone's real push service adds its own delivery"
        " time, outside rcd.",
        "",
    ]
