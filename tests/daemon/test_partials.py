"""Replies being written, on their way up (daemon.partials): the first piece at once, the
rest coalesced per interval, what a later event made old dropped, a failed send started
over."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import attrs
import pytest
import trio
import trio.testing

import wire
from daemon.errors import RelayUnreachable
from daemon.partials import AFTER_FAILURE, FULL_EVERY, INTERVAL, Partials


def piece(offset: int, text: str, after_seq: int = 3, block: int = 0) -> wire.AssistantPartial:
    return wire.AssistantPartial(
        after_seq=after_seq, block=block, kind="text", offset=offset, text=text
    )


async def advance(seconds: float) -> None:
    """Let ``seconds`` pass on the test's clock."""
    await trio.sleep(seconds)  # clock: the autojump MockClock, virtual time


@attrs.define
class Relay:
    """Records each send (with the clock's time); fails while ``down``."""

    sends: list[tuple[float, list[tuple[str, wire.AssistantPartial]]]] = attrs.Factory(list)
    down: bool = False
    failed: list[float] = attrs.Factory(list)

    async def send(self, pieces: list[tuple[str, wire.AssistantPartial]]) -> None:
        await advance(0.001)  # a round trip
        if self.down:
            self.failed.append(trio.current_time())
            raise RelayUnreachable("http://relay", "connection refused")
        self.sends.append((trio.current_time(), pieces))


@pytest.fixture
async def running() -> AsyncIterator[tuple[Relay, Partials]]:
    """A Partials running, and the fake relay it sends to. Its tests take ``autojump_clock``
    in their own arguments: pytest-trio runs a test on a clock only when the test itself
    names it (a fixture's own request for it is not enough, and the test runs in real
    time)."""
    relay = Relay()
    partials = Partials(send=relay.send)
    async with trio.open_nursery() as nursery:
        await nursery.start(partials.run)
        yield relay, partials
        nursery.cancel_scope.cancel()


async def test_the_first_piece_goes_at_once_the_rest_together(
    running: tuple[Relay, Partials], autojump_clock: trio.testing.MockClock
) -> None:
    relay, partials = running
    start = trio.current_time()
    partials.add("s1", piece(0, "he"))
    await advance(INTERVAL / 5)
    assert [p for _, p in relay.sends] == [[("s1", piece(0, "he"))]]
    assert relay.sends[0][0] - start < INTERVAL / 5
    # Three more within the interval: one send, when it has passed, of what they added.
    for offset, text in ((2, "ll"), (4, "o "), (6, "world")):
        partials.add("s1", piece(offset, text))
        await advance(INTERVAL / 10)
    with trio.fail_after(1):
        while len(relay.sends) < 2:
            await advance(INTERVAL / 10)
    at, second = relay.sends[1]
    assert second == [("s1", piece(2, "llo world"))]
    # Held until the interval had passed (the pieces came 10 to 20 ms after the first;
    # the fake's own round trip blurs each time by a millisecond).
    assert at - relay.sends[0][0] >= INTERVAL * 0.9
    assert partials.sent == 2


async def test_sessions_with_something_new_share_a_send(
    running: tuple[Relay, Partials], autojump_clock: trio.testing.MockClock
) -> None:
    relay, partials = running
    partials.add("a", piece(0, "x"))
    partials.add("b", piece(0, "y"))
    await advance(INTERVAL / 5)
    assert sorted(s for _, pieces in relay.sends for s, _ in pieces) == ["a", "b"]
    assert len(relay.sends) == 1


async def test_a_later_event_drops_what_was_not_sent(
    running: tuple[Relay, Partials], autojump_clock: trio.testing.MockClock
) -> None:
    relay, partials = running
    partials.add("s", piece(0, "one"))
    await advance(INTERVAL / 5)
    partials.add("s", piece(3, " two"))
    partials.event("s", 4)  # the finished message: the rest is in the log now
    await advance(INTERVAL * 3)
    assert len(relay.sends) == 1 and partials.waiting() == 0
    # An event the block came after changes nothing.
    partials.add("s", piece(0, "next", after_seq=4))
    partials.event("s", 4)
    await advance(INTERVAL * 3)
    assert relay.sends[-1][1] == [("s", piece(0, "next", after_seq=4))]


async def test_a_failed_send_starts_the_block_over(
    running: tuple[Relay, Partials], autojump_clock: trio.testing.MockClock
) -> None:
    relay, partials = running
    partials.add("s", piece(0, "abc"))
    await advance(INTERVAL / 5)
    relay.down = True
    partials.add("s", piece(3, "def"))
    await advance(INTERVAL * 2)
    assert partials.failures == 1
    relay.down = False
    partials.add("s", piece(6, "ghi"))
    await advance(AFTER_FAILURE + INTERVAL * 2)
    # Not sooner than AFTER_FAILURE, and the whole block from its first character.
    at, sent = relay.sends[-1]
    assert sent == [("s", piece(0, "abcdefghi"))]
    assert at - relay.failed[-1] >= AFTER_FAILURE
    assert partials.failures == 1


async def test_a_growing_block_goes_whole_again_every_second(
    running: tuple[Relay, Partials], autojump_clock: trio.testing.MockClock
) -> None:
    # A piece lost unseen (its request failed after it was handed over) freezes the
    # relay's copy: the whole block goes again, at most every FULL_EVERY.
    relay, partials = running
    text = ""
    for n in range(int(FULL_EVERY * 2 / INTERVAL) + 2):
        word = f"w{n} "
        partials.add("s", piece(len(text), word))
        text += word
        await advance(INTERVAL)
    offsets = [p.offset for _, pieces in relay.sends for _, p in pieces]
    wholes = [at for at, pieces in relay.sends if pieces[0][1].offset == 0]
    assert offsets[0] == 0 and len(wholes) >= 2, offsets
    # (Times are sums of floats: a second apart may read 0.9999999999.)
    assert all(b - a >= FULL_EVERY - 1e-6 for a, b in itertools.pairwise(wholes)), wholes
    assert sum(o > 0 for o in offsets) > len(wholes)  # the rest carry only what is new


async def test_a_send_that_breaks_otherwise_is_a_failure_not_a_crash(
    running: tuple[Relay, Partials], autojump_clock: trio.testing.MockClock
) -> None:
    _, partials = running

    async def unreadable(pieces: list[tuple[str, wire.AssistantPartial]]) -> None:
        raise ValueError("the relay answered something that is not JSON")

    partials.send = unreadable
    partials.add("s", piece(0, "x"))
    await advance(INTERVAL)
    assert partials.failures == 1


async def test_a_piece_after_a_lost_one_waits_for_the_finished_message(
    running: tuple[Relay, Partials], autojump_clock: trio.testing.MockClock
) -> None:
    relay, partials = running
    partials.add("s", piece(0, "ab"))
    partials.add("s", piece(5, "zz"))  # 2..5 never came
    partials.add("t", piece(2, "late"))  # a block whose start never came
    await advance(INTERVAL * 3)
    assert [p for _, p in relay.sends] == [[("s", piece(0, "ab"))]]
