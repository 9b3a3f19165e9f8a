"""The uplink's two lanes per session: a burst goes out while an earlier batch is on its
way; one that overtakes its predecessor is sent again, and the log stays dense."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest
import trio
import trio.testing

import daemon.uplink
import wire
from daemon.errors import RelayUnreachable
from daemon.uplink import MAX_IN_FLIGHT, Uplink


class FakeClient:
    """The part of ``RelayClient`` the uplink uses; every batch a request of its own, its
    place in line taken as soon as it is posted. Subclasses store."""

    def takes_batches(self) -> bool:
        return False

    async def post_events(
        self,
        session_id: str,
        events: list[wire.Event],
        on_queued: Callable[[], None] = lambda: None,
    ) -> int:
        on_queued()
        return await self.store(events)

    async def store(self, events: list[wire.Event]) -> int:
        raise NotImplementedError

    def forget_session(self, session_id: str) -> None:
        pass


@attrs.define
class ContiguousRelay(FakeClient):
    """Stores only a contiguous run, like the relay. The first request waits for ``release``."""

    stored: list[int] = attrs.Factory(list)
    release: trio.Event = attrs.Factory(trio.Event)
    calls: list[list[int]] = attrs.Factory(list)
    in_flight: int = 0
    most_in_flight: int = 0
    _called: trio.Event = attrs.Factory(trio.Event)

    async def called(self, times: int) -> None:
        """Return once ``times`` requests have come."""
        while len(self.calls) < times:
            await self._called.wait()

    async def store(self, events: list[wire.Event]) -> int:
        self.calls.append([e.seq for e in events])
        self._called.set()
        self._called = trio.Event()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if len(self.calls) == 1:
                await self.release.wait()
            else:
                await trio.sleep(0.01)  # clock: virtual time; a request takes a while
            for e in events:
                if e.seq == len(self.stored) + 1:
                    self.stored.append(e.seq)
            return len(self.stored)
        finally:
            self.in_flight -= 1


def note(seq: int) -> wire.Event:
    return wire.Event(seq=seq, kind="assistant_text", at=float(seq), data={"text": str(seq)})


async def test_a_burst_overtaking_its_predecessor_is_resent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    relay = ContiguousRelay()
    uplink = Uplink(client=relay)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(uplink.run)
        uplink.publish("s", note(1))
        uplink.publish("s", note(2))
        with trio.fail_after(10):
            await relay.called(1)  # the first batch is on its way (and stuck)
        uplink.publish("s", note(3))
        uplink.publish("s", note(4))
        with trio.fail_after(10):
            await relay.called(3)
        # The second lane went out without waiting, and found a gap.
        assert relay.most_in_flight == 2
        assert relay.calls[:2] == [[1, 2], [3, 4]]
        # Answered "nothing stored" (a gap), its events went again from the head.
        assert relay.calls[2] == [1, 2, 3, 4]
        relay.release.set()
        with trio.fail_after(10):
            await uplink.drain()
        assert relay.stored == [1, 2, 3, 4]
        assert uplink.pending() == 0
        nursery.cancel_scope.cancel()


async def test_never_more_than_two_batches_of_a_session_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    relay = ContiguousRelay()
    relay.release.set()
    uplink = Uplink(client=relay, batch_max=3)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(uplink.run)
        for seq in range(1, 31):
            uplink.publish("s", note(seq))
            if seq % 4 == 0:
                await trio.sleep(0.002)  # clock: virtual time; the agent writes in bursts
        with trio.fail_after(10):
            await uplink.drain()
        assert relay.stored == list(range(1, 31))
        assert relay.most_in_flight <= 2
        nursery.cancel_scope.cancel()


@attrs.define
class InstantRelay(FakeClient):
    """Stores every batch at once (after one checkpoint), like a relay on loopback."""

    stored: list[int] = attrs.Factory(list)

    async def store(self, events: list[wire.Event]) -> int:
        await trio.lowlevel.checkpoint()
        self.stored.extend(e.seq for e in events if e.seq == len(self.stored) + 1)
        return len(self.stored)


async def test_an_event_published_while_the_flusher_winds_down_is_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The flusher of a session finishes when nothing is pending; an event published in the
    # few scheduling steps while it winds down must still go out (a session would otherwise
    # stall until its next event). Publish the second event at every step of that window.
    for steps in range(25):
        relay = InstantRelay()
        uplink = Uplink(client=relay)  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            await nursery.start(uplink.run)
            uplink.publish("s", note(1))
            with trio.fail_after(5):
                await uplink.drain()
            for _ in range(steps):
                await trio.lowlevel.checkpoint()
            uplink.publish("s", note(2))
            with trio.fail_after(5):
                await uplink.drain()
            assert relay.stored == [1, 2], f"second event lost when published {steps} steps late"
            nursery.cancel_scope.cancel()


@attrs.define
class RecordingRelay(FakeClient):
    """Stores every batch and records when (trio time) each request came and what it held."""

    stored: list[int] = attrs.Factory(list)
    requests: list[tuple[float, list[str]]] = attrs.Factory(list)

    async def store(self, events: list[wire.Event]) -> int:
        self.requests.append((trio.current_time(), [e.kind for e in events]))
        await trio.sleep(0.002)  # clock: virtual time; a request takes a while
        self.stored.extend(e.seq for e in events if e.seq == len(self.stored) + 1)
        return len(self.stored)


def _ev(seq: int, kind: str, **data: object) -> wire.Event:
    return wire.Event(seq=seq, kind=kind, at=float(seq), data=dict(data))


async def test_a_message_echo_waits_briefly_for_the_agent_and_goes_up_with_its_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    relay = RecordingRelay()
    uplink = Uplink(client=relay)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(uplink.run)
        # A quick agent: its answer comes 2 ms after the message.
        start = trio.current_time()
        uplink.publish("s", _ev(1, "user_message", text="hi"))
        uplink.publish("s", _ev(2, "status", state="busy"))
        await trio.sleep(0.002)  # clock: virtual time; the agent answers within the hold
        uplink.publish("s", _ev(3, "assistant_text", text="hello"))
        with trio.fail_after(1):
            await uplink.drain()
        assert relay.requests == [(start + 0.002, ["user_message", "status", "assistant_text"])]

        # A slow agent: the echo goes up on its own once the hold is over, not before.
        relay.requests.clear()
        start = trio.current_time()
        uplink.publish("s", _ev(4, "user_message", text="think hard"))
        uplink.publish("s", _ev(5, "status", state="busy"))
        with trio.fail_after(1):
            await uplink.drain()
        [(sent, kinds)] = relay.requests
        assert kinds == ["user_message", "status"]
        assert sent - start == pytest.approx(uplink.echo_hold)

        # A permission prompt is never held: it goes at once.
        relay.requests.clear()
        start = trio.current_time()
        uplink.publish("s", _ev(6, "user_message", text="write a file"))
        uplink.publish("s", _ev(7, "permission_request", request_id="r"))
        with trio.fail_after(1):
            await uplink.drain()
        assert relay.requests == [(start, ["user_message", "permission_request"])]
        assert relay.stored == list(range(1, 8))
        nursery.cancel_scope.cancel()


async def test_a_decision_waits_briefly_with_the_tools_result_for_the_agents_reply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    relay = RecordingRelay()
    uplink = Uplink(client=relay)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(uplink.run)
        # Allowed: the tool runs and the model answers within the hold, all in one request.
        start = trio.current_time()
        uplink.publish("s", _ev(1, "permission_resolved", decision="allow", origin="web"))
        await trio.sleep(0.003)  # clock: virtual time; the tool runs
        uplink.publish("s", _ev(2, "tool_result", tool_use_id="t", is_error=False))
        await trio.sleep(0.003)  # clock: virtual time; the model answers
        uplink.publish("s", _ev(3, "assistant_text", text="done"))
        with trio.fail_after(1):
            await uplink.drain()
        assert relay.requests == [
            (start + 0.006, ["permission_resolved", "tool_result", "assistant_text"])
        ]

        # A slow tool: the decision goes up once the hold is over, the result when it comes.
        relay.requests.clear()
        start = trio.current_time()
        uplink.publish("s", _ev(4, "permission_resolved", decision="allow", origin="web"))
        await trio.sleep(1.0)  # clock: virtual time; a long build
        uplink.publish("s", _ev(5, "tool_result", tool_use_id="t2", is_error=False))
        with trio.fail_after(1):
            await uplink.drain()
        assert relay.requests == [
            (pytest.approx(start + uplink.echo_hold), ["permission_resolved"]),
            (start + 1.0, ["tool_result"]),
        ]

        # A message whose tool asks first: the prompt ends the hold, and goes with the echo.
        relay.requests.clear()
        start = trio.current_time()
        uplink.publish("s", _ev(6, "user_message", text="write it"))
        uplink.publish("s", _ev(7, "tool_use", tool="Write"))
        await trio.sleep(0.002)  # clock: virtual time; the CLI checks its permissions
        uplink.publish("s", _ev(8, "permission_request", request_id="p"))
        with trio.fail_after(1):
            await uplink.drain()
        assert relay.requests == [
            (start + 0.002, ["user_message", "tool_use", "permission_request"])
        ]

        # A prompt withdrawn by the turn's end is no echo: it goes at once.
        relay.requests.clear()
        start = trio.current_time()
        uplink.publish("s", _ev(9, "permission_resolved", decision="deny", origin="turn_ended"))
        with trio.fail_after(1):
            await uplink.drain()
        assert relay.requests == [(start, ["permission_resolved"])]
        assert relay.stored == list(range(1, 10))
        nursery.cancel_scope.cancel()


@attrs.define
class OpenRequestRelay(FakeClient):
    """Every batch rides one open request, as frames: answered only when ``release`` is
    set (the request's window ends), stored in the order the frames were handed over."""

    release: trio.Event = attrs.Factory(trio.Event)
    frames: list[list[int]] = attrs.Factory(list)
    stored: list[int] = attrs.Factory(list)
    in_flight: int = 0
    most_in_flight: int = 0

    def takes_batches(self) -> bool:
        return True

    async def store(self, events: list[wire.Event]) -> int:
        # Runs on from ``on_queued`` without a checkpoint: frames arrive in handover order.
        self.frames.append([e.seq for e in events])
        for e in events:  # stored as the frame arrives, if it continues the log
            if e.seq == len(self.stored) + 1:
                self.stored.append(e.seq)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
            return len(self.stored)
        finally:
            self.in_flight -= 1


async def test_batches_riding_an_open_request_go_in_order_up_to_the_limit() -> None:
    relay = OpenRequestRelay()
    uplink = Uplink(client=relay, batch_max=2)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(uplink.run)
        for seq in range(1, 41):
            uplink.publish("s", note(seq))
        # Once nothing can run any more, the uplink has handed over all it would.
        with trio.fail_after(5):
            await trio.testing.wait_all_tasks_blocked()
        # Handed over in seq order, each stored as it arrived; no more than the limit open.
        assert relay.frames == [[2 * i + 1, 2 * i + 2] for i in range(MAX_IN_FLIGHT)]
        assert relay.stored == list(range(1, 2 * MAX_IN_FLIGHT + 1))
        assert relay.most_in_flight == MAX_IN_FLIGHT
        relay.release.set()
        with trio.fail_after(5):
            await uplink.drain()
        # Nothing was sent twice.
        assert [seq for frame in relay.frames for seq in frame] == list(range(1, 41))
        nursery.cancel_scope.cancel()


async def test_batches_failing_together_count_as_one_failure_for_the_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the open request that carries many batches of a session fails, they all fail
    at once: that is one failed attempt, not one per batch (which would jump the backoff
    to its cap after a single cut)."""
    attempts: list[int] = []

    def recording(attempt: int, *, base: float, cap: float) -> float:
        attempts.append(attempt)
        return 0.01

    monkeypatch.setattr(daemon.uplink, "full_jitter", recording)
    relay = OpenRequestRelay()
    fail = [True]
    riding: list[list[int]] = []
    post_events = relay.post_events

    async def cut_once(
        session_id: str, events: list[wire.Event], on_queued: Callable[[], None] = lambda: None
    ) -> int:
        if fail[0]:
            riding.append([e.seq for e in events])
            on_queued()
            await relay.release.wait()
            raise RelayUnreachable("http://relay.test", "the connection was cut")
        return await post_events(session_id, events, on_queued)

    monkeypatch.setattr(relay, "post_events", cut_once)
    uplink = Uplink(client=relay, batch_max=2)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(uplink.run)
        for seq in range(1, 21):
            uplink.publish("s", note(seq))
        with trio.fail_after(5):
            await trio.testing.wait_all_tasks_blocked()
        assert len(riding) == 10  # ten batches ride the open request
        relay.release.set()  # which fails, with all of them
        await trio.lowlevel.checkpoint()
        fail[0] = False
        with trio.fail_after(5):
            await uplink.drain()
        assert attempts and set(attempts) == {1}, attempts
        assert relay.stored == list(range(1, 21))
        nursery.cancel_scope.cancel()
