from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import relay.sqlite.storage
import wire
from relay import AtCapacity, NewSession, NotFound, RelayError, SqliteStorage
from relay.records import Appended
from relay.sqlite import SqliteConnection, database_path


def _request(**overrides: object) -> wire.RegisterRequest:
    fields: dict[str, object] = {
        "name": "laptop",
        "machine": "m1",
        "directory": "/p",
        "spawn": "same-dir",
        "capacity": 2,
        "agent": "claude",
    }
    return wire.decode(wire.RegisterRequest, fields | overrides)


def _start(session_id: str) -> wire.StartSession:
    return wire.StartSession(session_id=session_id, origin="test")


async def test_state_survives_a_reopen(data_dir: Path) -> None:
    async with SqliteStorage.in_data_dir(data_dir) as storage:
        env = await storage.register_environment("cred_1", _request())
        await storage.open_downlink(env.environment_id, "link_1")
        new = NewSession(id="ses_1", environment_id=env.environment_id, title="t", spawn=None)
        await storage.create_session(new, _start("ses_1"))
        event = wire.Event(seq=1, kind="assistant_text", at=1.0, data={"text": "hi"})
        assert await storage.append_events("ses_1", [event]) == 1

    async with SqliteStorage.in_data_dir(data_dir) as storage:
        again = await storage.register_environment("cred_1", _request())
        assert again.environment_id == env.environment_id
        assert again.open_sessions == [wire.OpenSession(session_id="ses_1", last_seq=1)]
        assert await storage.read_events("ses_1", 0, 10) == [event]
        await storage.mark_all_offline()
        record = await storage.get_environment(env.environment_id)
        assert record is not None and not record.online


async def test_a_different_credential_gets_a_different_environment(
    storage: SqliteStorage,
) -> None:
    a = await storage.register_environment("cred_1", _request())
    b = await storage.register_environment("cred_2", _request())
    assert a.environment_id != b.environment_id


async def test_capacity_holds_across_connections(data_dir: Path) -> None:
    """Two connections (as two processes would have) racing for the last slots."""
    async with (
        SqliteStorage.in_data_dir(data_dir) as one,
        SqliteStorage.in_data_dir(data_dir) as two,
    ):
        env = await one.register_environment("cred_1", _request(capacity=3))
        await one.open_downlink(env.environment_id, "link_1")
        outcomes: list[str] = []

        async def create(storage: SqliteStorage, i: int) -> None:
            new = NewSession(
                id=f"ses_{i}", environment_id=env.environment_id, title=None, spawn=None
            )
            try:
                await storage.create_session(new, _start(new.id))
                outcomes.append("created")
            except AtCapacity as exc:
                assert (exc.running, exc.capacity) == (3, 3)
                outcomes.append("refused")

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for i in range(16):
                    nursery.start_soon(create, one if i % 2 else two, i)
        assert sorted(outcomes) == ["created"] * 3 + ["refused"] * 13
        record = await two.get_environment(env.environment_id)
        assert record is not None and record.active_sessions == 3


async def test_a_replaced_downlink_is_no_longer_current(storage: SqliteStorage) -> None:
    env = await storage.register_environment("cred_1", _request())
    await storage.open_downlink(env.environment_id, "old")
    await storage.open_downlink(env.environment_id, "new")
    assert not (await storage.read_downlink(env.environment_id, "old", 0, 10)).current
    assert (await storage.read_downlink(env.environment_id, "new", 0, 10)).current
    # The old link going away must not take the environment offline.
    assert not await storage.close_downlink(env.environment_id, "old")
    record = await storage.get_environment(env.environment_id)
    assert record is not None and record.online
    assert await storage.close_downlink(env.environment_id, "new")
    record = await storage.get_environment(env.environment_id)
    assert record is not None and not record.online


