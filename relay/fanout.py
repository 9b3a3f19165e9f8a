"""In-process wake-up hints between writers and streaming readers.

A hint carries no data: a woken reader always re-reads storage. That keeps the contract
small enough for Redis pub/sub to replace it when several relay processes share a backend.

The reader's pattern, which cannot miss a wake-up::

    while True:
        changed = hub.watch(key)      # 1. take the hint first,
        items = await storage.read()  # 2. then read,
        ...
        await changed.wait()          # 3. sleep only if the read found nothing new.

A :meth:`Hub.notify` between 1 and 3 sets ``changed``, so step 3 returns at once.

Live streams skip step 2 where they can: a session somebody follows has a :class:`Tail`,
its newest events already encoded as SSE messages, which the writer fills
(:meth:`Hub.publish_events`) right after the append commits and before it notifies. Every
stream following the session then sends the same bytes, as one chunk per batch, without a
read or an encoding of its own. An open downlink has one too (:class:`DownlinkTail`,
filled by :meth:`Hub.publish_directive`), so a client's input reaches the daemon without a
read; it also carries the answers to uplink frames the daemon asked to have answered there
(:meth:`Hub.publish_uplink_ack`). A session's tail assumes every append of its session
goes through this process (true of the SQLite relay); a backend shared by several
processes must not use the tails.

The hub also keeps each session's reply being written (:meth:`Hub.publish_partial`,
:mod:`wire.partial`): never stored, it lives here until the session's next event, for its
streams to send as it grows and to a stream opened mid-message. Several relay processes
would publish it to each other like the wake-up hints.
"""

from __future__ import annotations

import collections
import itertools
import weakref
from collections.abc import Callable, Iterable, Sequence

import attrs
import structlog
import trio

from wire import (
    PARTIAL_EVENT,
    UPLINK_ACK_EVENT,
    AssistantPartial,
    Directive,
    Event,
    Shown,
    UplinkFrameAck,
    apply_partial,
    encode_json,
)

from .sse import encode_sse

__all__ = [
    "DownlinkTail",
    "Hub",
    "HubStatistics",
    "Tail",
    "directive_message",
    "environment_key",
    "event_message",
    "partial_message",
    "session_key",
    "settings_key",
]

log = structlog.get_logger("relay")

#: Items a tail keeps; a stream further behind reads storage.
TAIL_ITEMS = 256
#: Uplink answers a downlink keeps while its connection is slow to take them; older ones
#: are dropped (the daemon gets every answer again when the uplink request ends).
ACKS_KEPT = 1000
#: Sessions whose reply being written ended that the hub still remembers (to refuse a
#: piece arriving late); past this many they are forgotten.
ENDED_PARTIALS_KEPT = 4096
#: A reply being written that has not grown for this long (seconds) is shown no more: its
#: daemon went away mid-message (a crash, a goodbye), and no event will end it.
PARTIAL_IDLE = 60.0
#: How long an uplink answer may wait for company on the downlink: the daemon needs them
#: only to free what it buffers (its next batches ride the open request without waiting),
#: so they go with the next directive, or together once this has passed since the first.
ACK_DELAY = 0.2
#: ... or at once when this many wait.
ACKS_AT_ONCE = 32


def event_message(event: Event) -> bytes:
    """A session event as its SSE message (``id:`` is its seq)."""
    return encode_sse(id=event.seq, event=event.kind, data=encode_json(event))


def directive_message(dseq: int, directive: Directive) -> bytes:
    """A directive as its downlink SSE message (``id:`` is its dseq)."""
    return encode_sse(id=dseq, event=directive.type, data=encode_json(directive, Directive))


def partial_message(shown: Shown, sent: Shown | None) -> bytes:
    """A stream's SSE message (no ``id:``) bringing its reader from ``sent`` (what it sent
    of the reply being written, or None) to ``shown``: the new text only, when ``shown``
    continues ``sent``."""
    offset = 0
    if (
        sent is not None
        and sent.after_seq == shown.after_seq
        and sent.block == shown.block
        and shown.text.startswith(sent.text)
    ):
        offset = len(sent.text)
    partial = AssistantPartial(
        after_seq=shown.after_seq,
        block=shown.block,
        kind=shown.kind,
        name=shown.name,
        offset=offset,
        text=shown.text[offset:],
    )
    return encode_sse(id=None, event=PARTIAL_EVENT, data=encode_json(partial))


def environment_key(environment_id: str) -> str:
    """Notified when an environment's downlink changes: a new directive, or a new link."""
    return f"environment:{environment_id}"


def settings_key(environment_id: str) -> str:
    """Notified when an environment's daemon reported its settings."""
    return f"settings:{environment_id}"


def session_key(session_id: str) -> str:
    """Notified when a session's log grows."""
    return f"session:{session_id}"


