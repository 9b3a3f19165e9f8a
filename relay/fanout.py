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
"""

from __future__ import annotations

import weakref

import attrs
import trio

__all__ = ["Hub", "HubStatistics", "environment_key", "session_key"]


def environment_key(environment_id: str) -> str:
    """Notified when an environment's downlink changes: a new directive, or a new link."""
    return f"environment:{environment_id}"


def session_key(session_id: str) -> str:
    """Notified when a session's log grows."""
    return f"session:{session_id}"


@attrs.frozen(kw_only=True)
class HubStatistics:
    #: Keys somebody is currently watching.
    watched_keys: int


@attrs.define(eq=False)
class Hub:
    """Keyed wake-up hints: :meth:`watch` returns an event that the next :meth:`notify` of
    the same key sets. Every notify swaps in a fresh event for later watchers."""

    # Weak values: a key nobody watches any more costs nothing.
    _events: weakref.WeakValueDictionary[str, trio.Event] = attrs.field(
        factory=weakref.WeakValueDictionary, init=False
    )

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

    def statistics(self) -> HubStatistics:
        return HubStatistics(watched_keys=len(self._events))
