"""The relay link's reconnect loop, in virtual time (all I/O is a fake in memory)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import attrs
import pytest
import trio
import trio.testing

import wire
from daemon.errors import RelayRejected, RelayUnreachable
from daemon.link import OutageTimeout, RelayLink


@attrs.define
class FakeClient:
    """Fails every downlink until ``heal_at`` (virtual seconds); then serves ``script``."""

    heal_at: float = float("inf")
    script: list[tuple[int, wire.Directive]] = attrs.Factory(list)
    attempts: list[tuple[float, int]] = attrs.Factory(list)
    acks: list[int] = attrs.Factory(list)
    reject: int | None = None

    async def downlink(
        self, environment_id: str, after: int, on_open: Callable[[], None] = lambda: None
    ) -> AsyncIterator[tuple[int, wire.Directive]]:
        self.attempts.append((trio.current_time(), after))
        if self.reject:
            raise RelayRejected(self.reject, "unauthenticated", "revoked")
        if trio.current_time() < self.heal_at:
            raise RelayUnreachable("http://relay", "connection refused")
        on_open()
        for dseq, directive in self.script:
            if dseq > after:
                yield dseq, directive
        await trio.sleep_forever()

    directives_acked: int = 0
    on_acked: Callable[[int], None] = lambda through: None

    def carry_acks(self, applied: Callable[[], int], on_acked: Callable[[int], None]) -> None:
        self.on_acked = on_acked

    async def ack(self, environment_id: str, through: int) -> None:
        self.acks.append(through)
        self.directives_acked = through
        self.on_acked(through)

    def link_renew_at(self) -> float:
        return float("inf")


def make_link(client: FakeClient, outage: float, applied: list[int]) -> RelayLink:
    def apply(dseq: int, directive: wire.Directive) -> None:
        applied.append(dseq)

    return RelayLink(
        client=client,  # type: ignore[arg-type]
        environment_id="env",
        apply=apply,
        applied_through=lambda: max(applied, default=0),
        outage_timeout=outage,
    )


async def test_outage_timeout_ends_the_link(autojump_clock: trio.testing.MockClock) -> None:
    client = FakeClient()
    link = make_link(client, 600, [])
    start = trio.current_time()
    with pytest.raises(OutageTimeout, match="unreachable for 6"):
        await link.run()
    waited = trio.current_time() - start
    assert 600 <= waited < 640  # gives up soon after the timeout, not before
    gaps = [b[0] - a[0] for a, b in zip(client.attempts, client.attempts[1:], strict=False)]
    assert max(gaps) <= 30  # backoff is capped
    assert len(client.attempts) >= 20  # but it kept trying all along


async def test_zero_means_never_give_up(autojump_clock: trio.testing.MockClock) -> None:
    client = FakeClient()
    link = make_link(client, 0, [])
    with trio.move_on_after(24 * 3600):
        await link.run()
    assert trio.current_time() >= 24 * 3600
    assert link.connected is False


async def test_reconnects_after_an_outage_and_resumes_after_the_last_applied(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directives: list[tuple[int, wire.Directive]] = [
        (n, wire.Interrupt(session_id="s")) for n in range(1, 6)
    ]
    client = FakeClient(heal_at=120, script=directives)
    applied = [1, 2]  # applied before the outage began
    link = make_link(client, 600, applied)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        await link.wait_online()
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() >= 120
        assert link.connected
        await trio.sleep(link.ack_delay)  # acks follow a moment later, coalesced
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert applied == [1, 2, 3, 4, 5]  # nothing applied twice, nothing skipped
    assert all(after == 2 for _, after in client.attempts)
    assert client.acks == [5]


async def test_a_revoked_credential_is_final(autojump_clock: trio.testing.MockClock) -> None:
    client = FakeClient(reject=401)
    link = make_link(client, 600, [])
    with pytest.raises(RelayRejected):
        await link.run()
    assert len(client.attempts) == 1