@attrs.frozen(kw_only=True)
class HubStatistics:
    #: Keys somebody is currently watching.
    watched_keys: int
    #: Sessions whose newest events are kept encoded for their streams.
    tails: int = 0
    #: Environments whose open downlink keeps its newest directives encoded.
    downlink_tails: int = 0


@attrs.define(eq=False)
class Tail:
    """The newest items of one stream (a session's events, an environment's directives),
    each already encoded as its SSE message, for every reader that follows the stream.

    It knows nothing until the first item written after it was created; from then on it
    holds a contiguous run ``first..last`` of sequence numbers (the newest ``limit`` of
    them), and ``last`` is the newest item stored.
    """

    limit: int = TAIL_ITEMS
    _chunks: collections.deque[bytes] = attrs.field(factory=collections.deque, init=False)
    _first: int = attrs.field(default=0, init=False)
    _last: int = attrs.field(default=0, init=False)

    def extend(self, items: Iterable[tuple[int, bytes]]) -> None:
        """Add newly stored items (in sequence order); a gap restarts the tail after it."""
        for seq, message in items:
            if self._last and seq <= self._last:
                continue
            if not self._last or seq != self._last + 1:
                self._chunks.clear()
                self._first = seq
            self._chunks.append(message)
            self._last = seq
            if len(self._chunks) > self.limit:
                self._chunks.popleft()
                self._first += 1

    def after(self, seq: int) -> tuple[bytes, int] | None:
        """The messages after ``seq`` as one chunk, and the seq they reach (``b""`` and
        ``seq`` when nothing is newer); None when the tail does not reach back to ``seq``
        (or knows nothing yet): read storage instead."""
        if not self._last or seq < self._first - 1:
            return None
        if seq >= self._last:
            return b"", seq
        return b"".join(itertools.islice(self._chunks, seq - self._first + 1, None)), self._last


@attrs.define(eq=False)
class DownlinkTail(Tail):
    """An environment's newest directives, for the downlink ``link_id`` (the newest one
    this process opened); any other link reads storage, which tells it it was replaced."""

    link_id: str | None = None
    #: The newest dseq a downlink of this environment has handed to its connection.
    sent: int = attrs.field(default=0, init=False)
    _sent_changed: trio.Event = attrs.field(factory=trio.Event, init=False)
    #: Answers to uplink frames (SSE messages) waiting for the downlink to send them.
    _acks: collections.deque[bytes] = attrs.field(
        factory=lambda: collections.deque(maxlen=ACKS_KEPT), init=False
    )
    #: ``trio.current_time()`` by which the waiting answers go (inf: none waits).
    acks_due: float = attrs.field(default=float("inf"), init=False)
    #: The idle wait of the current link's downlink, cut short when answers fall due.
    sleeper: trio.CancelScope | None = attrs.field(default=None, init=False)

    def add_ack(self, message: bytes, *, at_once: bool = False) -> None:
        """An uplink answer to send by :data:`ACK_DELAY` from the first one waiting (or
        ``at_once``, with those waiting)."""
        self._acks.append(message)
        now = trio.current_time()
        due = now if at_once or len(self._acks) >= ACKS_AT_ONCE else now + ACK_DELAY
        self.acks_due = min(self.acks_due, due)
        if self.sleeper is not None:
            self.sleeper.deadline = min(self.sleeper.deadline, self.acks_due)

    def take_acks(self) -> bytes:
        """The uplink answers waiting, as one chunk (``b""``: none), now taken."""
        self.acks_due = float("inf")
        if not self._acks:
            return b""
        chunk = b"".join(self._acks)
        self._acks.clear()
        return chunk

    def mark_sent(self, dseq: int) -> None:
        """A downlink wrote everything through ``dseq`` to its connection."""
        if dseq > self.sent:
            self.sent = dseq
            self._sent_changed.set()
            self._sent_changed = trio.Event()

    async def wait_sent(self, dseq: int) -> None:
        """Until a downlink has written ``dseq`` to its connection."""
        while self.sent < dseq:
            await self._sent_changed.wait()


