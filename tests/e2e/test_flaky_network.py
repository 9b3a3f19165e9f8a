"""Issue 6 acceptance: a 50-message conversation with the real CLI through a flaky network —
connections cut every few messages, a black hole of several seconds, a relay restart — ends
with every message delivered to the agent exactly once, every reply recorded exactly once,
and a dense log."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio

from testkit.fakes import FakeMessagesAPI, claude_env, find_claude, parse_turn
from testkit.fakes.flaky_proxy import FlakyProxy
from testkit.harness import Relay, start_daemon, start_relay
from testkit.waiting import eventually

MESSAGES = 50


async def retrying(call: Any, *args: Any) -> httpx.Response:
    """A client call that rides through the relay's restart (a phone would retry too)."""

    async def attempt() -> httpx.Response | None:
        try:
            response: httpx.Response = await call(*args)
        except httpx.TransportError:
            return None
        return response

    return await eventually(attempt, timeout=60, what="the relay to answer again")


async def test_fifty_messages_through_cuts_a_black_hole_and_a_relay_restart(tmp_path: Path) -> None:
    claude = find_claude()
    project = tmp_path / "project"
    project.mkdir()
    home = tmp_path / "home"
    async with trio.open_nursery() as outer:
        api = FakeMessagesAPI()
        base_url: str = await outer.start(api.run)
        relay_scope = trio.CancelScope()
        relay_holder: list[Relay] = []

        async def run_relay(
            port: int, token: str | None, *, task_status: trio.TaskStatus[Relay]
        ) -> None:
            with relay_scope:
                async with trio.open_nursery() as inner:
                    relay = await start_relay(inner, tmp_path / "relay", port=port, token=token)
                    relay_holder.append(relay)
                    task_status.started(relay)
                    await trio.sleep_forever()

        relay: Relay = await outer.start(run_relay, 0, None)
        port = relay.port
        proxy = FlakyProxy(target=("127.0.0.1", port))
        await outer.start(proxy.run)
        daemon = await start_daemon(
            relay,
            home,
            project,
            "--stop-timeout",
            "10",
            agent_bin=claude,
            extra_env=claude_env(home, base_url),
            via=proxy.url,
        )
        sid = (await relay.create_session(daemon.environment_id)).json()["id"]

        for i in range(MESSAGES):
            if i and i % 5 == 0:
                proxy.cut_all()
            if i == 23:
                proxy.black_hole(4)
            if i == 37:
                relay_scope.cancel()
                await relay.client.aclose()
                relay_scope = trio.CancelScope()
                relay = await outer.start(run_relay, port, relay.token)
            r = await retrying(relay.post_message, sid, f"msg {i}", f"m{i}")
            assert r.status_code == 202, r.text
            if i % 7 == 0:  # the same message again (a client retry): still one message
                again = await retrying(relay.post_message, sid, f"msg {i}", f"m{i}")
                assert again.status_code == 202
            await relay.wait_events(
                sid,
                lambda evs, i=i: any(
                    e["kind"] == "assistant_text" and e["data"]["text"] == f"echo: msg {i}"
                    for e in evs
                ),
                timeout=60,
            )

        events = await relay.events(sid)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        echoes = [e["data"]["input_id"] for e in events if e["kind"] == "user_message"]
        assert echoes == [f"m{i}" for i in range(MESSAGES)]
        replies = Counter(e["data"]["text"] for e in events if e["kind"] == "assistant_text")
        assert replies == Counter({f"echo: msg {i}": 1 for i in range(MESSAGES)})
        delivered = Counter(parse_turn(b).user_text for b in api.messages_bodies())
        assert all(delivered[f"msg {i}"] == 1 for i in range(MESSAGES)), delivered
        stats = proxy.statistics()
        assert stats.cut > 0 and stats.accepted > 3  # the faults really happened
        assert await daemon.stop() == 0
        await relay.aclose()
        outer.cancel_scope.cancel()
