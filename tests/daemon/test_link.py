"""The relay link's reconnect loop, in virtual time (all I/O is a fake in memory)."""

from __future__ import annotations

import itertools
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
    """Fails every downlink until ``heal_at`` (virtual seconds), and from ``down_from``
    until ``heal_again_at``; otherwise serves ``script``. A downlink is due for renewal
    ``renew_after`` seconds after it opened."""

    heal_at: float = float("inf")
    script: list[tuple[int, wire.Directive]] = attrs.Factory(list)
    attempts: list[tuple[float, int]] = attrs.Factory(list)
    acks: list[int] = attrs.Factory(list)
    ack_times: list[float] = attrs.Factory(list)
    reject: int | None = None
    down_from: float = float("inf")
    heal_again_at: float = float("inf")
    renew_after: float = float("inf")
    #: Seconds between two directives of ``script`` (0: all at once).
    pace: float = 0.0
    #: Downlinks open right now, and when each opened.
    open_now: int = 0
    opened: list[float] = attrs.Factory(list)

    async def downlink(
        self, environment_id: str, after: int, on_open: Callable[[], None] = lambda: None
    ) -> AsyncIterator[tuple[int, wire.Directive]]:
        now = trio.current_time()
        self.attempts.append((now, after))
        if self.reject:
            raise RelayRejected(self.reject, "unauthenticated", "revoked")
        if now < self.heal_at or self.down_from <= now < self.heal_again_at:
            raise RelayUnreachable("http://relay", "connection refused")
        self.open_now += 1
        self.opened.append(now)
        try:
            on_open()
            for dseq, directive in self.script:
                if dseq > after:
                    if self.pace:
                        await trio.sleep(self.pace)  # clock: virtual time
                    yield dseq, directive
            await trio.sleep_forever()
        finally:
            self.open_now -= 1

    directives_acked: int = 0
    #: The ack an uplink request in flight carries (see RelayClient).
    directives_ack_riding: int = 0
    on_acked: Callable[[int], None] = lambda through: None

    def carry_acks(self, applied: Callable[[], int], on_acked: Callable[[int], None]) -> None:
        self.on_acked = on_acked

    async def ack(self, environment_id: str, through: int) -> None:
        self.acks.append(through)
        self.ack_times.append(trio.current_time())
        self.directives_acked = through
        self.on_acked(through)

    def link_renew_at(self) -> float:
        return self.opened[-1] + self.renew_after if self.opened else float("inf")


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
        # Acks follow a moment later, coalesced.
        await trio.sleep(link.ack_delay)  # clock: virtual time; the ack's delay passes
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


async def watch_connected(link: RelayLink, client: FakeClient, until: float) -> list[float]:
    """Each virtual second until ``until``: when the link was down or no downlink open."""
    down = []
    while trio.current_time() < until:
        await trio.sleep(1)  # clock: virtual time; one look a second
        if not link.connected or client.open_now < 1:
            down.append(trio.current_time())
    return down


