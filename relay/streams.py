"""The two live streams: an environment's downlink and a session's event log.

Both follow the :mod:`relay.fanout` pattern (watch, read, send, wait) so a write that lands
between a read and the wait is never missed, and both send a keep-alive comment whenever
they have been idle for ``keepalive_interval`` seconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

import structlog
import trio

from wire import Shown

from .fanout import (
    DownlinkTail,
    Hub,
    directive_message,
    environment_key,
    event_message,
    partial_message,
    session_key,
)
from .ids import new_id
from .sse import EventStream, EventStreamResponse
from .storage import Storage

__all__ = ["CREDENTIAL_CHECK_INTERVAL", "downlink_response", "session_events_response"]

log = structlog.get_logger("relay")

#: Rows read per storage call while catching up.
_BATCH = 500
#: A stream's cleanup (going offline) gets this long, even when cancelled.
_CLEANUP_TIMEOUT = 5.0
#: How often a client's live stream checks that its credential still stands, so a revoked
#: device token or sign-in loses its streams within about a second, also when another
#: process (``rcd relay sign-ins revoke``) revoked it. One indexed read per stream.
CREDENTIAL_CHECK_INTERVAL = 1.0


async def _downlink_idle(
    changed: trio.Event,
    stream: EventStream,
    keepalive_interval: float,
    tail: DownlinkTail | None,
) -> Literal["changed", "answers", "keep-alive"]:
    """Wait for ``changed``; meanwhile send the uplink answers waiting in ``tail`` (the
    current link's) when they fall due, else a keep-alive once idle for too long."""
    keepalive_at = trio.current_time() + keepalive_interval
    with trio.CancelScope(deadline=keepalive_at) as sleeper:
        if tail is not None:
            sleeper.deadline = min(keepalive_at, tail.acks_due)
            tail.sleeper = sleeper
        try:
            await changed.wait()
        finally:
            if tail is not None and tail.sleeper is sleeper:
                tail.sleeper = None
    if not sleeper.cancelled_caught:
        return "changed"
    if tail is not None and tail.acks_due <= trio.current_time():
        await stream.write(tail.take_acks())
        return "answers"
    await stream.keepalive()
    return "keep-alive"


def downlink_response(
    storage: Storage,
    hub: Hub,
    environment_id: str,
    after: int,
    keepalive_interval: float,
    still_allowed: Callable[[], Awaitable[bool]],
) -> EventStreamResponse:
    """The environment's directives after dseq ``after``, then live ones.

    ``still_allowed`` is asked at every keep-alive; the stream ends when it says no (the
    link token expired or the credential was revoked).

    While the stream is open the environment is online. Opening it replaces any older
    downlink of the same environment, which then ends promptly; when the client goes away
    (or the relay stops) the environment goes offline, unless a newer downlink has taken
    over.
    """
    key = environment_key(environment_id)

    async def produce(stream: EventStream) -> None:
        link_id = new_id("link")
        # Held while the stream is open: inputs posted here are handed to it directly.
        tail = hub.downlink_tail(environment_id)
        await storage.open_downlink(environment_id, link_id)
        tail.link_id = link_id
        # Wake the link this one replaced: it re-reads, sees it is no longer current and
        # ends now rather than at its next keep-alive.
        hub.notify(key)
        log.info("downlink opened", environment_id=environment_id, after=after)
        try:
            # The environment is online before the daemon sees 200.
            await stream.start()
            last = after
            read_storage = True
            while True:
                changed = hub.watch(key)
                current = tail.link_id == link_id
                newest = tail.after(last) if current else None
                if newest is not None and newest[0]:
                    chunk, last = newest
                    # Uplink answers waiting go in the same write.
                    await stream.write(tail.take_acks() + chunk)
                    tail.mark_sent(last)
                    continue
                # Nothing new in the tail: storage decides (it also knows whether this
                # link was replaced, or its environment said goodbye).
                if read_storage:
                    read = await storage.read_downlink(environment_id, link_id, last, _BATCH)
                    if not read.current:
                        log.info("downlink replaced", environment_id=environment_id)
                        return
                    if read.directives:
                        await stream.write(
                            (tail.take_acks() if current else b"")
                            + b"".join(
                                directive_message(item.dseq, item.directive)
                                for item in read.directives
                            )
                        )
                        last = read.directives[-1].dseq
                        tail.mark_sent(last)
                        continue
                woken = await _downlink_idle(
                    changed, stream, keepalive_interval, tail if current else None
                )
                if woken == "keep-alive" and not await still_allowed():
                    log.info("downlink credential ended", environment_id=environment_id)
                    return
                # After a keep-alive or uplink answers, nothing to read unless a write
                # came meanwhile.
                read_storage = woken == "changed" or changed.is_set()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(_CLEANUP_TIMEOUT):
                if await storage.close_downlink(environment_id, link_id):
                    log.info("downlink closed; environment offline", environment_id=environment_id)
                    hub.went_offline(environment_id)

    return EventStreamResponse(produce, until=hub.stopping)


def session_events_response(
    storage: Storage,
    hub: Hub,
    session_id: str,
    after: int,
    keepalive_interval: float,
    still_allowed: Callable[[], Awaitable[bool]],
    *,
    partials: bool = False,
) -> EventStreamResponse:
    """A session's events after seq ``after``, then live ones, until the client goes away
    (or the relay stops). With ``partials``, whenever it has caught up the reply being
    written follows (:data:`wire.PARTIAL_EVENT`, no ``id:``): the text so far, then what
    is added.

    ``still_allowed`` is asked every :data:`CREDENTIAL_CHECK_INTERVAL` while the stream
    is idle (and at least at every keep-alive): a stream whose credential was revoked (or
    whose sign-in expired) ends within about that long.
    """
    key = session_key(session_id)

    async def produce(stream: EventStream) -> None:
        await stream.start()
        # Held while the stream is open: the session's writers fill it (see relay.fanout).
        tail = hub.tail(session_id)
        last = after
        # What this stream sent of the reply being written (see wire.partial).
        sent: Shown | None = None
        while True:
            changed = hub.watch(key)
            newest = tail.after(last)
            if newest is None:
                events = await storage.read_events(session_id, last, _BATCH)
                if events:
                    await stream.write(b"".join(event_message(e) for e in events))
                    last = events[-1].seq
                    continue
            elif newest[0]:
                chunk, last = newest
                await stream.write(chunk)
                continue
            # Caught up: the reply being written, if it grew (a later event ends it).
            shown = hub.partial(session_id) if partials else None
            if shown is not None and shown.after_seq >= last and shown != sent:
                await stream.write(partial_message(shown, sent))
                sent = shown
            if not await _idle_checking(changed, stream, keepalive_interval, still_allowed):
                return

    return EventStreamResponse(produce, until=hub.stopping)


async def _idle_checking(
    changed: trio.Event,
    stream: EventStream,
    keepalive_interval: float,
    still_allowed: Callable[[], Awaitable[bool]],
) -> bool:
    """Wait for ``changed`` (True), sending a keep-alive whenever idle for
    ``keepalive_interval``; False as soon as ``still_allowed`` says no (asked every
    :data:`CREDENTIAL_CHECK_INTERVAL` meanwhile)."""
    keepalive_at = trio.current_time() + keepalive_interval
    while True:
        now = trio.current_time()
        with trio.move_on_after(min(CREDENTIAL_CHECK_INTERVAL, max(0.0, keepalive_at - now))):
            await changed.wait()
            return True
        if not await still_allowed():
            return False
        if trio.current_time() >= keepalive_at:
            await stream.keepalive()
            keepalive_at = trio.current_time() + keepalive_interval
