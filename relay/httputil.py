"""Small HTTP helpers: capped body reading, strict decoding, parameters, JSON errors (the
one place a refusal of :mod:`relay.errors` becomes an HTTP status)."""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any, TypeVar

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse

from wire import MAX_MESSAGE_BYTES, DecodeError, decode, strict_json

from .config import proxy_network
from .errors import (
    ApiError,
    BadRequest,
    BodyTimeout,
    BodyTooLarge,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthenticated,
)

__all__ = [
    "CLIENT_BODY_LIMIT",
    "UPLINK_BODY_LIMIT",
    "client_address",
    "trusted_networks",
    "decode_body",
    "decode_bytes",
    "error_response",
    "http_status",
    "int_param",
    "json_response",
    "last_event_id",
    "read_body",
    "read_line_groups",
    "wants_event_stream",
]

T = TypeVar("T")

#: A client body: one message of up to 1 MiB plus room for the JSON around it.
CLIENT_BODY_LIMIT = MAX_MESSAGE_BYTES + 64 * 1024
#: An uplink batch (up to ``wire.MAX_EVENTS_PER_BATCH`` events); the daemon splits bigger batches.
UPLINK_BODY_LIMIT = 32 * 1024 * 1024


def json_response(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def trusted_networks(proxies: tuple[str, ...]) -> tuple[IpNetwork, ...]:
    """``--trusted-proxy`` values as networks (see :func:`relay.config.proxy_network`)."""
    return tuple(proxy_network(proxy) for proxy in proxies)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("["):  # [2001:db8::1]:443
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:  # 192.0.2.1:443
        text = text.split(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_address(request: Request, trusted_proxies: tuple[str, ...] = ()) -> str:
    """The caller's address, for rate limits: the peer's; or, when the peer is one of
    ``trusted_proxies``, the client that ``X-Forwarded-For`` names (walked from the right,
    past every trusted proxy, so only what a trusted proxy wrote is believed). Without
    trusted proxies the header is ignored: anyone can send it."""
    peer = request.client.host if request.client else "unknown"
    if not trusted_proxies:
        return peer
    networks = trusted_networks(trusted_proxies)

    def trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return ip is not None and any(ip.version == n.version and ip in n for n in networks)

    address = _ip(peer)
    if not trusted(address):
        return peer
    hops = ",".join(request.headers.getlist("x-forwarded-for")).split(",")
    for hop in reversed([h for h in hops if h.strip()]):
        ip = _ip(hop)
        if ip is None:  # a trusted proxy passed on garbage: stop at the last one we know
            break
        address = ip
        if not trusted(ip):
            break
    return str(address)


#: The HTTP status of each kind of refusal; a subclass answers with its nearest listed base.
_STATUS: dict[type[ApiError], int] = {
    BadRequest: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    BodyTimeout: 408,
    Conflict: 409,
    BodyTooLarge: 413,
    RateLimited: 429,
    ApiError: 400,
}


def http_status(error: ApiError) -> int:
    """The status a refusal is answered with (e.g. 409 for :class:`relay.errors.AtCapacity`,
    a :class:`relay.errors.Conflict`)."""
    return next(_STATUS[kind] for kind in type(error).__mro__ if kind in _STATUS)


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The one error shape: ``{"error": {"code": ..., "message": ...}}``."""
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


async def read_body(request: Request, limit: int, deadline: float) -> bytes:
    """The whole request body; :class:`BodyTooLarge` (413) as soon as it exceeds ``limit``,
    :class:`BodyTimeout` (408) if it has not all arrived ``deadline`` seconds after this
    call (the connection is then closed: the rest of the body is never read).

    Call it only once the caller is authenticated: until then a body is somebody else's
    memory."""
    too_large = BodyTooLarge(f"the request body is larger than {limit} bytes")
    declared = request.headers.get("content-length")
    expected = int(declared) if declared is not None and declared.isdigit() else None
    if expected is not None and expected > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(deadline) as timer:
        async with aclosing(request.stream()) as stream:
            async for chunk in stream:
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
                if size == expected:
                    # All of it: the request's (empty) end, one more pass of the event
                    # loop, is not waited for; the server drops it as the answer goes.
                    break
    if timer.cancelled_caught:
        raise BodyTimeout(deadline)
    return b"".join(chunks)


async def read_line_groups(
    request: Request, limit: int, deadline: float
) -> AsyncGenerator[list[bytes], None]:
    """The body's lines (``\\n``-separated, blank ones skipped) as soon as they have
    arrived, those completed by one read of the body together in one list (never empty);
    :class:`BodyTooLarge` (413) for a line longer than ``limit``, :class:`BodyTimeout`
    (408) if the body has not ended ``deadline`` seconds after the first lines were asked
    for (time spent by the consumer between groups counts too)."""

    def check(size: int) -> None:
        if size > limit:
            raise BodyTooLarge(f"a line of the request body is over {limit} bytes")

    buffer = bytearray()
    ends_at = trio.current_time() + deadline

    async def receive(stream: AsyncGenerator[bytes, None]) -> bytes | None:
        with trio.move_on_at(ends_at):
            return await anext(stream, None)
        raise BodyTimeout(deadline)

    async with aclosing(request.stream()) as stream:
        while (chunk := await receive(stream)) is not None:
            searched = len(buffer)
            buffer += chunk
            group: list[bytes] = []
            try:
                while (end := buffer.find(b"\n", searched)) != -1:
                    line = bytes(buffer[:end])
                    del buffer[: end + 1]  # cheap at the front of a bytearray
                    searched = 0
                    check(len(line))
                    if line.strip():
                        group.append(line)
                check(len(buffer))
            except BodyTooLarge:
                if group:  # the whole lines before the one too long are the body's too
                    yield group
                raise
            if group:
                yield group
    if buffer.strip():
        yield [bytes(buffer)]


async def decode_body(request: Request, cl: type[T], limit: int, deadline: float) -> T:
    """Read the body (capped, under a deadline: see :func:`read_body`) and decode it as
    ``cl`` (see :func:`decode_bytes`)."""
    return decode_bytes(await read_body(request, limit, deadline), cl)


#: How a lone surrogate comes in a UTF-8 body: a ``\\u`` escape of one, or its (invalid)
#: UTF-8 bytes, which Python's JSON parser lets through. Only a body holding either (or in
#: another encoding) is encoded again to look; a match that is none (``"\\\\ud800"``)
#: only costs that.
_MAY_HOLD_A_SURROGATE = re.compile(rb"\\u[dD][89abcdefABCDEF]|\xed[\xa0-\xbf]")


def decode_bytes(raw: bytes, cl: type[T]) -> T:
    """Decode JSON ``raw`` as ``cl``; a mismatch is 400 ``invalid_body``.

    Strict JSON only: no NaN/Infinity, no integer outside signed 64 bits, no lone
    surrogate (``"\\ud800"``: it cannot be stored as UTF-8), no absurd nesting.
    """
    try:
        data = strict_json.loads(raw)
        if json.detect_encoding(raw) != "utf-8" or _MAY_HOLD_A_SURROGATE.search(raw):
            json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise BadRequest("invalid_body", "$: a string holds a lone UTF-16 surrogate") from None
    except (ValueError, RecursionError) as exc:  # incl. JSONDecodeError, UnicodeDecodeError
        raise BadRequest("invalid_body", f"$: not valid JSON ({exc})") from None
    try:
        return decode(cl, data)
    except DecodeError as exc:
        raise BadRequest("invalid_body", "; ".join(exc.problems)) from None


#: The largest offset or count a parameter takes: SQLite's (and most clients') signed 64 bits.
MAX_PARAM = 2**63 - 1


def _parse_int(name: str, raw: str, minimum: int, maximum: int | None) -> int:
    """``raw`` as an integer in ``minimum..maximum`` (default: :data:`MAX_PARAM`); else 400
    ``invalid_parameter`` naming ``name``. ASCII digits only (``str.isdigit`` also takes
    ``²`` or ``٣``, which ``int()`` then refuses or reads differently)."""
    top = MAX_PARAM if maximum is None else min(maximum, MAX_PARAM)
    value = raw.strip()
    # The length check first also keeps a huge number away from int()'s digit limit.
    ok = value.isascii() and value.isdigit() and len(value) <= 19 and minimum <= int(value) <= top
    if not ok:
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise BadRequest(
            "invalid_parameter", f"{name} must be an integer {minimum}..{top}, got {shown!r}"
        )
    return int(value)


def int_param(
    request: Request, name: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    """An integer query parameter; 400 ``invalid_parameter`` if malformed or out of range."""
    raw = request.query_params.get(name)
    return default if raw is None else _parse_int(name, raw, minimum, maximum)


def last_event_id(request: Request) -> int | None:
    """The SSE ``Last-Event-ID`` header as a non-negative integer, or None when absent."""
    raw = request.headers.get("last-event-id")
    if raw is None or not raw.strip():
        return None
    return _parse_int("Last-Event-ID", raw, 0, None)


def wants_event_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")
