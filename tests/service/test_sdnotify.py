"""``sd_notify`` over a real AF_UNIX datagram socket, path and abstract, as systemd binds it."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from daemon.sdnotify import notify, notify_ready, notify_status, notify_stopping


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        yield sock


def test_ready_stopping_and_status_reach_systemd(receiver: socket.socket) -> None:
    assert notify_ready() is True
    assert receiver.recv(4096) == b"READY=1"
    assert notify_status("connected to\nhttps://relay.example") is True
    assert receiver.recv(4096) == b"STATUS=connected to https://relay.example"
    assert notify_stopping() is True
    assert receiver.recv(4096) == b"STOPPING=1"


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"rcd-test-{os.getpid()}-{id(monkeypatch)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify_ready() is True
        assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize("value", [None, "", "vsock:2:1234", "relative/path"])
def test_not_under_systemd_is_a_no_op(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert notify("READY=1") is False


def test_a_vanished_socket_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert notify_ready() is False


async def test_a_full_queue_never_blocks(receiver: socket.socket) -> None:
    # Nobody reads: the socket's queue fills up, and from then on notify() drops the
    # message and says so instead of waiting.
    def flood() -> list[bool]:
        return [notify("STATUS=" + "x" * 1024) for _ in range(5000)]

    with trio.fail_after(10):
        sent = await trio.to_thread.run_sync(flood, abandon_on_cancel=True)
    assert sent[0] is True
    assert sent[-1] is False