@attrs.define(eq=False)
class Hub:
    """Keyed wake-up hints: :meth:`watch` returns an event that the next :meth:`notify` of
    the same key sets. Every notify swaps in a fresh event for later watchers."""

    #: Set when this relay stops serving: its live streams end then (:mod:`relay.streams`).
    stopping: trio.Event = attrs.field(factory=trio.Event, init=False)

    # Weak values: a key nobody watches any more costs nothing.
    _events: weakref.WeakValueDictionary[str, trio.Event] = attrs.field(
        factory=weakref.WeakValueDictionary, init=False
    )
    _tails: weakref.WeakValueDictionary[str, Tail] = attrs.field(
        factory=weakref.WeakValueDictionary, init=False
    )
    _downlinks: weakref.WeakValueDictionary[str, DownlinkTail] = attrs.field(
        factory=weakref.WeakValueDictionary, init=False
    )
    #: Session → its reply being written (None: ended), the newest seq published, and
    #: ``trio.current_time()`` when the reply last grew.
    _partials: dict[str, tuple[Shown | None, int, float]] = attrs.field(factory=dict, init=False)
    #: Called with every batch :meth:`publish_events` hands on (the notifier); each must
    #: return at once.
    listeners: list[Callable[[str, Sequence[Event]], None]] = attrs.field(factory=list, init=False)
    #: Called with an environment whose link just closed (the notifier); must return at once.
    offline_listeners: list[Callable[[str], None]] = attrs.field(factory=list, init=False)

    def watch(self, key: str) -> trio.Event:
        """The event the next ``notify(key)`` will set. Take it *before* reading storage."""
        event = self._events.get(key)
        if event is None:
            event = trio.Event()
            self._events[key] = event
        return event

    def notify(self, key: str) -> None:
        """Wake everyone watching ``key``. Never blocks; safe to call from any task."""
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    def tail(self, session_id: str) -> Tail:
        """The session's tail; it lives while somebody holds it (a stream following it)."""
        tail = self._tails.get(session_id)
        if tail is None:
            tail = self._tails[session_id] = Tail()
        return tail

    def publish_events(self, session_id: str, events: Sequence[Event]) -> None:
        """Events a write just stored (none older, in seq order): into the session's tail
        if somebody follows it, then wake its streams."""
        tail = self._tails.get(session_id)
        if tail is not None and events:
            tail.extend((e.seq, event_message(e)) for e in events)
        writing = self._partials.get(session_id)
        if writing is not None and events:
            shown, newest, grew = writing
            newest = max(newest, events[-1].seq)
            self._partials[session_id] = (
                shown if shown is not None and shown.after_seq >= newest else None,
                newest,
                grew,
            )
        self.notify(session_key(session_id))
        if events:
            for listener in self.listeners:
                try:
                    listener(session_id, events)
                except Exception:  # stored and streamed already: a listener's bug stays its own
                    log.exception("listener_failed", session_id=session_id)

    def went_offline(self, environment_id: str) -> None:
        """The environment's link closed and nothing replaced it (not when the relay itself
        is stopping: every link closes then)."""
        if self.stopping.is_set():
            return
        for listener in self.offline_listeners:
            try:
                listener(environment_id)
            except Exception:
                log.exception("listener_failed", environment_id=environment_id)

    def publish_partial(self, session_id: str, partial: AssistantPartial) -> None:
        """A piece of the session's reply being written: joined to what the hub holds
        (:func:`wire.apply_partial`), then its streams are woken. A piece older than the
        session's newest event changes nothing."""
        now = trio.current_time()
        shown, newest, _ = self._partials.get(session_id, (None, 0, now))
        joined = apply_partial(shown, partial, newest)
        if joined is None or joined == shown:
            return
        if session_id not in self._partials and len(self._partials) >= ENDED_PARTIALS_KEPT:
            for gone in [
                s
                for s, (held, _, grew) in self._partials.items()
                if held is None or now - grew > PARTIAL_IDLE
            ]:
                del self._partials[gone]
        self._partials[session_id] = (joined, newest, now)
        self.notify(session_key(session_id))

    def partial(self, session_id: str) -> Shown | None:
        """The session's reply being written, as far as it is known here (None: none, or
        it stopped growing :data:`PARTIAL_IDLE` ago)."""
        writing = self._partials.get(session_id)
        if writing is None or trio.current_time() - writing[2] > PARTIAL_IDLE:
            return None
        return writing[0]

    def downlink_tail(self, environment_id: str) -> DownlinkTail:
        """The environment's directive tail; it lives while a downlink holds it."""
        tail = self._downlinks.get(environment_id)
        if tail is None:
            tail = self._downlinks[environment_id] = DownlinkTail()
        return tail

    def publish_directive(
        self, environment_id: str, dseq: int, directive: Directive
    ) -> DownlinkTail | None:
        """A directive a write just queued: into the environment's tail if a downlink is
        open here (returned), then wake the downlink."""
        tail = self._downlinks.get(environment_id)
        if tail is not None:
            tail.extend([(dseq, directive_message(dseq, directive))])
        self.notify(environment_key(environment_id))
        return tail

    def publish_uplink_ack(self, environment_id: str, ack: UplinkFrameAck) -> bool:
        """The answer to an uplink frame, for the environment's open downlink to send with
        its next directive, or within :data:`ACK_DELAY`; a request's first frame is
        answered at once (that tells the daemon the request may stay open for more).
        False when no downlink of the environment is open here."""
        tail = self._downlinks.get(environment_id)
        if tail is None or tail.link_id is None:
            return False
        tail.add_ack(
            encode_sse(id=None, event=UPLINK_ACK_EVENT, data=encode_json(ack, UplinkFrameAck)),
            at_once=ack.frame == 0,
        )
        return True

    def statistics(self) -> HubStatistics:
        return HubStatistics(
            watched_keys=len(self._events),
            tails=len(self._tails),
            downlink_tails=len(self._downlinks),
        )
