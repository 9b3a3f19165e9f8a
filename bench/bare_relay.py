"""The least any relay adds: the same two trips as rcd's, with nothing but the transport.

A relay and a forwarder beside the agent, each in its own process and on the libraries rcd
uses (Starlette served by Hypercorn's trio worker; httpx and httpx-sse in the forwarder),
that only move bytes:

* ``POST /in``: the body (one stream-json line for the agent) goes to the forwarder's open
  stream ``GET /down`` (SSE), and the forwarder writes it to the agent's stdin;
* every line the agent writes goes up as a line of the forwarder's open request
  ``POST /up`` (a chunked body, as rcd's uplink frames), and on to the client's open stream
  ``GET /out`` (SSE).

No storage, no authentication, no decoding, no ordering or acknowledgement: what is left is
HTTP through Python on this machine, with each process waking up as rcd's do. The real-CLI
benchmark drives a CLI through it beside rcd and the bare CLI, so that what rcd adds can be
read against what the transport alone adds in the same run.

With ``--durable`` it does, on the same path, the least a relay that keeps what it is
given must do, and nothing else: a token is checked (its SHA-256 against the one known hash,
in constant time) for every request and every line the agent's side sends up (as rcd's relay
checks a session's token for every frame of its open uplink), the input and every batch of
the agent's lines (the lines of one read) are decoded as JSON and stored in SQLite (WAL,
``synchronous=NORMAL``, as rcd's relay keeps its database; checkpoints left to the end, as
rcd's leave the turn's path) in one transaction before they go on; the forwarder decodes each
line the agent writes and sends it up with the token. A wrong token is answered 401. What
rcd adds over this is its own model (sessions, numbered events, acknowledgements, streams
per client), not the durability and the checks every relay of its kind pays.

    python -m bench.bare_relay relay [--durable DIR]   # prints "bare relay: serving URL"
    python -m bench.bare_relay forward [--durable] URL -- ARGV
                                                       # runs ARGV, forwards its stdin/stdout
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from functools import partial
from pathlib import Path

import httpx
import trio
from httpx_sse import aconnect_sse
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from relay.config import RelayConfig
from spawn.lines import iter_lines

__all__ = ["TOKEN", "main"]

#: The one token the durable relay accepts (its client's and its forwarder's).
TOKEN = "bench-durable-floor-token-0123456789abcdef"


class _Pipe:
    """Lines on their way to the one open stream that reads them."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[bytes](10_000)


class _Stream:
    """An SSE response of a pipe's lines, one message each, until the client goes."""

    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
        async for line in self.pipe.receive:
            message = b"data: " + line + b"\n\n"
            await send({"type": "http.response.body", "body": message, "more_body": True})


