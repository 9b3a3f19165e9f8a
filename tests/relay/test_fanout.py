from __future__ import annotations

import gc

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from relay import Hub
from relay.fanout import Tail, environment_key, session_key
from relay.sse import encode_sse
from wire import Event, encode_json


async def test_notify_wakes_every_watcher_of_the_key_only() -> None:
    hub = Hub()
    woken: list[str] = []

    async def waiter(name: str, key: str) -> None:
        await hub.watch(key).wait()
        woken.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "a", "k")
        nursery.start_soon(waiter, "b", "k")
        nursery.start_soon(waiter, "other", "k2")
        await trio.testing.wait_all_tasks_blocked()
        hub.notify("k")
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(woken) == ["a", "b"]
        hub.notify("k2")
    assert sorted(woken) == ["a", "b", "other"]


async def test_a_notify_between_watch_and_wait_is_not_lost() -> None:
    hub = Hub()
    changed = hub.watch("k")
    hub.notify("k")  # lands while the reader is "reading storage"
    with trio.fail_after(1):
        await changed.wait()
    # The next watcher gets a fresh hint, not the spent one.
    assert not hub.watch("k").is_set()


def test_unwatched_keys_cost_nothing() -> None:
    hub = Hub()
    hub.notify("nobody")  # no watcher: a no-op
    event = hub.watch("k")
    assert hub.statistics().watched_keys == 1
    del event
    gc.collect()
    assert hub.statistics().watched_keys == 0


def test_keys_of_different_things_differ() -> None:
    assert environment_key("x") != session_key("x")


def _event(seq: int) -> Event:
    return Event(seq=seq, kind="assistant_text", at=float(seq), data={"text": f"n{seq}"})


def _seqs(chunk: bytes) -> list[int]:
    return [int(line[4:]) for line in chunk.decode().splitlines() if line.startswith("id: ")]


@given(
    sizes=st.lists(st.integers(1, 5), min_size=1, max_size=30),
    swaps=st.lists(st.integers(0, 29), max_size=5),
    readers=st.lists(st.integers(0, 150), max_size=40),
)
def test_a_tail_gives_exactly_the_stored_events_after_any_seq_or_nothing(
    sizes: list[int], swaps: list[int], readers: list[int]
) -> None:
    # The storage log is 1..N, appended in batches; each batch's publish may come a little
    # out of order (two appends' tasks resuming in either order). Whatever a reader asks,
    # the tail answers with the exact stored run after its seq, or says "read storage".
    batches, seq = [], 1
    for size in sizes:
        batches.append([_event(s) for s in range(seq, seq + size)])
        seq += size
    for i in swaps:
        if i + 1 < len(batches):
            batches[i], batches[i + 1] = batches[i + 1], batches[i]
    tail = Tail(limit=8)
    published: set[int] = set()

    def message(seq: int) -> bytes:
        return encode_sse(id=seq, event="assistant_text", data=encode_json(_event(seq)))

    for n, batch in enumerate(batches):
        tail.extend((e.seq, message(e.seq)) for e in batch)
        published.update(e.seq for e in batch)
        for last in readers[n :: len(batches)]:
            answer = tail.after(last)
            if answer is None:
                continue
            chunk, upto = answer
            assert upto >= last
            got = _seqs(chunk)
            assert got == list(range(last + 1, upto + 1))
            assert set(got) <= published
            assert chunk == b"".join(message(s) for s in got)
    if not swaps:
        # Published in order: a reader within the last 8 events is served from the tail.
        total = seq - 1
        for last in range(max(0, total - 8), total + 1):
            answer = tail.after(last)
            assert answer is not None and answer[1] == max(last, total)
