"""The downlink: the environment's directives, as Server-Sent Events from the relay."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

import httpx
import structlog
from httpx_sse import SSEError, aconnect_sse

import wire

from .calls import Calls, raise_for_error
from .tokens import Token, TokenAuth, Tokens

__all__ = ["directives"]

log = structlog.get_logger("daemon.relay")


async def directives(
    calls: Calls,
    tokens: Tokens,
    environment_id: str,
    after: int,
    on_open: Callable[[Token], None],
    on_keepalive: Callable[[], None] = lambda: None,
    on_uplink_answer: Callable[[wire.UplinkFrameAck], None] = lambda ack: None,
    on_close: Callable[[], None] = lambda: None,
) -> AsyncGenerator[tuple[int, wire.Directive], None]:
    """Yield ``(dseq, directive)`` from the environment's stream, after ``after``.

    Returns when the relay ends the stream (e.g. a newer link replaced this one);
    raises :class:`~daemon.errors.RelayUnreachable` when the connection fails or goes
    silent (no byte for :data:`wire.STREAM_READ_TIMEOUT`), :class:`~daemon.errors.RelayRejected`
    when the relay refuses it. ``on_open(token)`` is called once the relay has accepted the
    stream, with the link token it was opened with (the relay ends the stream when that
    expires). A keep-alive is never a directive (``on_keepalive()`` is called for each); a
    directive that does not decode is logged and skipped: it can never be applied. The
    answers to uplink frames that ride the stream go to ``on_uplink_answer``; ``on_close()``
    runs when a stream that had opened ends.
    """
    url = calls.url(f"/daemon/v1/environments/{environment_id}/downlink")
    timeout = httpx.Timeout(calls.timeout, read=wire.STREAM_READ_TIMEOUT)
    auth = TokenAuth(tokens, None)
    headers = {"Last-Event-ID": str(after)}
    try:
        async with aconnect_sse(
            calls.http, "GET", url, headers=headers, timeout=timeout, auth=auth
        ) as source:
            if source.response.status_code >= 400:
                await source.response.aread()
                raise_for_error(source.response)
            assert auth.used is not None
            on_open(auth.used)
            try:
                async with aclosing(source.aiter_sse()) as stream:
                    async for sse in stream:
                        if sse.event == wire.UPLINK_ACK_EVENT:
                            _uplink_answer(sse.data, on_uplink_answer)
                            continue
                        item = _directive(sse.id, sse.data, on_keepalive)
                        if item is not None:
                            yield item
            finally:
                on_close()
    except (httpx.TransportError, SSEError) as exc:
        raise calls.unreachable(exc) from exc


def _uplink_answer(data: str, on_answer: Callable[[wire.UplinkFrameAck], None]) -> None:
    try:
        ack: wire.UplinkFrameAck = wire.decode_json(wire.UplinkFrameAck, data)
    except wire.DecodeError as exc:
        log.error("bad_uplink_answer", problem=str(exc))
        return
    on_answer(ack)


def _directive(
    id: str, data: str, on_keepalive: Callable[[], None]
) -> tuple[int, wire.Directive] | None:
    if not data:
        # Not a message: a keep-alive comment, which httpx-sse hands over as an empty
        # event carrying the stream's last id (the SSE spec dispatches no event without
        # data).
        on_keepalive()
        return None
    try:
        dseq = int(id)
        directive: wire.Directive = wire.decode_json(wire.Directive, data)
    except (ValueError, wire.DecodeError) as exc:
        log.error("bad_directive", id=id, problem=str(exc))
        return None
    return dseq, directive
