"""An input accepted (``202``) just before the daemon's link is cut reaches the agent within
2 s of the link being back, with no later input to carry it, and reaches it once.

Each round waits until the daemon's downlink is up, posts one message, and cuts every
connection of the daemon (a real TCP proxy resets them) at a random point after the
``202``: with the directive still in the network (the proxy holds it back a moment), on its
way up the daemon, being applied, or with its ack (or the uplink request carrying it) in
flight. The next message is posted only once this one has reached the agent.

Times are the daemon's wall clock: its ``link_up`` log line (the downlink is open again)
and the ``user_message`` event (the message handed to the agent's stdin); the cut is taken
on the same machine's clock.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from testkit.fakes import FakeMessagesAPI, claude_env, find_claude, parse_turn
from testkit.fakes.flaky_proxy import FlakyProxy
from testkit.harness import Daemon, Relay, start_daemon, start_relay
from testkit.waiting import eventually

#: How soon after the link is back a message cut off with it must reach the agent.
WITHIN = 2.0


@attrs.define
class Follower:
    """A session's log as a client sees it live (SSE, straight from the relay)."""

    events: list[dict[str, Any]] = attrs.Factory(list)
    _changed: trio.Event = attrs.Factory(trio.Event)

    async def run(self, relay: Relay, session_id: str) -> None:
        while True:
            after = self.events[-1]["seq"] if self.events else 0
            try:
                async with relay.client.stream(
                    "GET",
                    f"/api/sessions/{session_id}/events",
                    params={"after": after},
                    headers={"accept": "text/event-stream"},
                    timeout=httpx.Timeout(10, read=None),
                ) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data: "):
                            self.events.append(json.loads(line.removeprefix("data: ")))
                            self._changed.set()
                            self._changed = trio.Event()
            except httpx.TransportError:
                await trio.sleep(0.05)  # clock: a client's pause before it reconnects

    async def wait_for(self, kind: str, **data: Any) -> dict[str, Any]:
        """The first event of ``kind`` whose data has ``data``, once it is in the log."""
        while True:
            for event in self.events:
                if event["kind"] == kind and all(
                    event["data"].get(k) == v for k, v in data.items()
                ):
                    return event
            await self._changed.wait()


def link_ups(daemon: Daemon) -> list[float]:
    """When (wall clock) the daemon's downlink opened, from its JSON log lines."""
    ups = []
    for line in daemon.log().splitlines():
        if '"link_up"' not in line:
            continue
        record = json.loads(line)
        ups.append(datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp())
    return ups


async def wait_link_up(daemon: Daemon, more_than: int) -> int:
    """Until the daemon has logged more than ``more_than`` ``link_up``; how many it has."""

    def ups() -> int | None:
        count = daemon.log().count('"link_up"')
        return count if count > more_than else None

    return await eventually(
        ups, timeout=15, what=f"more than {more_than} link_up in the daemon's log", every=0.01
    )


async def cut_after_each_input(
    relay: Relay, daemon: Daemon, proxy: FlakyProxy, nursery: trio.Nursery, rounds: int
) -> str:
    """Post ``rounds`` messages to a new session, cutting the link after each ``202``;
    checks each reached the agent once, within :data:`WITHIN` of the link being back.
    Returns the session id."""
    rng = random.Random()
    seed = rng.randrange(1 << 32)
    rng.seed(seed)
    sid = (await relay.create_session(daemon.environment_id)).json()["id"]
    follower = Follower()
    nursery.start_soon(follower.run, relay, sid)
    await follower.wait_for("status", state="idle")
    ups = await wait_link_up(daemon, 0)
    cuts: list[float] = []
    for i in range(rounds):
        # Where the cut lands: the proxy may hold the directive back a moment (the cut
        # then takes it down with the connection); the cut comes at once, within the
        # milliseconds of the write and the apply, while the answer's uplink (which
        # carries the ack) is in flight, or when the ack goes on its own (ack_delay).
        hold = rng.choice([0.0, 0.0, rng.uniform(0, 0.03)])
        wait = rng.choice(
            [0.0, rng.uniform(0, 0.01), rng.uniform(0.01, 0.1), rng.uniform(0.2, 0.35)]
        )
        proxy.delay(hold)
        r = await relay.post_message(sid, f"msg {i}", f"m{i}")
        assert r.status_code == 202, r.text
        if wait:
            await trio.sleep(wait)  # clock: where the cut lands is under test
        cuts.append(time.time())
        proxy.cut_all()
        proxy.delay(0)
        with trio.fail_after(30):
            await follower.wait_for("assistant_text", text=f"echo: msg {i}")
        # The next round starts on a link that is up again.
        ups = await wait_link_up(daemon, ups)

    late = []
    up_times = link_ups(daemon)
    handed_at = {
        e["data"]["input_id"]: e["at"] for e in follower.events if e["kind"] == "user_message"
    }
    for i, cut_at in enumerate(cuts):
        handed = handed_at[f"m{i}"]
        back = min(t for t in up_times if t >= cut_at)
        if handed > back + WITHIN:
            late.append((i, round(handed - back, 3)))
    assert late == [], (
        f"reached the agent more than {WITHIN}s after the link was back (seed {seed})"
    )

    # Each message reached the agent once (one echo per message, in order) and was answered
    # once; the log is dense.
    events = follower.events
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    handed_over = [e["data"]["input_id"] for e in events if e["kind"] == "user_message"]
    assert handed_over == [f"m{i}" for i in range(rounds)], f"seed {seed}"
    replies = Counter(e["data"]["text"] for e in events if e["kind"] == "assistant_text")
    expected = Counter({f"echo: msg {i}": 1 for i in range(rounds)})
    assert replies == expected, f"seed {seed}: {(replies - expected, expected - replies)}"
    assert proxy.statistics().cut >= rounds
    return sid


async def test_an_input_accepted_just_before_a_cut_reaches_the_agent_once(
    tmp_path: Path,
) -> None:
    # 200 cuts: two daemons (two environments, each behind its own proxy) take 100 each
    # side by side, as the wait for each reconnection dominates.
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        try:

            async def one(name: str) -> None:
                project = tmp_path / name
                project.mkdir()
                proxy = FlakyProxy(target=("127.0.0.1", relay.port))
                await nursery.start(proxy.run)
                daemon = await start_daemon(
                    relay, tmp_path / f"home-{name}", project, via=proxy.url
                )
                await cut_after_each_input(relay, daemon, proxy, nursery, 100)
                assert await daemon.stop() == 0

            async with trio.open_nursery() as both:
                both.start_soon(one, "a")
                both.start_soon(one, "b")
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def test_the_real_cli_gets_each_input_cut_off_with_the_link_once(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    home = tmp_path / "home"
    async with trio.open_nursery() as nursery:
        api = FakeMessagesAPI()
        base_url: str = await nursery.start(api.run)
        relay = await start_relay(nursery, tmp_path / "relay")
        proxy = FlakyProxy(target=("127.0.0.1", relay.port))
        await nursery.start(proxy.run)
        try:
            daemon = await start_daemon(
                relay,
                home,
                project,
                agent_bin=find_claude(),
                extra_env=claude_env(home, base_url),
                via=proxy.url,
            )
            rounds = 20
            await cut_after_each_input(relay, daemon, proxy, nursery, rounds)
            delivered = Counter(parse_turn(b).user_text for b in api.messages_bodies())
            assert delivered == Counter({f"msg {i}": 1 for i in range(rounds)})
            assert await daemon.stop() == 0
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
