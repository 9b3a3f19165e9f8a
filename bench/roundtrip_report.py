"""The round-trip benchmark's section of ``bench/RESULTS.md`` and its targets."""

from __future__ import annotations

import os

from .roundtrip import BUSY_RATE, Phase, RoundTrips
from .stats import Check

__all__ = ["checks", "section"]

#: The machine's cores (the queue's CPU is spread over them).
CORES = os.cpu_count() or 1


def _per_trip(phase: Phase) -> dict[str, float]:
    """CPU per round trip, in ms, by who spent it."""
    spent = {"relay": phase.relay_cpu, "phones": phase.phones_cpu}
    if phase.phones_cpu is None:
        spent = {"relay and clients": phase.relay_cpu}
    spent |= {"daemon": phase.daemon_cpu, "agents": phase.agents_cpu}
    return {who: (cpu or 0.0) / phase.round_trips * 1000 for who, cpu in spent.items()}


def _cpu_line(name: str, phase: Phase) -> str:
    per_trip = _per_trip(phase)
    busy = sum(per_trip.values()) * phase.round_trips / 1000 / phase.seconds
    return (
        f"- {name}: {phase.round_trips} round trips in {phase.seconds:.2f} s"
        + (f", {phase.events / phase.seconds:.0f} events/s to the phones" if phase.events else "")
        + "; CPU per round trip: "
        + ", ".join(f"{who} {ms:.1f} ms" for who, ms in per_trip.items())
        + f" — {busy:.2f} of the machine's {CORES} cores busy"
    )


#: The queue's line, and how its figure was taken before the phones ran apart.
QUEUE = "32 at once (a queue, the phones in a process of their own), median"
STAND_IN = "32 at once (a queue, the phones in the relay's process), median"


def _ratios(result: RoundTrips) -> list[tuple[str, float, int]]:
    base = result.baseline
    return [
        ("1 session, median", result.one.median / base.median, 4),
        ("1 session, p99", result.one.p99 / base.median, 12),
        ("32 busy sessions, median", result.busy.median / base.median, 8),
        (QUEUE, result.apart.median / result.apart_baseline.median, 40),
    ]


def section(result: RoundTrips) -> list[str]:
    base, apart, apart_base = result.baseline, result.apart, result.apart_baseline
    phase = result.apart_phase
    per_trip = _per_trip(phase)
    lines = [
        "## Round trip (client posts → stand-in agent answers → client sees it on SSE)",
        "",
        "| figure | median | p99 | samples |",
        "|---|---|---|---|",
        base.row(),
        result.one.row(),
        result.busy.row(),
        apart_base.row(),
        apart.row(),
        result.burst.row(),
        "",
        *(
            f"- {name}: **{ratio:.1f}x** "
            + ("the phones' process's GET" if name == QUEUE else "the baseline GET")
            + f" — target ≤ {target}x: "
            + ("meets" if ratio <= target else "MISSES")
            for name, ratio, target in _ratios(result)
        ),
        f"- {STAND_IN} (earlier runs' figure, reported beside):"
        f" **{result.burst.median / base.median:.1f}x** the baseline GET",
        _cpu_line("taps while 32 sessions are busy", result.busy_phase),
        _cpu_line("32 round trips at once, the phones apart", phase),
        _cpu_line("32 round trips at once, the phones in the relay's process", result.burst_phase),
        "",
        "One round trip is the client's POST (the input is authenticated and queued in one",
        "storage call, then handed to the open downlink from memory), the daemon writing it",
        "to the agent, and the answer going up on an uplink request the daemon opened ahead",
        "of it (the relay checked its token before the batch existed; the batch carries the",
        "ack of the directive), one storage call for the append, and the session's stream",
        "sending the stored events from memory. What is left is a request's worth of Python",
        "(httpx in the client, hypercorn + Starlette in the relay) plus two SSE writes.",
        "An uplink request takes batches for up to 40 s (the relay answers each on the",
        "open downlink), each stored and shown as it arrives, so a busy machine's batches",
        "share requests while none waits for another: in the busy phase (with its",
        f"warm-up) {result.busy_phase.batches} batches"
        f" went up in {result.busy_phase.requests} requests.",
        "",
        f"32 sessions busy: {BUSY_RATE} messages a second from each agent, every session",
        "followed by a phone, and a client taps on one more session — how a tap feels with",
        'the machine full of work (the issue\'s "with 32 busy sessions as with one").',
        "",
        "32 round trips at once is a queue, not a hop: 32 phones post together and again as",
        "soon as their answers arrive, and each round trip costs the CPU above, all of it",
        "Python on the machine's 2 cores: the relay, the daemon, 32 agents and the phones.",
        "The phones (each its own HTTP client, as each is its own device) run in a process",
        "of their own, as they are other devices, and their baseline is a GET from there;",
        "they still take the machine's CPU, which a real phone does not. Earlier runs had",
        "them in the relay's process, where their CPU was the relay's: that figure is",
        f"kept beside. The median ({apart.median:.0f} ms) is of the order of 32 round trips'",
        f"CPU over the {CORES} cores (32 x {sum(per_trip.values()):.1f} ms / {CORES} ="
        f" {32 * sum(per_trip.values()) / CORES:.0f} ms: relay, phones, daemon and agents); 40x",
        f"the phones' GET ({40 * apart_base.median:.0f} ms) needs a round trip to cost less CPU",
        "than it does.",
        "",
    ]
    return lines


def checks(result: RoundTrips) -> list[Check]:
    found = [
        Check(
            name=f"round trip, {name}",
            target=f"≤ {target}x a GET",
            measured=f"{ratio:.1f}x",
            ok=ratio <= target,
            limit=(
                f"CPU: 32 sessions' round trips of Python on {CORES} cores; see Round trip"
                if "busy" in name or "once" in name
                else "a request and two SSE writes of Python per round trip; see Round trip"
            ),
        )
        for name, ratio, target in _ratios(result)
    ]
    stand_in = result.burst.median / result.baseline.median
    return [
        *found,
        Check(
            name=f"round trip, {STAND_IN} (earlier runs' figure)",
            target="reported beside the line above",
            measured=f"{stand_in:.1f}x",
            ok=None,
        ),
    ]
