"""Uplink requests opened ahead of their batch (``RelayClient.run``), against a real relay on
loopback: the batch goes on the open request and carries the ack of applied directives; an
unused one is closed with an empty batch; one whose connection was cut costs nothing but a
request of the batch's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import httpx
import pytest
import trio
import trio.testing

import daemon.relay_client.spare
from daemon.relay_client import RelayClient
from daemon.relay_client.spare import Spare
from daemon.uplink import Uplink
from relay.auth import issue_environment_credential
from relay.fanout import session_key
from testkit.fakes.flaky_proxy import FlakyProxy
from testkit.harness import Relay, start_relay
from testkit.waiting import eventually

from .test_tokens import laptop, note


@attrs.define
class World:
    relay: Relay
    proxy: FlakyProxy
    client: RelayClient
    session_id: str
    #: Paths of the requests the client made, with their status, as answered.
    requests: list[tuple[str, int]]
    #: What ``carry_acks`` reported confirmed.
    confirmed: list[int]
    applied: list[int]


@pytest.fixture
async def world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    """A relay on loopback and a client of it (``"in-process"``: the relay's app called
    directly, as the embedded relay's daemon does)."""
    in_process = getattr(request, "param", "loopback") == "in-process"
    requests: list[tuple[str, int]] = []

    async def record(response: httpx.Response) -> None:
        requests.append((response.request.url.path, response.status_code))

    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        proxy = FlakyProxy(target=("127.0.0.1", relay.port))
        await nursery.start(proxy.run)
        storage = relay.storage
        transport = relay.running.local if relay.running and in_process else None
        async with httpx.AsyncClient(
            event_hooks={"response": [record]}, transport=transport
        ) as http:
            credential = await issue_environment_credential(storage, "m1")
            url = relay.url if in_process else proxy.url
            client = RelayClient(http=http, relay=url, credential=credential)
            registration = await client.register(laptop(capacity=4))
            env_id = registration.environment_id
            await storage.open_downlink(env_id, "link_test")
            created = await relay.create_session(env_id, prompt="hi")
            assert created.status_code == 201, created.text
            applied = [1]  # the session's start directive
            confirmed: list[int] = []
            client.carry_acks(lambda: applied[-1], confirmed.append)
            await nursery.start(client.run)
            yield World(relay, proxy, client, created.json()["id"], requests, confirmed, applied)
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def stored(world: World) -> list[int]:
    events = await world.relay.storage.read_events(world.session_id, 0, 100)
    return [e.seq for e in events]


async def until_shown(world: World, seqs: list[int]) -> None:
    """Wait until the relay holds ``seqs`` of the session and has woken its readers."""
    assert world.relay.running is not None
    hub = world.relay.running.hub
    with trio.fail_after(10):
        while True:
            # Watch before reading (relay.fanout): a write in between is not missed.
            changed = hub.watch(session_key(world.session_id))
            if await stored(world) == seqs:
                return
            await changed.wait()


async def spare_open(client: RelayClient) -> Spare:
    """The uplink request open ahead of the next batch, once its head is sent."""
    spare = client.spare_request
    assert spare is not None, "no uplink request is open ahead of the next batch"
    with trio.fail_after(10):
        await spare.head_sent.wait()
    return spare


async def test_the_next_batch_goes_on_the_open_request_and_carries_the_ack(
    world: World,
) -> None:
    client = world.client
    assert await client.post_events(world.session_id, [note(1)]) == 1
    assert client.spares_used == 0  # nothing was open yet: a request of its own
    await spare_open(client)
    world.requests.clear()
    assert await client.post_events(world.session_id, [note(2), note(3)]) == 3
    assert client.spares_used == 1
    assert await stored(world) == [1, 2, 3]
    # One request answered for the batch: the one opened ahead, which carried the ack.
    uplinks = [path for path, _ in world.requests if path.endswith("/uplink")]
    assert len(uplinks) == 1
    assert not any(path.endswith("/events") or path.endswith("/ack") for path, _ in world.requests)
    assert world.confirmed == [1]
    assert client.directives_acked == 1
    # The relay holds the ack: the applied start directive is no longer queued.
    env_id = client.environment_id
    assert env_id is not None
    read = await world.relay.storage.read_downlink(env_id, "link_test", 0, 10)
    assert read.directives == []
    # The ack is not carried twice; the next directive's is.
    await spare_open(client)
    assert await client.post_events(world.session_id, [note(4)]) == 4
    assert world.confirmed == [1]
    world.applied.append(2)
    await spare_open(client)
    assert await client.post_events(world.session_id, [note(5)]) == 5
    assert world.confirmed == [1, 2]
    assert client.spares_used == 3


async def test_an_unused_spare_is_closed_with_an_empty_batch(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon.relay_client.spare, "SPARE_IDLE", 0.5)
    client = world.client
    assert await client.post_events(world.session_id, [note(1)]) == 1
    world.requests.clear()

    def answered() -> list[tuple[str, int]]:
        # (the spare's link token is minted first: not counted)
        return [(p.rsplit("/", 1)[-1], s) for p, s in world.requests if p.endswith("/uplink")]

    spare = await spare_open(client)
    with trio.fail_after(10):
        await spare.done.wait()
    # Closed on its own, with nothing in it, and not replaced: an idle daemon keeps none.
    assert answered() == [("uplink", 200)]
    assert client.spare_request is None
    await trio.sleep(1.0)  # clock: a replacement would idle out (0.5 s) and be answered
    assert answered() == [("uplink", 200)]
    assert await stored(world) == [1]
    assert await client.post_events(world.session_id, [note(2)]) == 2
    assert client.spares_used == 0
    assert await stored(world) == [1, 2]


async def test_a_spare_whose_connection_was_cut_costs_only_a_request_of_its_own(
    world: World,
) -> None:
    client = world.client
    assert await client.post_events(world.session_id, [note(1)]) == 1
    spare = await spare_open(client)
    world.proxy.cut_all()  # the spare's connection (a relay restart, a proxy's idle cut)
    # Everything that can notice the cut now has (the spare only does when it writes).
    await trio.testing.wait_all_tasks_blocked()
    with trio.fail_after(10):
        assert await client.post_events(world.session_id, [note(2)]) == 2
    assert spare.done.is_set() and spare.error is not None
    assert client.spares_used == 0
    assert await stored(world) == [1, 2]
    # And the next one has a spare again.
    await spare_open(client)
    assert await client.post_events(world.session_id, [note(3)]) == 3
    assert client.spares_used == 1
    assert await stored(world) == [1, 2, 3]


async def test_batches_within_the_linger_share_one_request_and_show_at_once(
    world: World,
) -> None:
    client = world.client
    created = await world.relay.create_session(client.environment_id or "", prompt="hi")
    other = created.json()["id"]
    client.uplink_linger = 0.5  # a wide window, so that the test does not race it
    assert await client.post_events(other, []) == 0  # its token, minted now
    assert await client.post_events(world.session_id, [note(1)]) == 1
    await spare_open(client)  # that spare's window is over, and a new one is open
    world.requests.clear()
    used = client.spares_used
    shown: list[int] = []

    async def first() -> None:
        assert await client.post_events(world.session_id, [note(2)]) == 2

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        # The first batch is stored and shown while its request is still open.
        await until_shown(world, [1, 2])
        assert not [p for p, _ in world.requests if p.endswith("/uplink")]
        shown.append(2)
        assert await client.post_events(other, [note(1)]) == 1
    uplinks = [p for p, _ in world.requests if p.endswith("/uplink")]
    assert len(uplinks) == 1, world.requests
    assert client.spares_used == used + 2
    assert shown == [2]
    events = await world.relay.storage.read_events(other, 0, 10)
    assert [e.seq for e in events] == [1]


async def test_a_turns_next_steps_do_not_wait_for_the_open_requests_answer(
    world: World,
) -> None:
    """Batches riding an open request are answered when its window ends; a session's next
    batches (the next step of a turn, the next turn) go at once on the same request rather
    than waiting for that answer."""
    client = world.client
    client.uplink_linger = 30.0  # answers come only when the test is long over
    assert await client.post_events(world.session_id, [note(1)]) == 1
    await spare_open(client)
    uplink = Uplink(client=client)
    async with trio.open_nursery() as nursery:
        await nursery.start(uplink.run)
        for seq in range(2, 7):
            uplink.publish(world.session_id, note(seq))
            await until_shown(world, list(range(1, seq + 1)))
        assert uplink.pending() == 5  # all still waiting for their answer
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("world", ["loopback", "in-process"], indirect=True)
async def test_with_the_downlink_open_a_busy_sessions_turns_ride_one_request(
    world: World,
) -> None:
    """The relay answers each frame on the open downlink as soon as it is stored: once it
    does, the request stays open for many batches (each answered at once) rather than a
    few milliseconds; when the downlink goes, the request ends and answers the rest."""
    client = world.client
    env_id = client.environment_id
    assert env_id is not None
    opened = trio.Event()
    downlink = trio.CancelScope()

    async def follow_downlink() -> None:
        with downlink:
            async for _ in client.downlink(env_id, 1, on_open=opened.set):
                pass  # (no directive comes)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow_downlink)
        with trio.fail_after(10):
            await opened.wait()
        # The spare open now was opened before the downlink: answered with its response.
        assert await client.post_events(world.session_id, [note(1)]) == 1
        spare = await eventually(
            lambda: (s := client.spare_request) is not None and s.stream is not None and s,
            timeout=10,
            what="a spare request that asks for its answers on the downlink",
        )
        await spare_open(client)
        world.requests.clear()
        used = client.spares_used
        # The first batch on it is answered on the downlink at once (the request then
        # stays open); the answers to the next ones wait a little for company.
        with trio.fail_after(1):
            assert await client.post_events(world.session_id, [note(2)]) == 2
        assert spare.long
        uplink = Uplink(client=client)
        await nursery.start(uplink.run)
        for seq in range(3, 32):
            uplink.publish(world.session_id, note(seq))
            await until_shown(world, list(range(1, seq + 1)))  # each stored as it comes
        with trio.fail_after(10):
            await uplink.drain()  # every batch answered
        assert client.spares_used == used + 30
        assert not spare.done.is_set()
        # No uplink request answered: every batch was answered on the downlink.
        assert [p for p, _ in world.requests if p.endswith("/uplink")] == []
        # The downlink goes: the request takes no more and ends, answered.
        downlink.cancel()
        with trio.fail_after(10):
            await spare.done.wait()
        assert spare.response is not None and spare.response.status_code == 200
        assert len(spare.response.json()["frames"]) == 30  # every batch rode it
        # Batches go on as before the downlink opened.
        assert await client.post_events(world.session_id, [note(32)]) == 32
        assert await stored(world) == list(range(1, 33))
        nursery.cancel_scope.cancel()


async def test_frames_queued_together_go_in_one_chunk() -> None:
    """Batches handed over while the body waited go in one write, each a line of its own
    (the relay reads a frame a line); one handed over later, in a write of its own."""
    spare = Spare(linger=5.0, on_idle=lambda s: None, on_closed=lambda s: None)
    frames = [b'{"sessions":[],"ack":%d}' % n for n in (1, 2, 3)]
    for frame in frames:
        spare.add(frame)
    with trio.fail_after(5):
        assert await spare.__anext__() == b"".join(f + b"\n" for f in frames)
        spare.add(b'{"sessions":[],"ack":4}')
        assert await spare.__anext__() == b'{"sessions":[],"ack":4}\n'