class _Store:
    """The durable relay's checks and its database (``relay.sqlite`` in ``directory``)."""

    def __init__(self, directory: Path) -> None:
        self.expected = hashlib.sha256(TOKEN.encode()).digest()
        directory.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(directory / "relay.sqlite", isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=0"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("CREATE TABLE IF NOT EXISTS inputs (id INTEGER PRIMARY KEY, body TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS lines (id INTEGER PRIMARY KEY, body TEXT)")

    def check(self, token: bytes) -> None:
        if not hmac.compare_digest(hashlib.sha256(token).digest(), self.expected):
            raise HTTPException(401, "not the durable relay's token")

    def check_line(self, line: bytes) -> bytes:
        """``line`` (``TOKEN<tab>JSON``) without its token, once that is checked."""
        token, _, rest = line.partition(b"\t")
        self.check(token)
        return rest

    def keep(self, table: str, bodies: list[bytes]) -> None:
        """Check that ``bodies`` are JSON and store them, in one transaction."""
        for body in bodies:
            json.loads(body)
        rows = [(body.decode(),) for body in bodies]
        self.db.execute("BEGIN")
        self.db.executemany(f"INSERT INTO {table} (body) VALUES (?)", rows)
        self.db.execute("COMMIT")


def _app(store: _Store | None = None) -> Starlette:
    down, out = _Pipe(), _Pipe()

    def check(request: Request) -> None:
        if store is not None:
            store.check(request.headers.get("authorization", "").removeprefix("Bearer ").encode())

    async def post_in(request: Request) -> Response:
        check(request)
        body = await request.body()
        if store is not None:
            store.keep("inputs", [body])
        down.send.send_nowait(body)
        return Response(b'{"ok":true}', status_code=202, media_type="application/json")

    async def post_up(request: Request) -> Response:
        check(request)
        buffer = b""
        async with aclosing(request.stream()) as chunks:
            async for chunk in chunks:
                *lines, buffer = (buffer + chunk).split(b"\n")
                lines = [line for line in lines if line]
                if store is not None and lines:
                    lines = [store.check_line(line) for line in lines]
                    store.keep("lines", lines)
                for line in lines:
                    out.send.send_nowait(line)
        return Response(b"{}", media_type="application/json")

    def stream(pipe: _Pipe) -> object:
        async def endpoint(request: Request) -> Response:
            check(request)
            return _Stream(pipe)  # type: ignore[return-value]  # any ASGI app answers

        return endpoint

    return Starlette(
        routes=[
            Route("/in", post_in, methods=["POST"]),
            Route("/up", post_up, methods=["POST"]),
            Route("/down", stream(down)),  # type: ignore[arg-type]
            Route("/out", stream(out)),  # type: ignore[arg-type]
        ]
    )


async def _relay(durable: Path | None) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    # As rcd's relay keeps them (the benchmark's client idles while the other sides run).
    config.keep_alive_timeout = RelayConfig(data_dir=Path()).keep_alive_timeout
    app = _app(_Store(durable) if durable is not None else None)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve, app, config, mode="asgi"))  # type: ignore[arg-type]
        print(f"bare relay: serving http://127.0.0.1:{port}", flush=True)


class _Lines(httpx.AsyncByteStream):
    """A request body of the agent's lines, each sent as it comes."""

    def __init__(self, lines: trio.MemoryReceiveChannel[bytes], decode: bool) -> None:
        self.lines = lines
        self.decode = decode

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for line in self.lines:
            if self.decode:
                json.loads(line)  # as any forwarder that reads the agent's lines must
                yield TOKEN.encode() + b"\t" + line + b"\n"
            else:
                yield line + b"\n"


async def _forward(url: str, argv: list[str], durable: bool) -> None:
    process = await trio.lowlevel.open_process(argv, stdin=-1, stdout=-1, stderr=None)
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, process.stdout
    send, receive = trio.open_memory_channel[bytes](10_000)
    headers = {"authorization": f"Bearer {TOKEN}"} if durable else {}
    client = httpx.AsyncClient(base_url=url, timeout=None, headers=headers)
    async with client as http, trio.open_nursery() as n:

        async def up() -> None:
            request = http.build_request("POST", "/up", headers={"transfer-encoding": "chunked"})
            request.stream = _Lines(receive, durable)
            await http.send(request)

        async def read_agent() -> None:
            async with send:
                async for line in iter_lines(stdout):
                    await send.send(line)
            n.cancel_scope.cancel()  # the agent is gone

        n.start_soon(up)
        n.start_soon(read_agent)
        async with aconnect_sse(http, "GET", "/down") as source:
            print("bare relay: forwarding", flush=True)
            async for sse in source.aiter_sse():
                if sse.data:
                    await stdin.send_all(sse.data.encode() + b"\n")


def main(argv: list[str]) -> None:
    if argv == ["relay"] or (len(argv) == 3 and argv[:2] == ["relay", "--durable"]):
        trio.run(_relay, Path(argv[2]) if len(argv) == 3 else None)
        return
    durable = argv[1:2] == ["--durable"]
    if durable:
        argv = argv[:1] + argv[2:]
    if len(argv) > 3 and argv[0] == "forward" and argv[2] == "--":
        trio.run(_forward, argv[1], argv[3:], durable)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
