"""Notifications answered and routed: a permission's Allow / Deny token, --notify-command,
who the push services are told runs the relay, a backlog that drops the oldest."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import types
from collections.abc import Awaitable
from pathlib import Path

import httpx
import pytest
import trio

import wire
from relay import Hub, RelayConfig, RunningRelay, SqliteStorage, create_app, serve_relay
from relay.notify import BACKLOG, Notifier, _Offline
from relay.push import PushOutcome
from relay.records import ClientPrincipal, PushSubscriptionRecord
from relay.tokens import AnswerTokens
from testkit.asgi import ASGITransport
from testkit.fakes.push_service import PushService
from testkit.waiting import eventually
from wire import PushSettings

from .conftest import (
    GUARD,
    PUBLIC_URL,
    create_session,
    event,
    make_device_token,
    queued_directives,
    register,
    started,
    uplink,
)
from .pushing import permission, session_with, subscribe


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
                daemon, session_id = await session_with(http, relay, user)
                quick = event(3, "turn_result", ok=True, duration_ms=2_000, cost_usd=None)
                ended = event(4, "session_ended", reason="agent_exited", worktree_kept=False,
                              branch=None)  # fmt: skip
                await uplink(http, daemon, session_id, permission(2), quick, ended)

                async def both() -> bool:
                    return received.exists() and received.read_text().count("\n") == 2

                await eventually(both, timeout=GUARD, what="two notifications")
            nursery.cancel_scope.cancel()
    first, second = (json.loads(line) for line in received.read_text().splitlines())
    assert first["kind"] == "permission" and first["request"]["tool"] == "Bash"
    assert first["url"] == f"{PUBLIC_URL}/?session={session_id}"
    assert second["kind"] == "session_ended" and second["body"] == "agent exited"


def test_the_push_subject_is_one_push_services_take() -> None:
    def subject(url: str) -> str:
        return RelayConfig(data_dir=Path("/nonexistent"), public_url=url).push_subject

    assert subject("https://relay.example.com:8443") == "https://relay.example.com"
    assert subject("https://relay.example.com/rcd") == "https://relay.example.com"
    assert subject("http://127.0.0.1:7878") == "mailto:rcd-relay@localhost"
    config = RelayConfig(data_dir=Path("/nonexistent"), push_contact="mailto:me@example.com")
    assert config.push_subject == "mailto:me@example.com"
    with pytest.raises(ValueError, match="a push contact is"):
        RelayConfig(data_dir=Path("/nonexistent"), push_contact="me@example.com")


def test_a_full_backlog_drops_the_oldest() -> None:
    notifier = Notifier(storage=None, sender=None)  # type: ignore[arg-type]
    permission = wire.make_event(
        1, 1.0, wire.PermissionRequest(request_id="r", tool="Bash", input={}, description="")
    )
    for n in range(BACKLOG + 1):
        notifier.offer(f"ses_{n}", [permission])
    assert notifier.dropped == 1
    first = notifier._receive.receive_nowait()
    assert first == (f"ses_{1}", [permission])


async def test_a_notifications_answer_token_answers_its_one_request_until_it_expires(
    storage: SqliteStorage, hub: Hub, config: RelayConfig, data_dir: Path
) -> None:
    clock = [1_000.0]
    answers = AnswerTokens(ttl=3600, clock=lambda: clock[0])
    app = create_app(storage, hub, config, answers=answers)
    transport = ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
        user = await make_device_token(storage)
        phone = ClientPrincipal(name="phone", via="token")
        subscription = await storage.add_push_subscription(
            phone, "https://push.example/s/1", "B" + "A" * 85 + "Q", "A" * 21 + "g", None
        )
        daemon = await register(client, storage)
        await storage.open_downlink(daemon.environment_id, "link_test")
        session_id = (await create_session(client, user, daemon.environment_id))["id"]
        other = (await create_session(client, user, daemon.environment_id))["id"]
        for sid in (session_id, other):
            await uplink(client, daemon, sid, started(), permission(2, "req-1"),
                         permission(3, "req-2"))  # fmt: skip
        token = answers.issue(subscription.id, session_id, "req-1")
        bearer = {"authorization": f"Bearer {token}"}

        def decide(sid: str, request_id: str) -> Awaitable[httpx.Response]:
            return client.post(
                f"/api/sessions/{sid}/permissions/{request_id}",
                json={"decision": "allow"},
                headers=bearer,
            )

        # Another request, of this session or another: refused.
        for sid, request_id in ((session_id, "req-2"), (other, "req-1")):
            refused = await decide(sid, request_id)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "wrong_scope"
        # Nothing else of the client API takes it.
        assert (await client.get("/api/sessions", headers=bearer)).status_code == 401
        assert (await decide(session_id, "req-1")).status_code == 202
        [decision] = [
            d for d in queued_directives(data_dir, daemon.environment_id)
            if isinstance(d, wire.DecidePermission)
        ]  # fmt: skip
        assert (decision.request_id, decision.decision) == ("req-1", "allow")
        assert decision.origin == "phone (notification)"

        # Past its hour, or once the device is revoked: refused.
        late = answers.issue(subscription.id, session_id, "req-2")
        clock[0] += 3600
        bearer = {"authorization": f"Bearer {late}"}
        expired = await decide(session_id, "req-2")
        assert expired.status_code == 401 and expired.json()["error"]["code"] == "token_expired"
        clock[0] -= 3600
        assert await storage.revoke_device_token("phone")
        gone = await decide(session_id, "req-2")
        assert gone.status_code == 401 and "signed out" in gone.json()["error"]["message"]


async def test_a_devices_notification_settings_survive_a_relay_restart(
    config: RelayConfig, push_service: PushService
) -> None:
    shown = []
    for n in range(2):
        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                relay: RunningRelay = await nursery.start(serve_relay, config)
                url = f"http://127.0.0.1:{relay.port}"
                async with httpx.AsyncClient(base_url=url) as http:
                    if n == 0:
                        user = await make_device_token(relay.storage)
                        await subscribe(
                            http, push_service, user,
                            settings={"offline": True, "error": False, "long_turn_seconds": 300},
                        )  # fmt: skip
                    shown.append((await http.get("/api/push/subscriptions", headers=user)).json())
                nursery.cancel_scope.cancel()
    assert shown[0] == shown[1]
    [settings] = [s["settings"] for s in shown[1]["subscriptions"]]
    assert (settings["offline"], settings["error"], settings["long_turn_seconds"]) == (
        True, False, 300,
    )  # fmt: skip


class _Sessions:
    """The notifier's storage, as far as a note needs it: one titled session, one device."""

    async def get_session(self, session_id: str) -> object:
        return types.SimpleNamespace(title="fix the tests")

    async def live_push_subscriptions(self) -> list[PushSubscriptionRecord]:
        return [
            PushSubscriptionRecord(
                id="push_1", endpoint="https://push.example/1", p256dh="x", auth="y",
                settings=PushSettings(), created_at=0.0, last_sent_at=None,
            )
        ]  # fmt: skip

    async def push_sent(self, endpoint: str) -> None:
        pass


