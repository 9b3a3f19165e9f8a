"""The round-trip benchmark's section of ``bench/RESULTS.md`` and its targets."""

from __future__ import annotations

from .roundtrip import BUSY_RATE, Phase, RoundTrips
from .stats import Check

__all__ = ["checks", "section"]


def _cpu_line(name: str, phase: Phase) -> str:
    per_trip = {
        "relay and clients": phase.relay_cpu,
        "daemon": phase.daemon_cpu,
        "agents": phase.agents_cpu,
    }
    if phase.phones_cpu:
        per_trip = {"relay": phase.relay_cpu, "phones": phase.phones_cpu} | per_trip
        del per_trip["relay and clients"]
    busy = sum(per_trip.values()) / phase.seconds
    return (
        f"- {name}: {phase.round_trips} round trips in {phase.seconds:.2f} s"
        + (f", {phase.events / phase.seconds:.0f} events/s to the phones" if phase.events else "")
        + "; CPU per round trip: "
        + ", ".join(
            f"{who} {cpu / phase.round_trips * 1000:.1f} ms" for who, cpu in per_trip.items()
        )
        + f" — {busy:.2f} of the machine's 2 cores busy"
    )


def _ratios(result: RoundTrips) -> list[tuple[str, float, int]]:
    base = result.baseline
    return [
        ("1 session, median", result.one.median / base.median, 4),
        ("1 session, p99", result.one.p99 / base.median, 12),
        ("32 busy sessions, median", result.busy.median / base.median, 8),
        (
            "32 at once (a queue), median",
            result.apart.median / result.apart_baseline.median,
            40,
        ),
    ]


def section(result: RoundTrips) -> list[str]:
    base, one_rt, busy_rt, burst = result.baseline, result.one, result.busy, result.burst
    apart, apart_base = result.apart, result.apart_baseline
    checks = _ratios(result)
    stand_in = burst.median / base.median
    phase = result.apart_phase
    relay_per_trip = phase.relay_cpu / phase.round_trips * 1000
    phones_per_trip = phase.phones_cpu / phase.round_trips * 1000
    lines = [
        "## Round trip (client posts → stand-in agent answers → client sees it on SSE)",
        "",
        "| figure | median | p99 | samples |",
        "|---|---|---|---|",
        base.row(),
        one_rt.row(),
        busy_rt.row(),
        apart_base.row(),
        apart.row(),
        burst.row(),
        "",
        *(
            f"- {name}: **{ratio:.1f}x** the baseline GET — target ≤ {target}x: "
            + ("meets" if ratio <= target else "MISSES")
            for name, ratio, target in checks
        ),
        f"- 32 at once, the phones in the relay's process (the stand-in of earlier runs):"
        f" **{stand_in:.1f}x** the baseline GET",
        _cpu_line("taps while 32 sessions are busy", result.busy_phase),
        _cpu_line("32 round trips at once, the phones apart", result.apart_phase),
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
        f"CPU over the two cores (32 x ({relay_per_trip:.1f} + {phones_per_trip:.1f} +"
        f" {phase.daemon_cpu / phase.round_trips * 1000:.1f}) ms / 2); 40x a GET"
        f" ({40 * apart_base.median:.0f} ms) needs a round trip to cost less CPU than it does.",
        "",
    ]
    return lines


def checks(result: RoundTrips) -> list[Check]:
    return [
        Check(
            name=f"round trip, {name}",
            target=f"≤ {target}x a GET",
            measured=f"{ratio:.1f}x",
            ok=ratio <= target,
            limit=(
                "CPU: 32 sessions' round trips of Python on 2 cores; see Round trip"
                if "busy" in name or "once" in name
                else "a request and two SSE writes of Python per round trip; see Round trip"
            ),
        )
        for name, ratio, target in _ratios(result)
    ]
