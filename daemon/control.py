"""The control socket: a Unix socket (mode 0600) that ``rcd status`` talks to.

One JSON object per line each way: a :class:`wire.ControlRequest`, answered with a
:class:`wire.StatusReport` (or ``{"error": {"code", "message"}}`` for a request it cannot
read). The daemon opens no TCP listener; this socket is reachable only by the user who runs
it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import structlog
import trio

import wire

from .errors import DaemonError

__all__ = ["query_control", "serve_control"]

log = structlog.get_logger("daemon.control")

Handler = Callable[[wire.ControlRequest], wire.StatusReport]


async def serve_control(
    path: Path, handler: Handler, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    """Listen on ``path`` and answer each request line with ``handler(request)``.

    A stale socket file left by a crashed daemon is replaced; a live one (another daemon
    serves the same directory) is a :class:`DaemonError`.
    """
    if await trio.Path(path).exists():
        if await _is_alive(path):
            raise DaemonError(f"another rcd daemon already serves this directory ({path})")
        await trio.Path(path).unlink(missing_ok=True)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # No umask here: it is the process's, and the bind runs in a thread while the daemon's
    # other tasks go on: every file and directory made meanwhile (a spare worktree's
    # checkout, by a git started then) would get mode 0600. The socket's directory is
    # private (0700, :func:`~daemon.paths.runtime_dir`); the chmod is a second lock.
    await sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(16)
    listener = trio.SocketListener(sock)
    try:
        async with trio.open_nursery() as nursery:
            task_status.started(path)
            while True:
                stream = await listener.accept()
                nursery.start_soon(_serve_one, stream, handler)
    finally:
        with trio.CancelScope(shield=True):
            await listener.aclose()
            await trio.Path(path).unlink(missing_ok=True)


async def _serve_one(stream: trio.SocketStream, handler: Handler) -> None:
    async with stream:
        buf = b""
        with trio.move_on_after(10):
            while b"\n" not in buf and len(buf) < 65536:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                buf += chunk
            reply: Any
            try:
                request: wire.ControlRequest = wire.decode_json(
                    wire.ControlRequest, buf.split(b"\n", 1)[0] or b"{}"
                )
                reply = wire.encode(handler(request))
            except (wire.DecodeError, ValueError) as exc:
                reply = {"error": {"code": "bad_request", "message": str(exc)}}
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(json.dumps(reply).encode() + b"\n")


async def _is_alive(path: Path) -> bool:
    try:
        with trio.fail_after(2):
            stream = await trio.open_unix_socket(str(path))
            await stream.aclose()
        return True
    except (OSError, trio.TooSlowError):
        return False


async def query_control(path: Path, request: wire.ControlRequest) -> wire.StatusReport:
    """Send one request to the daemon at ``path``; raises :class:`DaemonError` if none runs
    or its reply is not a status report (the caller sets the deadline; a daemon that does
    not answer then is reported)."""
    try:
        stream = await trio.open_unix_socket(str(path))
        async with stream:
            await stream.send_all(wire.encode_json(request).encode() + b"\n")
            buf = b""
            while b"\n" not in buf:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                buf += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise DaemonError(f"no rcd daemon is running here (no control socket at {path})") from None
    except OSError as exc:
        raise DaemonError(f"the daemon at {path} did not answer: {exc}") from None
    try:
        reply = json.loads(buf)
    except ValueError:
        reply = None
    if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
        raise DaemonError(f"the daemon refused the request: {reply['error'].get('message')}")
    try:
        return wire.decode(wire.StatusReport, reply)
    except wire.DecodeError as exc:
        raise DaemonError(f"the daemon sent a reply rcd does not understand ({exc})") from None
