"""``python -m bench``: run every benchmark and write ``bench/RESULTS.md``.

Figures are medians (and p99) over several trials, each with its baseline measured in the
same run, because the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import trio

from .roundtrip import measure_round_trips
from .soak import SoakResult, soak
from .stats import machine_summary
from .teardown import measure_teardown

RESULTS = Path(__file__).with_name("RESULTS.md")


def _soak_section(result: SoakResult) -> list[str]:
    def row(who: str, a: object, b: object) -> list[str]:
        return [
            f"| {who} {name} | {getattr(a, name)} | {getattr(b, name)} |"
            for name in ("rss_kib", "open_files", "tasks", "children")
        ]

    problems = result.grew()
    return [
        f"## Soak ({result.seconds:.0f} s: {result.cycles} sessions, 4 at a time, "
        f"{result.events} events, {result.cuts} connections cut)",
        "",
        "| figure | start | end |",
        "|---|---|---|",
        *row("daemon", result.daemon_start, result.daemon_end),
        *row("relay", result.relay_start, result.relay_end),
        "",
        "Nothing grows: **yes**." if not problems else "Grew: **" + "; ".join(problems) + "**.",
        "",
    ]


async def main(trials: int, soak_seconds: float) -> str:
    one, many = await measure_teardown(32, trials)
    ratio = many.median / one.median
    verdict = "meets" if ratio <= 1.5 else "MISSES"
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m bench`; every figure comes from the same run as its baseline.",
        "",
        machine_summary(),
        "",
        "## Teardown (SIGTERM → exit, sessions busy, stand-in agent)",
        "",
        "| figure | median | p99 | trials |",
        "|---|---|---|---|",
        one.row(),
        many.row(),
        "",
        f"Ratio 32 : 1 (medians) = **{ratio:.2f}** — target ≤ 1.5: {verdict}.",
        "",
        "Sessions stop in parallel and each sends its last events in one request as soon as it",
        "has ended. Most of the 1-session figure is the daemon process exiting (about 150 ms of",
        "interpreter teardown on this machine), which both figures share. What the 31 extra",
        "sessions add is CPU in the daemon on a 2-core machine — mostly httpx building and",
        "pooling one uplink request per session (py-spy), then reaping 32 agent processes — so",
        "the ratio sits near the target and moves with the machine's load from run to run.",
        "",
    ]
    base, one_rt, many_rt = await measure_round_trips()
    checks = [
        ("1 session, median", one_rt.median / base.median, 4),
        ("1 session, p99", one_rt.p99 / base.median, 12),
        ("32 busy sessions, median", many_rt.median / base.median, 8),
    ]
    lines += [
        "## Round trip (client posts → stand-in agent answers → client sees it on SSE)",
        "",
        "| figure | median | p99 | samples |",
        "|---|---|---|---|",
        base.row(),
        one_rt.row(),
        many_rt.row(),
        "",
        *(
            f"- {name}: **{ratio:.1f}x** the baseline GET — target ≤ {target}x: "
            + ("meets" if ratio <= target else "MISSES")
            for name, ratio, target in checks
        ),
        "",
        "Every hop is Python on a 2-core machine shared by relay, daemon, agents and the",
        "benchmark's own clients: relay request → directive → downlink SSE → agent stdin →",
        "stdout → uplink request → relay → client SSE. With 32 sessions busy, the 32 clients'",
        "SSE readers run in the relay's process too. Not yet tuned (issue: performance).",
        "",
    ]
    if soak_seconds > 0:
        lines += _soak_section(await soak(soak_seconds))
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--trials", type=int, default=7, help="trials per figure (default 7)")
    parser.add_argument(
        "--soak-seconds", type=float, default=120.0, help="soak duration (default 120; 0 skips)"
    )
    args = parser.parse_args()
    text = trio.run(main, args.trials, args.soak_seconds)
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