async def test_directives_are_dense_per_environment(storage: SqliteStorage) -> None:
    a = await storage.register_environment("cred_1", _request(capacity=3))
    b = await storage.register_environment("cred_1", _request(directory="/q", capacity=3))
    for env in (a, b):
        await storage.open_downlink(env.environment_id, "l")
    for i in range(3):
        for env in (a, b):
            sid = f"ses_{env.environment_id}_{i}"
            await storage.create_session(
                NewSession(id=sid, environment_id=env.environment_id, title=None, spawn=None),
                _start(sid),
            )
    for env in (a, b):
        read = await storage.read_downlink(env.environment_id, "l", 0, 10)
        assert [d.dseq for d in read.directives] == [1, 2, 3]
        after_one = await storage.read_downlink(env.environment_id, "l", 1, 1)
        assert [d.dseq for d in after_one.directives] == [2]


async def test_missing_things_are_not_found(storage: SqliteStorage) -> None:
    assert await storage.get_session("nope") is None
    assert await storage.get_environment("nope") is None
    with pytest.raises(NotFound):
        await storage.append_events("nope", [])
    with pytest.raises(NotFound):
        await storage.rename_session("nope", "t")
    new = NewSession(id="ses_1", environment_id="env_nope", title=None, spawn=None)
    with pytest.raises(NotFound):
        await storage.create_session(new, _start("ses_1"))


async def test_closed_storage_refuses_calls(data_dir: Path) -> None:
    async with SqliteStorage(database_path(data_dir)) as storage:
        pass
    with pytest.raises(RelayError, match="not open"):
        await storage.list_sessions()


async def test_an_append_says_which_of_its_events_are_new(storage: SqliteStorage) -> None:
    # Live streams are handed exactly first_new..acked of a batch: never a resent seq
    # (whatever it carries now), never what lies past a gap.
    env = await storage.register_environment("cred_1", _request())
    await storage.open_downlink(env.environment_id, "link_1")
    new = NewSession(id="ses_1", environment_id=env.environment_id, title="t", spawn=None)
    await storage.create_session(new, _start("ses_1"))

    def ev(seq: int, text: str = "x") -> wire.Event:
        return wire.Event(seq=seq, kind="assistant_text", at=float(seq), data={"text": text})

    async def append(*events: wire.Event) -> tuple[int, int]:
        [done] = await storage.append_many([("ses_1", events)], credential_id="cred_1")
        assert isinstance(done, Appended)
        return done.first_new, done.acked

    assert await append(ev(1), ev(2)) == (1, 2)
    assert await append(ev(2, "resent, other text"), ev(3)) == (3, 3)
    assert await append(ev(5)) == (4, 3)  # a gap: nothing new
    assert await append(ev(3), ev(2)) == (4, 3)  # all old: nothing new
    assert await append(ev(5), ev(4), ev(6)) == (4, 6)
    assert [e.data["text"] for e in await storage.read_events("ses_1", 0, 10)][1] == "x"


async def _session_with_events(storage: SqliteStorage) -> str:
    env = await storage.register_environment("cred_1", _request())
    await storage.open_downlink(env.environment_id, "link_1")
    new = NewSession(id="ses_1", environment_id=env.environment_id, title="t", spawn=None)
    await storage.create_session(new, _start("ses_1"))
    return "ses_1"


