"""Agents' JSON lines: a byte stream split into lines without ever blocking on a partial
one, each read the way the relay will store it, and objects written as lines."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import trio

import wire

__all__ = ["LineTooLong", "iter_lines", "json_line", "load_line"]

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


def _int(text: str) -> int | float | str:
    # The relay stores strict JSON (signed 64-bit integers, no NaN): an agent's larger
    # integer becomes a float, or its digits as text, rather than a rejected event.
    value = int(text)
    if -wire.strict_json.INT64_LIMIT <= value < wire.strict_json.INT64_LIMIT:
        return value
    as_float = float(value) if len(text) < 300 else float("inf")
    return as_float if as_float not in (float("inf"), float("-inf")) else text


def load_line(raw: bytes) -> Any:
    """Parse one line the way the relay will accept it (see :func:`_int`)."""
    return wire.strict_json.loads(raw, parse_int=_int, parse_float=float)


def json_line(obj: dict[str, Any]) -> bytes:
    """``obj`` as one compact line of JSON (without the newline); a lone surrogate (not
    UTF-8) goes as its ``\\u`` escape."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":")).encode()
