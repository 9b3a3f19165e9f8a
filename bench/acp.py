"""Claude through the Agent Client Protocol beside Claude through stream-json: the same
real-agent round trips through rcd, in the same run.

Two ``rcd start`` with their relay inside (the README's default), each with its own project
and home, against one fake Messages API (its own process): one runs the pinned ``claude``
CLI (stream-json, ``--agent claude``), the other the pinned ``claude-agent-acp``
(``--agent claude-acp``), which drives the Claude Code its SDK carries. Each round is a turn
on each side in turn (the order alternating), after warm-up turns: POST a message → the
agent's ``assistant_text`` on the session's SSE stream; then permission rounds: a Write
asked → the ``permission_request`` seen; "allow" 0.5 s later → the final reply seen.

The ACP side adds the adapter's own hop (a Node process speaking JSON-RPC between rcd and
Claude Code): the figures say what that hop costs, not rcd; no target.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import attrs
import trio

from testkit.fakes import claude_env, find_claude, find_claude_acp
from testkit.harness import Relay, home_env

from .bare_cli import start_fake_api
from .real_cli import client_of, warm_session
from .sides import Embedded, RcdSide, start_embedded
from .stats import Check, Figure, keep_logs

__all__ = ["AcpResult", "checks", "measure_acp", "section"]

SIDES = ("stream-json", "acp")


@attrs.frozen(kw_only=True)
class AcpResult:
    turns: dict[str, Figure]
    asked: dict[str, Figure]
    allowed: dict[str, Figure]
    #: Each round's ACP turn minus its stream-json turn (ms).
    paired: tuple[float, ...]


async def measure_acp(turns: int = 100, permissions: int = 20) -> AcpResult:
    claude, adapter = find_claude(), find_claude_acp()
    with tempfile.TemporaryDirectory(prefix="rcd-acp-") as tmp:
        root = Path(tmp)
        api_process, base_url = await start_fake_api(root)
        started: list[Embedded] = []
        opened: list[tuple[RcdSide, Relay]] = []
        try:
            sides: dict[str, RcdSide] = {}
            for name, program, extra in (
                ("stream-json", claude, ()),
                ("acp", adapter, ("--agent", "claude-acp")),
            ):
                home, project = root / f"{name}-home", root / f"{name}-project"
                project.mkdir()
                # As root, Claude Code wants to be told it is in a sandbox of sorts.
                env = home_env(home, {**claude_env(home, base_url), "IS_SANDBOX": "1"})
                embedded = await start_embedded(root, project, program, env, *extra, name=name)
                started.append(embedded)
                relay = client_of(embedded.url, root / f"{name}-relay", embedded.token)
                [environment] = await relay.environments()
                side = await warm_session(relay, environment["id"], name)
                opened.append((side, relay))
                sides[name] = side
            for n in range(5):  # warm-up turns, not counted
                for side in sides.values():
                    await side.turn(f"warm {n}")
            samples: dict[str, list[float]] = {name: [] for name in SIDES}
            for n in range(turns):
                order = list(SIDES) if n % 2 == 0 else list(reversed(SIDES))
                for name in order:
                    elapsed, _ = await sides[name].turn(f"round {n}")
                    samples[name].append(elapsed)
            asked: dict[str, list[float]] = {name: [] for name in SIDES}
            allowed: dict[str, list[float]] = {name: [] for name in SIDES}
            for n in range(permissions):
                for name in SIDES:
                    target = root / f"{name}-project" / f"file-{n}.txt"
                    raised, done = await sides[name].permission(target)
                    asked[name].append(raised)
                    allowed[name].append(done)
        except BaseException:
            keep_logs(root, "acp")
            raise
        finally:
            with trio.CancelScope(shield=True):
                for side, client in opened:
                    await side.aclose()
                    await client.aclose()
                for embedded in started:
                    await embedded.stop()
                api_process.kill()
                await api_process.wait()

    def figures(name: str, got: dict[str, list[float]]) -> dict[str, Figure]:
        return {s: Figure(name=f"{s}: {name}", unit="ms", samples=tuple(got[s])) for s in SIDES}

    return AcpResult(
        turns=figures("turn (POST → assistant_text on SSE)", samples),
        asked=figures("permission asked → visible", asked),
        allowed=figures("allow → final reply visible", allowed),
        paired=tuple(a - b for a, b in zip(samples["acp"], samples["stream-json"], strict=True)),
    )


def checks(result: AcpResult) -> list[Check]:
    acp, cli = result.turns["acp"], result.turns["stream-json"]
    return [
        Check(
            name="real agent turn through rcd: Claude over ACP beside stream-json (embedded)",
            target="none (reported)",
            measured=f"{acp.median:.1f} ms vs {cli.median:.1f} ms (paired"
            f" {statistics.median(result.paired):+.1f} ms)",
            ok=None,
        )
    ]


def section(result: AcpResult) -> list[str]:
    lines = [
        "## Claude over ACP beside stream-json (real agents, embedded relay)",
        "",
        "| figure | median | p99 | samples |",
        "|---|---|---|---|",
    ]
    for group in (result.turns, result.asked, result.allowed):
        lines += [group[name].row() for name in SIDES]
    paired = statistics.median(result.paired)
    lines += [
        "",
        f"- a turn over ACP: **{paired:+.1f} ms** against stream-json (median of each round's"
        " difference)",
        "",
        "Both sides are `rcd start` with the relay inside, against one fake Messages API;",
        "`stream-json` runs the pinned `claude` CLI (`--agent claude`), `acp` the pinned",
        "`claude-agent-acp` (`--agent claude-acp`), which runs the Claude Code its SDK",
        "carries. A round is a turn on each side, the order alternating, after five warm-up",
        "turns each; then permission rounds (a Write asked; allow 0.5 s after it is seen).",
        "The difference is the adapter's hop (a Node process speaking JSON-RPC between rcd",
        "and Claude Code) and its Claude Code's own pace, not rcd's.",
        "",
    ]
    return lines