class _Sender:
    public_key = ""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, subscription: object, payload: bytes, **_: object) -> PushOutcome:
        self.sent.append(payload)
        return PushOutcome.SENT


async def test_a_notify_command_holds_no_push_back_and_gets_no_secret_of_rcds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command runs beside the pushes, not before them: one that never ends (or leaves
    a child behind) delays no device; and it gets the environment an agent would, without
    RCD_TOKEN or the service manager's handles."""
    monkeypatch.setenv("RCD_TOKEN", "rcd_dev_secret")
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    seen, child = tmp_path / "env.txt", tmp_path / "child.pid"
    script = f"env > {seen}; sleep 600 & echo $! > {child}; exec sleep 600"
    sender = _Sender()
    notifier = Notifier(storage=_Sessions(), sender=sender, command=("sh", "-c", script))  # type: ignore[arg-type]
    permission = wire.PermissionRequest(request_id="r", tool="Bash", input={}, description="")
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(notifier.run)
            notifier.offer("ses_a", [wire.make_event(1, 1.0, permission)])
            notifier.offer("ses_b", [wire.make_event(1, 1.0, permission)])
            await eventually(lambda: _true(len(sender.sent) == 2 and child.exists()),
                             timeout=GUARD, what="both pushes, the command started")  # fmt: skip
            nursery.cancel_scope.cancel()
        # Stopped with the relay, the command takes what it started with it.
        pid = int(child.read_text())
        await eventually(lambda: _true(not _alive(pid)), timeout=GUARD, what="the child gone")
    names = {line.split("=", 1)[0] for line in seen.read_text().splitlines()}
    assert "RCD_TOKEN" not in names and "NOTIFY_SOCKET" not in names
    assert "PATH" in names


