"""Bounded memory for unsent events: the overflow waits on disk, in order, and survives a
crash of the daemon."""

from __future__ import annotations

from pathlib import Path

import trio

import wire
from daemon.spool import Spool
from daemon.uplink import Outbox, Uplink


def event(seq: int) -> wire.Event:
    return wire.make_event(seq, 1.0, wire.AssistantText(text=f"e{seq}"))


def test_overflow_goes_to_disk_and_comes_back_in_order(tmp_path: Path) -> None:
    box = Outbox(memory_limit=10, spool=Spool(tmp_path / "s.jsonl"))
    for seq in range(1, 101):
        box.push(event(seq))
        assert len(box.events) <= 10
    assert box.pending() == 100 and box.last_seq() == 100
    received: list[int] = []
    while box.pending():
        batch = box.take_batch(7)
        assert len(box.events) <= 10
        received += [e.seq for e in batch]
        assert box.acknowledge(batch[-1].seq)
    assert received == list(range(1, 101))
    assert not (tmp_path / "s.jsonl").exists()  # nothing left behind


def test_a_crashed_run_s_spool_is_sent_first_or_dropped_after_a_gap(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    for sid in ("kept", "gap", "closed"):
        spool = Spool(spool_dir / f"{sid}.jsonl")
        for seq in range(6, 10):
            spool.append(event(seq))
    uplink = Uplink(client=None, spool_dir=spool_dir, memory_limit=2)  # type: ignore[arg-type]
    # The relay holds 1..5 of "kept" (the spool continues it) but only 1..3 of "gap".
    # "closed" is not open there any more (a goodbye ended it before its last events
    # came): they are sent all the same, and the relay's answer says what it holds.
    found = uplink.recover({"kept": 5, "gap": 3})
    assert found == {"kept": 9, "closed": 9}
    assert uplink.pending() == 8
    assert not (spool_dir / "gap.jsonl").exists()
    box = uplink._box("kept")
    assert [e.seq for e in box.take_batch(10)] == [6, 7]  # memory_limit 2; the rest on disk
    assert box.acknowledge(7)
    assert [e.seq for e in box.take_batch(10)] == [8, 9]


async def test_events_published_after_the_uplink_closed_are_spooled_for_the_next_start(
    tmp_path: Path,
) -> None:
    # A stop cut short by its deadline: the uplink's task has ended while sessions still
    # write their last events. Publishing never raises; everything unsent, in memory and
    # already spooled, goes to disk in order and the next start sends it first.
    spool_dir = tmp_path / "spool"
    uplink = Uplink(client=None, spool_dir=spool_dir, memory_limit=3)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(uplink.run)
        uplink.pause()  # nothing goes out (there is no relay here)
        nursery.cancel_scope.cancel()
    for seq in range(1, 8):  # 3 stay in memory, 4 overflow to the spool
        uplink.publish("late", event(seq))
    uplink.publish(
        "late",
        wire.make_event(
            8, 1.0, wire.SessionEnded(reason="daemon_stopped", worktree_kept=False, branch=None)
        ),
    )
    assert uplink.is_complete("late")
    assert uplink.spool_unsent() == 8
    again = Uplink(client=None, spool_dir=spool_dir)  # type: ignore[arg-type]
    assert again.recover({"late": 0}) == {"late": 8}
    box = again._outboxes["late"]
    assert [e.seq for e in box.take_batch(100)] == list(range(1, 9))