async def test_a_call_that_finds_the_database_locked_waits_off_the_event_loop(
    data_dir: Path,
) -> None:
    """Another process (an admin command) holds the write lock: the relay's call waits for
    it in a worker thread while the event loop goes on, then does its work."""
    async with SqliteStorage.in_data_dir(data_dir) as storage:
        session_id = await _session_with_events(storage)
        other = sqlite3.connect(database_path(data_dir), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        appended = trio.Event()
        read = trio.Event()

        async def append() -> None:
            event = wire.Event(seq=1, kind="assistant_text", at=1.0, data={"text": "hi"})
            assert await storage.append_events(session_id, [event]) == 1
            appended.set()

        async def read_log() -> None:
            assert [e.seq for e in await storage.read_events(session_id, 0, 10)] == [1]
            read.set()

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(append)
                # Every task is parked and this one runs on: the loop is not blocked by the
                # waiting call, which holds the connection in a worker thread.
                await trio.testing.wait_all_tasks_blocked()
                assert storage._limiter.borrowed_tokens == 1
                assert not appended.is_set()
                # Calls that come meanwhile wait their turn behind it (the connection is busy).
                nursery.start_soon(read_log)
                await trio.testing.wait_all_tasks_blocked()
                assert storage._limiter.statistics().tasks_waiting == 1
                assert not read.is_set()
                other.execute("COMMIT")
                other.close()
                await appended.wait()
                await read.wait()


async def test_the_log_is_checkpointed_in_a_worker_thread_and_stays_small(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay.sqlite.storage, "CHECKPOINT_CHANGES", 50)
    threads: list[str] = []
    checkpoint = SqliteConnection.checkpoint

    def recorded(self: SqliteConnection) -> None:
        threads.append(threading.current_thread().name)
        checkpoint(self)

    monkeypatch.setattr(SqliteConnection, "checkpoint", recorded)
    wal = database_path(data_dir).with_name(database_path(data_dir).name + "-wal")
    async with SqliteStorage.in_data_dir(data_dir) as storage:
        session_id = await _session_with_events(storage)
        for seq in range(1, 2001):
            event = wire.Event(seq=seq, kind="assistant_text", at=1.0, data={"text": "x" * 200})
            await storage.append_events(session_id, [event])
            await trio.lowlevel.checkpoint()  # as a server's requests do between calls
        # Without checkpoints the log would hold every commit: 2000 of them, over 8 MB.
        assert wal.stat().st_size < 2 * 1024 * 1024
        assert threads and threading.main_thread().name not in threads
        assert len(await storage.read_events(session_id, 0, 5000)) == 2000


async def test_a_call_queued_behind_the_connection_that_then_finds_it_locked_waits_too(
    data_dir: Path,
) -> None:
    """A call that waited its turn (a checkpoint, another call waiting for a lock) and then
    finds the database locked by another process waits for that lock too, and succeeds."""
    async with SqliteStorage.in_data_dir(data_dir) as storage:
        other = sqlite3.connect(database_path(data_dir), isolation_level=None)
        added = trio.Event()

        async def add() -> None:
            await storage.add_device_token("phone", "hash-of-phone")
            added.set()

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                async with storage._limiter:  # the connection is busy in a worker thread
                    nursery.start_soon(add)
                    await trio.testing.wait_all_tasks_blocked()
                    assert storage._limiter.statistics().tasks_waiting == 1  # its turn comes
                    other.execute("BEGIN IMMEDIATE")  # and another process takes the lock
                # Its turn: it finds the database locked, and waits for the lock in a worker
                # thread (holding the connection).
                await trio.testing.wait_all_tasks_blocked()
                assert storage._limiter.borrowed_tokens == 1
                assert not added.is_set()
                other.execute("COMMIT")
                other.close()
                await added.wait()
        assert [t.name for t in await storage.list_device_tokens()] == ["phone"]


async def test_the_calls_on_a_requests_path_need_no_worker_thread(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queueing an input and appending a turn's events run on the event loop: a thread
    hand-off would cost more than the transaction (and wake two threads on the path)."""
    async with SqliteStorage.in_data_dir(data_dir) as storage:
        session_id = await _session_with_events(storage)
        handed_off: list[object] = []
        run_sync = trio.to_thread.run_sync

        async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
            handed_off.append(fn)
            return await run_sync(fn, *args, **kwargs)

        monkeypatch.setattr(trio.to_thread, "run_sync", counting)
        message = wire.SendMessage(session_id=session_id, input_id="m1", text="hi", origin="t")
        assert await storage.submit_input(session_id, message) is not None
        turn = [
            wire.Event(seq=seq, kind="assistant_text", at=1.0, data={"text": f"{seq}"})
            for seq in range(1, 6)
        ]
        assert await storage.append_events(session_id, turn) == 5
        assert handed_off == []
        # A page of the log is heavy: it is read in a worker thread.
        assert len(await storage.read_events(session_id, 0, 1000)) == 5
        assert len(handed_off) == 1
