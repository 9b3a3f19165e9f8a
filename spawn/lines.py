"""Split a byte stream into lines without ever blocking on a partial one."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import trio

__all__ = ["LineTooLong", "iter_lines"]

#: A single stream-json line may hold a whole file read by a tool; 64 MiB is far above
#: anything an agent writes in practice but still bounds memory.
MAX_LINE_BYTES = 64 * 1024 * 1024


class LineTooLong(Exception):
    pass


async def iter_lines(
    stream: trio.abc.ReceiveStream, *, max_bytes: int = MAX_LINE_BYTES
) -> AsyncGenerator[bytes, None]:
    """Yield each ``\\n``-terminated line (without the newline) until EOF.

    A last line without a newline is yielded too. Raises :class:`LineTooLong` when a line
    grows past ``max_bytes``. Cancellation leaves the stream unread past the current chunk.
    """
    buf = bytearray()
    while True:
        chunk = await stream.receive_some(256 * 1024)
        if not chunk:
            break
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                buf += chunk[start:]
                break
            if buf:
                buf += chunk[start:nl]
                yield bytes(buf)
                buf.clear()
            else:
                yield bytes(chunk[start:nl])
            start = nl + 1
        if len(buf) > max_bytes:
            raise LineTooLong(f"a line grew past {max_bytes} bytes without a newline")
    if buf:
        yield bytes(buf)
