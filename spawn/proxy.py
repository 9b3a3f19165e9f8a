"""The way out of a wrapped sandbox (:func:`spawn.sandbox.bwrap_argv`): an HTTP proxy on a
Unix socket that lets through only the allowed hosts.

A wrapped agent has a network of its own with nothing in it; the socket is bound into its
sandbox and ``socat`` there turns it into ``127.0.0.1:3128``, which ``HTTP_PROXY`` and
``HTTPS_PROXY`` name. Both forms are served: ``CONNECT host:port`` (HTTPS, and anything
tunnelled) and a plain ``GET http://host/...``. A host that is not allowed gets ``403``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

import structlog
import trio

__all__ = ["PROXY_PORT", "host_allowed", "serve_proxy"]

log = structlog.get_logger("spawn.proxy")

#: The port the proxy answers on inside the sandbox.
PROXY_PORT = 3128
#: The longest request head read (request line and headers).
MAX_HEAD = 16 * 1024
#: How long a client gets to send its request head.
HEAD_TIMEOUT = 30.0
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_SYNTAX = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """Whether ``host`` is one of ``allowed``: the same name or address, or under a
    ``*.domain`` one."""
    host = host.strip("[]").lower().rstrip(".")
    for pattern in allowed:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


async def serve_proxy(
    path: str | None,
    allowed: Sequence[str],
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the proxy until cancelled, on the Unix socket ``path`` or (None) on a port of
    127.0.0.1; ``task_status`` gets the socket's path, or ``127.0.0.1:PORT``."""
    if path is not None:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(path)
        sock.listen(64)
        listener = trio.SocketListener(sock)
        where = path
    else:
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        where = f"127.0.0.1:{listener.socket.getsockname()[1]}"

    async def handle(stream: trio.SocketStream) -> None:
        try:
            await _proxy(stream, allowed)
        except Exception as exc:  # one connection's trouble ends that connection only
            log.debug("proxy_connection_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            await stream.aclose()

    task_status.started(where)
    await trio.serve_listeners(handle, [listener])


async def _read_head(stream: trio.SocketStream) -> tuple[bytes, bytes]:
    """The request head (through the blank line) and whatever came after it."""
    data = b""
    with trio.fail_after(HEAD_TIMEOUT):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk or len(data) > MAX_HEAD:
                raise trio.BrokenResourceError("no request head")
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


async def _answer(stream: trio.SocketStream, status: str, text: str) -> None:
    body = text.encode()
    await stream.send_all(
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n".encode()
        + body
    )


async def _proxy(stream: trio.SocketStream, allowed: Sequence[str]) -> None:
    head, rest = await _read_head(stream)
    line, _, headers = head.partition(b"\r\n")
    try:
        method, target, version = line.decode("latin-1").split(" ")
        if method == "CONNECT":
            host, _, port_text = target.rpartition(":")
            port = int(port_text)
            forward = rest
        else:
            url = urlsplit(target)
            if url.scheme != "http" or not url.hostname:
                raise ValueError(target)
            host, port = url.hostname, url.port or 80
            origin = (url.path or "/") + (f"?{url.query}" if url.query else "")
            forward = f"{method} {origin} {version}\r\n".encode("latin-1") + headers + rest
    except ValueError:
        await _answer(stream, "400 Bad Request", "rcd sandbox: not a proxy request\n")
        return
    if not host_allowed(host, allowed):
        log.info("sandbox_host_refused", host=host, port=port)
        await _answer(stream, "403 Forbidden", f"rcd sandbox: {host} is not an allowed host\n")
        return
    try:
        address = await _resolve(host, port, allowed)
    except (OSError, UnicodeError, ValueError) as exc:
        await _answer(stream, "502 Bad Gateway", f"rcd sandbox: {host}:{port}: {exc}\n")
        return
    if address is None:
        log.info("sandbox_address_refused", host=host, port=port)
        await _answer(
            stream,
            "403 Forbidden",
            f"rcd sandbox: {host} leads to this machine or a private network; allow that"
            " address itself to reach it\n",
        )
        return
    try:
        upstream = await trio.open_tcp_stream(address, port)
    except OSError as exc:
        await _answer(stream, "502 Bad Gateway", f"rcd sandbox: {host}:{port}: {exc}\n")
        return
    async with upstream:
        if method == "CONNECT":
            await stream.send_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        if forward:
            await upstream.send_all(forward)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pipe, stream, upstream, nursery.cancel_scope)
            nursery.start_soon(_pipe, upstream, stream, nursery.cancel_scope)


async def _resolve(host: str, port: int, allowed: Sequence[str]) -> str | None:
    """The address to connect to for ``host``: None when it leads to loopback, link-local
    (cloud metadata) or a private network, unless that address itself is allowed (a name
    that resolves there is not: it could be anyone's)."""
    literal = host.strip("[]")
    if not _HOST_SYNTAX.fullmatch(literal) and not _is_ip(literal):
        raise ValueError("not a host name or address")
    infos = await trio.socket.getaddrinfo(literal, port, type=socket.SOCK_STREAM)
    address = str(infos[0][4][0])
    inside = ipaddress.ip_address(address)
    if inside.is_loopback or inside.is_link_local or inside.is_private or inside.is_unspecified:
        return address if _is_ip(literal) and literal in allowed else None
    return address


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


async def _pipe(
    source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
) -> None:
    try:
        while chunk := await source.receive_some(65536):
            await sink.send_all(chunk)
        await sink.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        scope.cancel()
