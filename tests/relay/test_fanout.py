from __future__ import annotations

import gc

import trio
import trio.testing

from relay import Hub
from relay.fanout import environment_key, session_key


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