async def test_a_renewal_opens_the_new_downlink_before_dropping_the_old(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = FakeClient(heal_at=0, renew_after=100)
    link = make_link(client, 600, [])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        await link.wait_online()
        down = await watch_connected(link, client, 350)
        nursery.cancel_scope.cancel()
    assert down == []
    assert len(client.opened) == 4  # at 0, 100, 200 and 300
    assert link.statistics().connects == 4


async def test_a_renewal_that_cannot_open_keeps_the_open_downlink_and_tries_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Renewal is due at 100, but the relay is unreachable from 100 to 130 (its token is
    # good beyond that): the open downlink carries on while the renewal is retried.
    client = FakeClient(heal_at=0, renew_after=100, down_from=100, heal_again_at=130)
    link = make_link(client, 600, [])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        await link.wait_online()
        down = await watch_connected(link, client, 180)
        nursery.cancel_scope.cancel()
    assert down == []
    retries = [t for t, _ in client.attempts if 100 <= t < 130]
    assert len(retries) >= 2
    assert len(client.opened) == 2 and 130 <= client.opened[1] < 160
    assert link.statistics().connects == 2


async def test_a_renewal_refused_for_good_ends_the_link(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client = FakeClient(heal_at=0, renew_after=100)
    link = make_link(client, 600, [])

    async def revoke_at_50() -> None:
        await trio.sleep(50)  # clock: virtual time
        client.reject = 401

    async with trio.open_nursery() as nursery:
        nursery.start_soon(revoke_at_50)
        with pytest.raises(RelayRejected):
            await link.run()
    assert 100 <= trio.current_time() < 101
    assert len(client.attempts) == 2


async def test_an_ack_riding_an_uplink_request_is_not_sent_again_unless_that_fails(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An uplink request that carries the ack may be answered after the ack's delay (its
    answers wait on the downlink): the link waits for that answer rather than sending the
    same ack on a request of its own, and sends it only if the uplink request failed."""
    client = FakeClient(heal_at=0, script=[(1, wire.Interrupt(session_id="s"))])
    applied: list[int] = []
    link = make_link(client, 600, applied)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        await link.wait_online()
        await trio.testing.wait_all_tasks_blocked()
        assert applied == [1]
        client.directives_ack_riding = 1  # an uplink request carries it, unanswered
        await trio.sleep(link.ack_delay * 3)  # clock: virtual time
        await trio.testing.wait_all_tasks_blocked()
        assert client.acks == []
        client.directives_ack_riding = 0  # that request failed: the ack goes on its own
        await trio.sleep(link.ack_delay * 2)  # clock: virtual time
        await trio.testing.wait_all_tasks_blocked()
        assert client.acks == [1]
        nursery.cancel_scope.cancel()


async def _paced_directives(
    count: int, carried_after: float | None, *, last_carried: bool = True
) -> tuple[FakeClient, RelayLink, list[int]]:
    """``count`` directives 0.1 s apart; each one's ack carried by an uplink request
    ``carried_after`` seconds after it is applied (None: never; the last one's not
    unless ``last_carried``). Runs until 3 s after the last."""
    script: list[tuple[int, wire.Directive]] = [
        (n, wire.Interrupt(session_id="s")) for n in range(1, count + 1)
    ]
    client = FakeClient(heal_at=0, script=script, pace=0.1)
    applied: list[int] = []
    async with trio.open_nursery() as nursery:

        async def carry(dseq: int) -> None:
            await trio.sleep(carried_after or 0)  # clock: virtual time
            client.directives_acked = max(client.directives_acked, dseq)

        def apply(dseq: int, directive: wire.Directive) -> None:
            applied.append(dseq)
            if carried_after is not None and (last_carried or dseq < count):
                nursery.start_soon(carry, dseq)

        link = make_link(client, 600, applied)
        link.apply = apply
        nursery.start_soon(link.run)
        await link.wait_online()
        with trio.fail_after(count * 0.1 + 60):
            while len(applied) < count:
                await trio.sleep(0.01)  # clock: virtual time
        await trio.sleep(3)  # clock: virtual time
        nursery.cancel_scope.cancel()
    return client, link, applied


async def test_no_ack_of_its_own_while_each_turns_events_carry_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Directives a turn apart, each acked by its turn's events a moment after it is
    applied (before then an ack would be a request of its own on that turn's path): no
    ack goes on its own, however the ack's delay falls between them."""
    client, _, applied = await _paced_directives(30, carried_after=0.08)
    assert applied == list(range(1, 31))
    assert client.acks == []


async def test_directives_that_keep_coming_are_still_acked_within_the_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Directives for 5 s without a pause, none carried by an uplink request: acks of
    their own go all along, none more than ack_max_wait + ack_delay after the one
    before, not only once the directives stop."""
    client, link, applied = await _paced_directives(50, carried_after=None)
    assert applied == list(range(1, 51))
    assert client.acks[-1] == 50
    assert client.acks == sorted(client.acks)
    first_directive, last_directive = 0.1, 5.0
    times = [first_directive, *client.ack_times]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= link.ack_max_wait + link.ack_delay + 0.01
    assert client.ack_times[0] < last_directive  # acked while they kept coming


async def test_the_last_directive_its_turn_did_not_carry_is_acked_on_its_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Every directive's ack carried by its turn's events but the last one's (an
    interrupt, say, whose turn sends nothing): that one goes on its own, soon after."""
    client, link, applied = await _paced_directives(30, carried_after=0.08, last_carried=False)
    assert applied == list(range(1, 31))
    assert client.acks == [30]
    last_directive = 3.0
    assert client.ack_times[0] - last_directive <= 2 * link.ack_delay + 0.01