async def _true(value: bool) -> bool:
    return value


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child killed but not yet reaped by its (gone) parent's adopter is a zombie: gone.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False


def _tasks(task: trio.lowlevel.Task | None = None) -> int:
    task = task or trio.lowlevel.current_root_task()
    assert task is not None
    return 1 + sum(_tasks(t) for nursery in task.child_nurseries for t in nursery.child_tasks)


async def test_a_link_that_closes_again_and_again_waits_out_one_grace(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A flapping link (closed, back, closed...) holds one waiting task, not one per
    closing; its grace runs from the last closing, and then the environment is looked at
    once."""
    looked: list[tuple[str, float]] = []

    class Storage:
        async def get_environment(self, environment_id: str) -> None:
            looked.append((environment_id, trio.current_time()))
            return None  # gone meanwhile: nothing to send

    notifier = Notifier(storage=Storage(), sender=None, offline_grace=30.0)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(notifier.run)
        notifier.offline("env_a")
        await trio.sleep(1)  # clock: virtual time; the link stays closed a second
        waiting = _tasks()
        for _ in range(50):
            notifier.offline("env_a")
            await trio.sleep(1)  # clock: virtual time; back and closed again each second
        assert _tasks() == waiting
        last = trio.current_time() - 1
        notifier.offline("env_b")
        await trio.sleep(40)  # clock: virtual time; past the last closing's grace
        nursery.cancel_scope.cancel()
    assert looked == [("env_a", last + 30.0), ("env_b", last + 1 + 30.0)]


async def test_a_closing_while_the_notifier_is_busy_still_moves_the_grace(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A closing counts when it happens, not when the notifier gets to it: with the
    notifier busy on a session's events meanwhile, the environment is looked at once, a
    grace after its last closing, never at the first closing's end."""
    looked: list[float] = []
    start = trio.current_time()

    class Storage:
        async def get_environment(self, environment_id: str) -> None:
            looked.append(trio.current_time())

        async def get_session(self, session_id: str) -> None:
            await trio.sleep_until(start + 40)  # clock: virtual time; a slow storage call

    notifier = Notifier(storage=Storage(), sender=None, offline_grace=30.0)  # type: ignore[arg-type]
    permission = wire.make_event(
        1, 1.0, wire.PermissionRequest(request_id="r", tool="Bash", input={}, description="")
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(notifier.run)
        notifier.offline("env_a")
        await trio.sleep(20)  # clock: virtual time; then the notifier gets busy
        notifier.offer("ses_1", [permission])
        await trio.sleep(5)  # clock: virtual time; the link comes back and closes again
        notifier.offline("env_a")
        await trio.sleep(60)  # clock: virtual time; past every grace
        nursery.cancel_scope.cancel()
    assert looked == [start + 25 + 30.0]


async def test_a_closing_dropped_from_a_full_backlog_leaves_the_next_one_its_wait() -> None:
    notifier = Notifier(storage=None, sender=None)  # type: ignore[arg-type]
    permission = wire.make_event(
        1, 1.0, wire.PermissionRequest(request_id="r", tool="Bash", input={}, description="")
    )
    notifier.offline("env_a")
    for n in range(BACKLOG):
        notifier.offer(f"ses_{n}", [permission])  # the closing is the oldest: dropped
    assert notifier.dropped == 1
    notifier.offline("env_a")  # a task is asked for again
    queued = [notifier._receive.receive_nowait() for _ in range(BACKLOG)]
    assert queued[-1] == _Offline("env_a")
