"""What the benchmarks share to reach a relay: the relay in its own process (``rcd relay``),
a minimal HTTP/1.1 client on one keep-alive connection (as a browser's network stack: the
client library's own cost is not what is measured), and a reader of a session's SSE stream.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import trio

__all__ = [
    "MIB",
    "BodyReader",
    "Chunked",
    "EventFeed",
    "HttpConnection",
    "LoggedProcess",
    "RelayProcess",
    "SseMessage",
    "json_body",
    "start_relay_process",
    "wait_for_line",
]

REPO = Path(__file__).resolve().parents[1]
MIB = 1024


# -- a relay in its own process ----------------------------------------------------------


@attrs.define(eq=False, kw_only=True)
class LoggedProcess:
    """A process a benchmark started, its output in ``log_path``."""

    process: trio.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@attrs.define(eq=False, kw_only=True)
class RelayProcess(LoggedProcess):
    url: str
    port: int
    data_dir: Path

    async def stop(self) -> None:
        """SIGKILL and reap: the benchmark is over, a graceful stop would only cost time."""
        with trio.CancelScope(shield=True):
            if self.process.returncode is None:
                self.process.kill()
            await self.process.wait()


async def start_relay_process(root: Path, *args: str) -> RelayProcess:
    """``python -m daemon relay --port 0 --data-dir root/relay ARGS`` with its output in
    ``root/relay.log`` (a pipe nobody reads would block the relay's logging)."""
    data_dir = root / "relay"
    log_path = root / "relay.log"
    with log_path.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "daemon",
                "relay",
                "--port",
                "0",
                "--data-dir",
                str(data_dir),
                *args,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
        )
    try:
        url = (await wait_for_line(log_path, process, r"rcd relay: serving (\S+)")).group(1)
    except BaseException:
        with trio.CancelScope(shield=True):
            process.kill()
            await process.wait()
        raise
    return RelayProcess(
        process=process,
        url=url,
        port=int(url.rsplit(":", 1)[1]),
        data_dir=data_dir,
        log_path=log_path,
    )


async def wait_for_line(
    log_path: Path, process: trio.Process, pattern: str, timeout: float = 30
) -> re.Match[str]:
    """The first match of ``pattern`` in the output ``process`` writes to ``log_path``;
    RuntimeError (with the output) if the process exits first."""
    with trio.fail_after(timeout):
        while True:
            match = re.search(pattern, log_path.read_text(errors="replace"))
            if match:
                return match
            if process.returncode is not None:
                raise RuntimeError(
                    f"{log_path.name}: exited {process.returncode}: {log_path.read_text()}"
                )
            await trio.sleep(0.02)


# -- minimal HTTP/1.1 ----------------------------------------------------------------------


class Chunked:
    """Incremental decoder of a chunked body."""

    def __init__(self) -> None:
        self._raw = bytearray()
        self._left = 0
        self._state = "size"
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self._raw += data
        out = bytearray()
        while not self.done:
            if self._state == "size":
                end = self._raw.find(b"\r\n")
                if end < 0:
                    break
                self._left = int(bytes(self._raw[:end]).split(b";")[0], 16)
                del self._raw[: end + 2]
                if self._left == 0:
                    self.done = True
                    break
                self._state = "data"
            elif self._state == "data":
                take = min(self._left, len(self._raw))
                if not take:
                    break
                out += self._raw[:take]
                del self._raw[:take]
                self._left -= take
                if not self._left:
                    self._state = "crlf"
            else:
                if len(self._raw) < 2:
                    break
                del self._raw[:2]
                self._state = "size"
        return bytes(out)


