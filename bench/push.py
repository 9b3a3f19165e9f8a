"""A permission request raised → the push taken by the device's push service: how long the
phone waits to be woken, through a real relay (its own event loop, SQLite on disk) and a
push service on loopback (``testkit.fakes.push_service``, which checks the VAPID signature
and decrypts the payload as a real one would).

First with the daemon's side stood in for by its HTTP calls (register, mint a session
token, post the events): what the relay adds, beside its baseline in the same run, the
same uplink request's own answer (the event stored and acknowledged), which every
notification comes after. Then the user's scenario: a real ``rcd start`` whose agent asks
to write, from the request's timestamp to the push taken.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import attrs
import httpx
import trio

from relay import RelayConfig, RunningRelay, serve_relay
from relay.auth import hash_secret, issue_environment_credential
from testkit.fakes.push_service import PushService, open_push_service
from testkit.harness import start_daemon, start_relay

from .stats import Check, Figure

__all__ = ["PushResult", "checks", "measure_push", "section"]

TARGET_S = 1.0


@attrs.frozen(kw_only=True)
class PushResult:
    woken: Figure
    stored: Figure
    #: The user's scenario: a real daemon, its agent asking to write.
    daemon_woken: Figure


async def measure_push(trials: int = 30) -> PushResult:
    with tempfile.TemporaryDirectory(prefix="rcd-bench-push-") as root:
        config = RelayConfig(data_dir=Path(root) / "relay", port=0, push_loopback_http=True)
        async with open_push_service() as service, trio.open_nursery() as nursery:
            relay: RunningRelay = await nursery.start(serve_relay, config)
            try:
                woken, stored = await _measure(relay, service, trials)
            finally:
                nursery.cancel_scope.cancel()
        async with open_push_service() as service, trio.open_nursery() as nursery:
            try:
                daemon_woken = await _measure_daemon(Path(root), service, trials, nursery)
            finally:
                nursery.cancel_scope.cancel()
    return PushResult(woken=woken, stored=stored, daemon_woken=daemon_woken)


async def _measure_daemon(
    root: Path, service: PushService, trials: int, nursery: trio.Nursery
) -> Figure:
    """A real ``rcd start`` whose (stand-in) agent asks to write: from the permission
    request's own timestamp (the daemon's clock) to the push taken by the push service."""
    relay = await start_relay(nursery, root / "relay2", push_loopback_http=True)
    project = root / "project"
    project.mkdir()
    await start_daemon(relay, root / "home", project)
    env_id = (await relay.client.get("/api/environments")).json()["environments"][0]["id"]
    key = (await relay.client.get("/api/push/key")).json()["public_key"]
    subscription = service.subscribe(expected_key=key)
    made = await relay.client.post("/api/push/subscriptions", json=subscription.as_json())
    assert made.status_code == 201, made.text
    created = await relay.create_session(env_id, title="bench")
    session_id = created.json()["id"]
    await relay.wait_kind(session_id, "session_started")
    # The push service's clock is trio's; the event's is the daemon's wall clock.
    offset = time.time() - trio.current_time()
    woken = []
    for n in range(trials):
        sent = await relay.post_message(session_id, f"write {project}/f{n}.txt {n}", f"m{n}")
        assert sent.status_code == 202, sent.text
        [*_, delivery] = await service.wait_for(subscription.id, n + 1)
        events = await relay.wait_kind(session_id, "permission_request", n + 1)
        raised = [e for e in events if e["kind"] == "permission_request"][n]["at"]
        woken.append(delivery.received_at + offset - raised)
        request_id = delivery.json()["request"]["id"]
        decided = await relay.client.post(
            f"/api/sessions/{session_id}/permissions/{request_id}", json={"decision": "deny"}
        )
        assert decided.status_code == 202, decided.text
        await relay.wait_kind(session_id, "turn_result", n + 1)
    assert service.rejections == [], service.rejections
    return Figure(
        name="the user's scenario: a real daemon's agent asks → push taken",
        unit="ms",
        samples=tuple(s * 1000 for s in woken),
    )


async def _measure(relay: RunningRelay, service: PushService, trials: int) -> tuple[Figure, Figure]:
    await relay.storage.add_device_token("bench", hash_secret("rcd_dev_bench"))
    user = {"authorization": "Bearer rcd_dev_bench"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{relay.port}", timeout=30) as http:
        key = (await http.get("/api/push/key", headers=user)).json()["public_key"]
        subscription = service.subscribe(expected_key=key)
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
            [*_, delivery] = await service.wait_for(subscription.id, n + 1)
            woken.append(delivery.received_at - raised)
        assert service.rejections == [], service.rejections

    def figure(name: str, seconds: list[float]) -> Figure:
        return Figure(name=name, unit="ms", samples=tuple(s * 1000 for s in seconds))

    return (
        figure("permission request raised → push taken by the push service", woken),
        figure("baseline: the same event's uplink request answered", stored),
    )


def checks(result: PushResult) -> list[Check]:
    return [
        Check(
            name="a permission request reaches a subscribed device (Web Push), p99",
            target=f"< {TARGET_S:.0f} s",
            measured=f"{result.daemon_woken.p99:.0f} ms (median"
            f" {result.daemon_woken.median:.0f} ms; relay alone {result.woken.p99:.0f} ms)",
            ok=result.daemon_woken.p99 < TARGET_S * 1000 and result.woken.p99 < TARGET_S * 1000,
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
        result.daemon_woken.row(),
        "",
        "A real relay (in this process) and a push service on loopback that verifies the"
        " VAPID signature and decrypts each payload; the daemon is stood in for by its HTTP"
        " calls. The push goes out after the event is stored, from the relay's notifier task,"
        f" so it adds **{result.woken.median - result.stored.median:.1f} ms** at the median"
        " to the event's own uplink answer. The last row is the user's scenario: a real"
        " `rcd start` (its stand-in agent asking to write), from the permission request's own"
        " timestamp (the daemon's clock) to the push taken. A phone's real push service adds"
        " its own delivery time, outside rcd.",
        "",
    ]
