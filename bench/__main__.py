"""``python -m bench [--quick]``: run every benchmark and write ``bench/RESULTS.md``."""

from __future__ import annotations

import argparse
from pathlib import Path

import trio

from .stats import machine_summary
from .teardown import measure_teardown

RESULTS = Path(__file__).with_name("RESULTS.md")


async def main(trials: int) -> str:
    one, many = await measure_teardown(32, trials)
    ratio = many.median / one.median
    verdict = "meets" if ratio <= 1.5 else "MISSES"
    return "\n".join(
        [
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
        ]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--trials", type=int, default=5, help="trials per figure (default 5)")
    args = parser.parse_args()
    text = trio.run(main, args.trials)
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
