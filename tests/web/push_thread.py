"""The fake push service (``testkit.fakes.push_service``, a trio server) for the browser
tests, which are synchronous: served from a thread of its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import trio

from testkit.fakes.push_service import Delivery, PushService, Subscription, open_push_service

__all__ = ["PushThread", "push_service_thread"]


class PushThread:
    """Calls into the push service from the test's thread."""

    def __init__(self) -> None:
        self.service: PushService | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self._stop: trio.Event | None = None

    async def serve(self) -> None:
        try:
            async with open_push_service() as service:
                self.service, self.token = service, trio.lowlevel.current_trio_token()
                self._stop = trio.Event()
                self.ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self.failed = exc
            self.ready.set()
            raise

    def _call(self, fn: Any, *args: Any) -> Any:
        return trio.from_thread.run_sync(fn, *args, trio_token=self.token)

    def subscribe(self, expected_key: str) -> Subscription:
        assert self.service is not None
        subscription: Subscription = self._call(self.service.subscribe, expected_key)
        return subscription

    def wait_for(self, subscription_id: str, count: int = 1, timeout: float = 60) -> list[Delivery]:
        assert self.service is not None
        service = self.service

        async def wait() -> list[Delivery]:
            with trio.fail_after(timeout):
                return await service.wait_for(subscription_id, count)

        found: list[Delivery] = trio.from_thread.run(wait, trio_token=self.token)
        return found

    def stop(self) -> None:
        if self._stop is not None:
            self._call(self._stop.set)


@contextmanager
def push_service_thread() -> Iterator[PushThread]:
    pushes = PushThread()
    thread = threading.Thread(target=partial(trio.run, pushes.serve), daemon=True)
    thread.start()
    pushes.ready.wait(30)
    if pushes.failed is not None:
        raise pushes.failed
    try:
        yield pushes
    finally:
        pushes.stop()
        thread.join(30)
