"""``python -m bench``: run every benchmark and write ``bench/RESULTS.md``.

Figures are medians (and p99) over several trials, each with its baseline measured in the
same run, because the machines are shared and noisy. ``--only NAME[,NAME]`` runs some of
them and prints their sections without touching ``RESULTS.md`` (unless ``--output`` says
where to write).
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import trio

from . import (
    acp,
    changes,
    cli_startup,
    fleet,
    idle,
    push,
    real_cli,
    relay_scale,
    roundtrip_report,
    session_start,
    streaming,
    throughput,
    unread_bodies,
)
from .roundtrip import measure_round_trips
from .soak import soak, soak_section
from .stats import Check, machine_summary
from .teardown import measure_teardown

RESULTS = Path(__file__).with_name("RESULTS.md")


@attrs.frozen(kw_only=True)
class Options:
    trials: int
    soak_seconds: float
    idle_seconds: float
    links: int


@attrs.frozen(kw_only=True)
class Section:
    lines: list[str]
    checks: list[Check] = attrs.Factory(list)


async def _teardown(options: Options) -> Section:
    one, many = await measure_teardown(32, options.trials)
    ratio = many.median / one.median
    verdict = "within" if ratio <= 1.5 else "over"
    lines = [
        "## Teardown (SIGTERM → exit, sessions busy, stand-in agent)",
        "",
        "| figure | median | p99 | trials |",
        "|---|---|---|---|",
        one.row(),
        many.row(),
        "",
        f"Ratio 32 : 1 (medians) = **{ratio:.2f}** ({verdict} 1.5). The stand-in figure, kept",
        "beside the real one: the target is judged on 32 worktree sessions of the real CLI",
        "(see the headline deployment).",
        "",
        "Sessions stop in parallel and each sends its last events in one request as soon as it",
        "has ended. Most of the 1-session figure is the daemon process exiting (about 150 ms of",
        "interpreter teardown on this machine), which both figures share. What the 31 extra",
        "sessions add is CPU in the daemon on a 2-core machine — mostly httpx building and",
        "pooling one uplink request per session (py-spy), then reaping 32 agent processes — so",
        "the ratio sits near the target and moves with the machine's load from run to run.",
        "",
    ]
    check = Check(
        name="teardown, 32 sessions : 1, stand-in agent (the target's run: real CLI, below)",
        target="≤ 1.5x",
        measured=f"{ratio:.2f}x",
        ok=None,
    )
    return Section(lines=lines, checks=[check])


async def _roundtrip(options: Options) -> Section:
    result = await measure_round_trips()
    return Section(lines=roundtrip_report.section(result), checks=roundtrip_report.checks(result))


async def _soak(options: Options) -> Section:
    if options.soak_seconds <= 0:
        return Section(lines=[])
    result = await soak(options.soak_seconds)
    problems = result.grew()
    return Section(
        lines=soak_section(result),
        checks=[
            Check(
                name="soak: nothing grows",
                target="counts equal, memory ±10 % + 4 MiB",
                measured="; ".join(problems) or "nothing grew",
                ok=not problems,
                limit="see Soak",
            )
        ],
    )


async def _real_cli(options: Options) -> Section:
    # A fresh CLI process takes 0.8 to 1.1 s here and varies by 100 ms from one start to
    # the next: twice the trials (and one) keep the medians of both sides steady. A warm
    # turn varies by tens of ms (the CLI's own work): 150 of each side keep the difference
    # of the medians within about a millisecond from run to run.
    result = await real_cli.measure_real_cli(
        turns=300, permissions=60, fresh=2 * options.trials + 1
    )
    return Section(lines=real_cli.section(result), checks=real_cli.checks(result))


async def _streaming(options: Options) -> Section:
    result = await streaming.measure_streaming(turns=max(40, 8 * options.trials))
    return Section(lines=streaming.section(result), checks=streaming.checks(result))


async def _acp(options: Options) -> Section:
    result = await acp.measure_acp(turns=100, permissions=20)
    return Section(lines=acp.section(result), checks=acp.checks(result))


async def _session_start(options: Options) -> Section:
    result = await session_start.measure_session_start(trials=options.trials)
    return Section(lines=session_start.section(result), checks=session_start.checks(result))


async def _idle(options: Options) -> Section:
    result = await idle.measure_idle(options.idle_seconds)
    return Section(lines=idle.section(result), checks=idle.checks(result))


async def _fleet(options: Options) -> Section:
    result = await fleet.measure_fleet(trials=min(options.trials, 3))
    return Section(lines=fleet.section(result), checks=fleet.checks(result))


async def _changes(options: Options) -> Section:
    result = await changes.measure_changes(trials=max(5, options.trials))
    return Section(lines=changes.section(result), checks=changes.checks(result))


async def _push(options: Options) -> Section:
    result = await push.measure_push(trials=max(30, options.trials))
    return Section(lines=push.section(result), checks=push.checks(result))


async def _relay_scale(options: Options) -> Section:
    result = await relay_scale.measure_relay_scale(options.links)
    return Section(lines=relay_scale.section(result), checks=relay_scale.checks(result))


async def _unread_bodies(options: Options) -> Section:
    result = await unread_bodies.measure_unread_bodies()
    return Section(lines=unread_bodies.section(result), checks=unread_bodies.checks(result))


async def _throughput(options: Options) -> Section:
    result = await throughput.measure_throughput(trials=options.trials)
    return Section(lines=throughput.section(result), checks=throughput.checks(result))


#: In the order they run (and appear in RESULTS.md).
async def _cli_startup(options: Options) -> Section:
    result = await cli_startup.measure_cli_startup(max(15, options.trials))
    extra = result.help.median - result.baseline.median
    lines = [
        "## CLI start-up (`rcd --help`, each command's package imported only when it runs)",
        "",
        "| figure | median | p99 | trials |",
        "|---|---|---|---|",
        result.help.row(digits=3),
        result.baseline.row(digits=3),
        "",
        f"`rcd --help` takes {extra * 1000:.0f} ms more than the bare interpreter.",
        "",
    ]
    check = Check(
        name="rcd --help",
        target="< 0.3 s",
        measured=f"{result.help.median:.3f} s (python -c pass {result.baseline.median:.3f} s)",
        ok=result.help.median < 0.3,
        limit="the imports of the parser modules (python -X importtime -c 'import cli')",
    )
    return Section(lines=lines, checks=[check])


BENCHMARKS: dict[str, Callable[[Options], Awaitable[Section]]] = {
    "cli-startup": _cli_startup,
    "teardown": _teardown,
    "roundtrip": _roundtrip,
    "real-cli": _real_cli,
    "streaming": _streaming,
    "acp": _acp,
    "session-start": _session_start,
    "fleet": _fleet,
    "changes": _changes,
    "push": _push,
    "idle": _idle,
    "relay-scale": _relay_scale,
    "unread-bodies": _unread_bodies,
    "throughput": _throughput,
    "soak": _soak,
}


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _failed(name: str, exc: Exception) -> Section:
    """A benchmark that raised: say so (its figures are missing), and carry on."""
    problems = []
    for leaf in _leaves(exc):
        where = traceback.extract_tb(leaf.__traceback__)
        ours = [f for f in where if "/bench/" in f.filename or "/testkit/" in f.filename]
        at = f" (at {Path(ours[-1].filename).name}:{ours[-1].lineno})" if ours else ""
        text = " ".join(str(leaf).split())
        if len(text) > 600:  # the start says what, the end what was last seen
            text = text[:200] + " … " + text[-400:]
        problems.append(f"{type(leaf).__name__}: {text}{at}")
    traceback.print_exception(exc)
    return Section(
        lines=[f"## {name}: FAILED", "", *(f"- {p}" for p in problems), ""],
        checks=[
            Check(
                name=f"{name} (benchmark)",
                target="runs to the end",
                measured="failed",
                ok=False,
                limit=problems[0][:160] + " … (see its section)",
            )
        ],
    )


async def main(options: Options, only: list[str]) -> str:
    sections: list[Section] = []
    durations: list[str] = []
    for name, run in BENCHMARKS.items():
        if name not in only:
            continue
        started = time.monotonic()
        print(f"bench: {name} ...", flush=True)
        try:
            sections.append(await run(options))
        except Exception as exc:  # one failing benchmark must not lose the others' figures
            sections.append(_failed(name, exc))
        durations.append(f"{name} {time.monotonic() - started:.0f} s")
    checks = [check for section in sections for check in section.checks]
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m bench`; every figure comes from the same run as its baseline."
        " Before/after pairs of each tuning step: `HISTORY.md`.",
        "",
        machine_summary(),
        f"- ran: {', '.join(durations)}",
        "",
        "## Targets",
        "",
        "| target | goal | this run | verdict (and what limits it) |",
        "|---|---|---|---|",
        *(check.row() for check in checks),
        "",
    ]
    for section in sections:
        lines += section.lines
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--trials", type=int, default=7, help="trials per figure (default 7)")
    parser.add_argument(
        "--soak-seconds", type=float, default=120.0, help="soak duration (default 120; 0 skips)"
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=60.0, help="idle-daemon window (default 60)"
    )
    parser.add_argument(
        "--links", type=int, default=5000, help="idle links the relay-scale run opens (5000)"
    )
    parser.add_argument(
        "--only",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        metavar="NAME[,NAME]",
        help="run only these: " + ", ".join(BENCHMARKS),
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the results (default: bench/RESULTS.md for a full run; "
        "with --only, nothing is written unless given)",
    )
    args = parser.parse_args()
    unknown = sorted(set(args.only or ()) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    options = Options(
        trials=args.trials,
        soak_seconds=args.soak_seconds,
        idle_seconds=args.idle_seconds,
        links=args.links,
    )
    text = trio.run(main, options, args.only or list(BENCHMARKS))
    output = args.output or (None if args.only else RESULTS)
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
    print(text)
