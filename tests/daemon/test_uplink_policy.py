"""The uplink's batching policy (daemon.uplink_policy), as properties over any outbox."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import wire
from daemon.uplink_policy import Flow, Limits, may_send, next_batch


def event(seq: int) -> wire.Event:
    return wire.Event(seq=seq, kind="assistant_text", at=float(seq), data={"text": "x"})


def outbox(first: int, count: int) -> list[wire.Event]:
    return [event(seq) for seq in range(first, first + count)]


limits = st.builds(
    lambda batch_max, lanes, extra: Limits(
        batch_max=batch_max, lanes=lanes, max_in_flight=lanes + extra
    ),
    st.integers(1, 50),
    st.integers(1, 4),
    st.integers(0, 20),
)
flows = st.builds(
    Flow,
    acked=st.integers(0, 120),
    sending_through=st.integers(0, 120),
    in_flight=st.integers(0, 30),
    backing_off=st.booleans(),
    rides_open_request=st.booleans(),
)


@given(limits, flows, st.integers(1, 100), st.integers(0, 100))
def test_a_batch_is_the_oldest_run_not_yet_sent_within_the_limits(
    limits: Limits, flow: Flow, first: int, count: int
) -> None:
    pending = outbox(first, count)
    batch = next_batch(pending, flow, limits)
    after = max(flow.sending_through, flow.acked)
    unsent = [e for e in pending if e.seq > after]
    if not may_send(flow, limits):
        assert batch == []
    else:
        assert batch == unsent[: limits.batch_max]


@given(limits, flows)
def test_lanes_past_the_limit_only_ride_an_open_request_and_never_during_a_backoff(
    limits: Limits, flow: Flow
) -> None:
    allowed = may_send(flow, limits)
    if flow.backing_off or flow.in_flight >= limits.max_in_flight:
        assert not allowed
    elif flow.in_flight < limits.lanes:
        assert allowed
    else:
        assert allowed == flow.rides_open_request


@given(limits, st.integers(0, 30), st.integers(0, 200), st.data())
def test_batches_taken_one_after_another_carry_every_event_once_in_order(
    limits: Limits, acked: int, count: int, data: st.DataObject
) -> None:
    pending = outbox(acked + 1, count)
    flow = Flow(acked=acked, sending_through=acked)
    sent: list[int] = []
    while batch := next_batch(pending, flow, limits):
        assert len(batch) <= limits.batch_max
        sent += [e.seq for e in batch]
        # Some go on an open request, some wait for their lane: either way the next batch
        # starts after this one.
        in_flight = data.draw(st.integers(0, limits.lanes - 1))
        flow = Flow(acked=acked, sending_through=batch[-1].seq, in_flight=in_flight)
    assert sent == [e.seq for e in pending]
