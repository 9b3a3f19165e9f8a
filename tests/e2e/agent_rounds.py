"""The rounds every real agent's test plays through a relay (the ACP adapters' tests): a
permission answered, a slow turn interrupted, the daemon stopped with nothing left."""

from __future__ import annotations

import signal

import trio

from testkit.harness import Daemon, Relay, count_processes
from testkit.waiting import eventually


async def answer(relay: Relay, session_id: str, n: int, decision: str) -> dict[str, object]:
    """Answer the session's ``n``th permission request ``decision``; the request."""
    events = await relay.wait_kind(session_id, "permission_request", n, timeout=60)
    asked = [e for e in events if e["kind"] == "permission_request"][n - 1]
    request: dict[str, object] = asked["data"]
    decided = await relay.decide(session_id, str(request["request_id"]), decision)
    assert decided.status_code == 202
    return request


async def interrupt_slow_turn(relay: Relay, session_id: str, n: int) -> None:
    """Start a slow turn (the session's ``n``th) and interrupt it: it ends not ok."""
    assert (await relay.post_message(session_id, "slow 30", f"slow-{n}")).is_success
    await relay.wait_events(
        session_id,
        lambda evs: evs[-1]["kind"] == "status" and evs[-1]["data"]["state"] == "busy",
    )
    interrupted = await relay.client.post(f"/api/sessions/{session_id}/interrupt")
    assert interrupted.status_code == 202
    events = await relay.wait_kind(session_id, "turn_result", n, timeout=20)
    assert [e for e in events if e["kind"] == "turn_result"][-1]["data"]["ok"] is False


async def stop_leaving_nothing(daemon: Daemon, relay: Relay, session_id: str, *marks: str) -> None:
    """SIGTERM the daemon: it exits 0, the session is ended, and no process whose command
    line holds one of ``marks`` is left."""
    daemon.process.send_signal(signal.SIGTERM)
    with trio.fail_after(30):
        assert await daemon.process.wait() == 0
    assert (await relay.session(session_id))["state"] == "ended"
    await eventually(
        lambda: sum(count_processes(mark) for mark in marks) == 0,
        timeout=10,
        what=f"no process of {marks} left",
    )
