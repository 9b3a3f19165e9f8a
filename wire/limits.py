"""Numbers of the daemon ↔ relay protocol that both sides must agree on (see
:mod:`wire.protocol`): the relay enforces them, the daemon stays within them. The keep-alive
numbers hold for the client API's event streams too (``rcd attach`` reads them).
"""

from __future__ import annotations

__all__ = [
    "KEEPALIVE_INTERVAL",
    "MAX_EVENTS_PER_BATCH",
    "MAX_FRAMES",
    "MISSED_KEEPALIVES",
    "STREAM_READ_TIMEOUT",
]

#: Events in one batch at most: one session's ``EventBatch``, or all the sessions of one
#: ``UplinkRequest`` (one frame of a framed uplink) together.
MAX_EVENTS_PER_BATCH = 1000
#: Frames (batches) in one framed uplink request at most.
MAX_FRAMES = 1000
#: Seconds an idle Server-Sent Events stream goes at most without a ``: keep-alive`` comment
#: (the relay's default; a relay may be configured to send them more often).
KEEPALIVE_INTERVAL = 15.0
#: Keep-alives a reader may miss before it takes the stream for dead (a half-open
#: connection after sleep or a NAT drop, which TCP has not noticed).
MISSED_KEEPALIVES = 3
#: Seconds without a byte after which a reader gives up on a stream.
STREAM_READ_TIMEOUT = KEEPALIVE_INTERVAL * MISSED_KEEPALIVES
