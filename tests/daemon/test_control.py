"""The control socket that ``rcd status`` asks: a typed request, a typed report, and a clear
error for anything else, over a real Unix socket."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

import wire
from daemon.control import query_control, serve_control
from daemon.errors import DaemonError

REPORT = wire.StatusReport(
    environment=wire.EnvironmentStatus(
        id="env_1",
        name="box@host",
        relay="http://127.0.0.1:7878",
        connected=True,
        spawn="same-dir",
        capacity=32,
        directory="/src/box",
    ),
    sessions=[
        wire.SessionStatus(
            id="ses_1", title=None, state="idle", cwd="/src/box", branch=None, pid=42
        )
    ],
    link=wire.LinkStatus(connects=1, last_error=None),
    uplink=wire.UplinkStatus(
        buffered_events=0, batches=3, requests=2, batches_on_open_requests=1, failures=0
    ),
    process=wire.ProcessStatus(rss_kib=50_000, open_files=12, tasks=30, children=1),
    kept_worktrees=[wire.KeptWorktreeStatus(path="/x", branch="rcd/x", reasons=["1 commit"])],
)


async def _raw(path: Path, line: bytes) -> dict[str, object]:
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(line + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf)
    assert isinstance(reply, dict)
    return reply


async def test_a_request_gets_the_report_and_set_spawn_reaches_the_handler(
    tmp_path: Path,
) -> None:
    seen: list[wire.ControlRequest] = []

    def handler(request: wire.ControlRequest) -> wire.StatusReport:
        seen.append(request)
        return REPORT

    path = tmp_path / "control.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, handler)
        assert await query_control(path, wire.ControlRequest()) == REPORT
        await query_control(path, wire.ControlRequest(op="set_spawn", spawn="worktree"))
        # What `rcd status --json` prints is the report's JSON, key for key.
        assert await _raw(path, b'{"op": "status"}') == wire.encode(REPORT)
        nursery.cancel_scope.cancel()
    assert seen == [
        wire.ControlRequest(op="status"),
        wire.ControlRequest(op="set_spawn", spawn="worktree"),
        wire.ControlRequest(op="status"),
    ]


@pytest.mark.parametrize(
    ("line", "named"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "ControlRequest"),
        (b'{"op": "reboot"}', "op"),
        (b'{"op": "set_spawn", "spawn": "elsewhere"}', "spawn"),
        (b'{"op": "status", "verbose": true}', "verbose"),
        (b'{"op": "set_spawn"}', "set_spawn needs spawn"),
    ],
)
async def test_a_bad_request_is_refused_and_says_what_was_wrong(
    tmp_path: Path, line: bytes, named: str
) -> None:
    def handler(request: wire.ControlRequest) -> wire.StatusReport:
        if request.op == "set_spawn" and request.spawn is None:
            raise ValueError("set_spawn needs spawn: same-dir or worktree")
        return REPORT

    path = tmp_path / "control.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, handler)
        reply = await _raw(path, line)
        # The daemon goes on answering after a bad request.
        assert await query_control(path, wire.ControlRequest()) == REPORT
        nursery.cancel_scope.cancel()
    error = reply["error"]
    assert isinstance(error, dict) and error["code"] == "bad_request"
    assert named in error["message"], error


@pytest.mark.parametrize(
    "answer",
    [
        b"{}\n",
        b"[]\n",
        b"garbage\n",
        json.dumps({**wire.encode(REPORT), "environment": {"id": "env_1"}}).encode() + b"\n",
    ],
)
async def test_a_reply_that_is_not_a_report_is_a_clear_error(tmp_path: Path, answer: bytes) -> None:
    """An older or newer daemon's reply: ``rcd status`` says it cannot read it, never a
    traceback."""
    path = tmp_path / "control.sock"
    listener = trio.socket.socket(trio.socket.AF_UNIX)
    await listener.bind(str(path))
    listener.listen(1)

    async def answer_once() -> None:
        conn, _ = await listener.accept()
        with conn:
            await conn.recv(65536)
            await conn.send(answer)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer_once)
        with pytest.raises(DaemonError, match="does not understand"):
            await query_control(path, wire.ControlRequest())
    listener.close()


async def test_no_daemon_is_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(DaemonError, match="no rcd daemon is running here"):
        await query_control(tmp_path / "control.sock", wire.ControlRequest())


async def test_files_made_while_the_socket_is_bound_keep_the_process_umask(
    tmp_path: Path,
) -> None:
    """The daemon binds its socket while its other tasks go on (spares being checked out
    at start, say): what they create meanwhile gets the user's usual modes. A umask
    changed around the bind made such directories 0600 (no way in for the agent's
    sandbox, nor for git as any user but root)."""
    made: list[int] = []
    bound = trio.Event()

    async def make_directories() -> None:
        while not bound.is_set():
            directory = tmp_path / f"d{len(made)}"
            directory.mkdir()
            made.append(directory.stat().st_mode & 0o777)
            await trio.lowlevel.checkpoint()

    old = os.umask(0o022)
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(make_directories)
                path = await nursery.start(serve_control, tmp_path / "rcd.sock", lambda r: REPORT)
                bound.set()
                socket_mode = path.stat().st_mode & 0o777
                nursery.cancel_scope.cancel()
    finally:
        os.umask(old)
    assert len(made) > 1  # some were made while the socket was being bound
    assert set(made) == {0o755}
    assert socket_mode == 0o600