@attrs.define(eq=False)
class HttpConnection:
    """One keep-alive HTTP/1.1 connection; requests one at a time."""

    stream: trio.SocketStream
    host: str
    _buffer: bytearray = attrs.Factory(bytearray)

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        return cls(stream=await trio.open_tcp_stream(host, port), host=f"{host}:{port}")

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def _send_head(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        await self.stream.send_all("\r\n".join(lines).encode() + b"\r\n\r\n" + (body or b""))

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self._buffer += data

    async def _read_head(self) -> tuple[int, dict[str, str]]:
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            await self._fill()
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        status = int(head[0].split(" ", 2)[1])
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, bytes]:
        """Send a request and read the whole response: (status, body)."""
        await self._send_head(method, path, headers or {}, body)
        status, head = await self._read_head()
        if "content-length" in head:
            size = int(head["content-length"])
            while len(self._buffer) < size:
                await self._fill()
            payload = bytes(self._buffer[:size])
            del self._buffer[:size]
            return status, payload
        if head.get("transfer-encoding", "").lower() == "chunked":
            decoder, out = Chunked(), bytearray()
            out += decoder.feed(bytes(self._buffer))
            self._buffer.clear()
            while not decoder.done:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError("the server closed the connection mid-body")
                out += decoder.feed(data)
            return status, bytes(out)
        return status, b""

    async def open_stream(self, path: str, headers: dict[str, str]) -> tuple[int, BodyReader]:
        """A streaming GET: the status and a reader of the (chunked) body."""
        await self._send_head("GET", path, headers, None)
        status, head = await self._read_head()
        chunked = head.get("transfer-encoding", "").lower() == "chunked"
        reader = BodyReader(self.stream, Chunked() if chunked else None, bytes(self._buffer))
        self._buffer.clear()
        return status, reader


@attrs.define(eq=False)
class BodyReader:
    stream: trio.SocketStream
    decoder: Chunked | None
    pending: bytes = b""

    async def read(self) -> bytes:
        """The next decoded piece of the body; b"" at its end."""
        while True:
            data, self.pending = self.pending, b""
            if not data:
                data = await self.stream.receive_some(65536)
                if not data:
                    return b""
            if self.decoder is None:
                return data
            out = self.decoder.feed(data)
            if out or self.decoder.done:
                return out


@attrs.frozen
class SseMessage:
    id: str | None
    event: str | None
    data: str | None


@attrs.define(eq=False)
class EventFeed:
    """A session's live event stream (``GET /api/sessions/{id}/events`` as SSE) over raw
    HTTP/1.1. :meth:`next` may be cancelled (under ``move_on_after``, say) and called
    again: nothing read is lost, unlike a cancelled httpx stream."""

    conn: HttpConnection
    reader: BodyReader
    _buffer: bytes = b""
    _ready: list[SseMessage] = attrs.Factory(list)

    @classmethod
    async def open(
        cls, url: str, token: str, session_id: str, after: int = 0, *, partials: bool = False
    ) -> EventFeed:
        """The session's stream after ``after`` (with the replies being written, if
        ``partials``)."""
        headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": str(after)}
        query = "?partials=1" if partials else ""
        return await cls.open_path(url, f"/api/sessions/{session_id}/events{query}", headers)

    @classmethod
    async def open_path(cls, url: str, path: str, headers: dict[str, str]) -> EventFeed:
        """Any SSE stream: ``GET url+path`` with ``headers``."""
        host, port = url.removeprefix("http://").rsplit(":", 1)
        conn = await HttpConnection.open(host, int(port))
        status, reader = await conn.open_stream(path, {"Accept": "text/event-stream", **headers})
        if status != 200:
            await conn.aclose()
            raise RuntimeError(f"event stream {path}: HTTP {status}")
        return cls(conn=conn, reader=reader)

    async def aclose(self) -> None:
        await self.conn.aclose()

    async def next(self) -> SseMessage:
        """The next message (keep-alive comments skipped); EOFError when the stream ends."""
        while not self._ready:
            data = await self.reader.read()  # the only await: cancelling it loses nothing
            if not data:
                raise EOFError("the event stream ended")
            *blocks, self._buffer = (self._buffer + data).split(b"\n\n")
            for block in blocks:
                fields: dict[str, str] = {}
                for line in block.decode().split("\n"):
                    if line and not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
                if fields:
                    self._ready.append(
                        SseMessage(fields.get("id"), fields.get("event"), fields.get("data"))
                    )
        return self._ready.pop(0)


def json_body(status: int, body: bytes, what: str) -> Any:
    if status >= 300:
        raise RuntimeError(f"{what}: HTTP {status} {body[:300]!r}")
    return json.loads(body)
