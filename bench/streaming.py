"""Replies that stream: how soon the phone sees the agent's first words, beside how soon it
sees a whole message, with the real ``claude`` CLI, in the same run.

The fake Messages API runs in its own process and notes when each text delta leaves it
(``time.monotonic()``, one clock for every process of the machine; ``GET /_fake/deltas``).
Each trial is one ``slow 0.5`` turn (five deltas 100 ms apart, a word each) on a session
followed as the web app follows it (``?partials=1``), through ``rcd relay`` + ``rcd start``
and through the embedded relay (the README's default), a turn on each in turn:

* first words: the API sends the reply's first delta → the phone has its first
  ``assistant_partial``;
* whole message: the API sends the reply's last delta → the phone has the finished
  ``assistant_text`` (the CLI writes that line right after the last delta).

Both cross the same road (CLI → daemon → relay → phone); the target: first words' median ≤
the whole message's + 2 ms. Partials per turn are counted too (five deltas 100 ms apart:
each one its own, at most one per 50 ms).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import attrs
import httpx
import trio

from relay import admin
from testkit.fakes import claude_env, find_claude
from testkit.harness import Relay, home_env, start_daemon

from .bare_cli import start_fake_api
from .real_cli import client_of, warm_session
from .relayhttp import start_relay_process
from .sides import RcdSide, start_embedded
from .stats import Check, Figure, keep_logs

__all__ = ["StreamingResult", "checks", "measure_streaming", "section"]

#: The turn: five words, 100 ms apart.
PROMPT = "slow 0.5"
#: Slack of the target over the whole message's median (ms).
TARGET_MS = 2.0


@attrs.frozen(kw_only=True)
class SideResult:
    first_words: Figure
    whole_message: Figure
    partials_per_turn: float


@attrs.frozen(kw_only=True)
class StreamingResult:
    sides: dict[str, SideResult]
    turns: int


async def _turn(side: RcdSide, api: httpx.AsyncClient) -> tuple[float, float, int]:
    """One turn: (first words ms, whole message ms, partials seen)."""
    await side.say(PROMPT)
    first_at = whole_at = 0.0
    partials = 0
    while True:
        message = await side.feed.next()
        now = time.monotonic()
        if message.event == "assistant_partial":
            partials += 1
            first_at = first_at or now
        elif message.event == "assistant_text":
            whole_at = now
        elif message.event == "turn_result":
            break
        elif message.event == "error":
            raise RuntimeError(f"the session reported an error: {message.data}")
    deltas = (await api.get("/_fake/deltas")).json()["deltas"]
    by_message: dict[str, list[float]] = {}
    for delta in deltas:
        by_message.setdefault(delta["message_id"], []).append(delta["at"])
    # The turn's reply is the newest with its five deltas (side requests answer "ok").
    sent = next(times for times in reversed(by_message.values()) if len(times) >= 5)
    if not first_at or not whole_at:
        raise RuntimeError(f"a turn without {'partials' if not first_at else 'its message'}")
    return (first_at - sent[0]) * 1000, (whole_at - sent[-1]) * 1000, partials


async def measure_streaming(turns: int = 40) -> StreamingResult:
    claude = find_claude()
    with tempfile.TemporaryDirectory(prefix="rcd-stream-") as tmp:
        root = Path(tmp)
        api_process, base_url = await start_fake_api(root)
        embedded = relay_process = None
        opened: list[tuple[RcdSide, Relay]] = []
        try:
            relay_process = await start_relay_process(root)
            token = await trio.to_thread.run_sync(
                admin.create_device_token, relay_process.data_dir, "bench"
            )
            relay = client_of(relay_process.url, relay_process.data_dir, token)
            homes = {name: root / f"{name}-home" for name in ("rcd", "embedded")}
            projects = {name: root / f"{name}-project" for name in homes}
            for directory in projects.values():
                directory.mkdir()
            daemon = await start_daemon(
                relay, homes["rcd"], projects["rcd"], agent_bin=claude,
                extra_env=claude_env(homes["rcd"], base_url),
            )  # fmt: skip
            env = home_env(homes["embedded"], claude_env(homes["embedded"], base_url))
            embedded = await start_embedded(root, projects["embedded"], claude, env)
            embedded_relay = client_of(embedded.url, root / "embedded-relay", embedded.token)
            [embedded_env] = await embedded_relay.environments()
            rcd = await warm_session(relay, daemon.environment_id, "rcd", partials=True)
            opened.append((rcd, relay))
            inside = await warm_session(
                embedded_relay, embedded_env["id"], "embedded", partials=True
            )
            opened.append((inside, embedded_relay))
            samples: dict[str, list[tuple[float, float, int]]] = {"rcd": [], "embedded": []}
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as api:
                await _turn(rcd, api)  # a warm-up turn of each, not counted
                await _turn(inside, api)
                for n in range(turns):
                    order = [(rcd, "rcd"), (inside, "embedded")]
                    for side, name in order if n % 2 == 0 else order[::-1]:
                        samples[name].append(await _turn(side, api))
            await daemon.stop()
        except BaseException:
            keep_logs(root, "streaming")
            raise
        finally:
            with trio.CancelScope(shield=True):
                for side, client in opened:
                    await side.aclose()
                    await client.aclose()
                if embedded is not None:
                    await embedded.stop()
                if relay_process is not None:
                    await relay_process.stop()
                api_process.kill()
                await api_process.wait()
    return StreamingResult(
        sides={
            name: SideResult(
                first_words=Figure(name="first words", unit="ms", samples=tuple(s[0] for s in got)),
                whole_message=Figure(
                    name="whole message", unit="ms", samples=tuple(s[1] for s in got)
                ),
                partials_per_turn=sum(s[2] for s in got) / len(got),
            )
            for name, got in samples.items()
        },
        turns=turns,
    )


_NAMES = {"rcd": "rcd relay + rcd start", "embedded": "embedded relay"}


def checks(result: StreamingResult) -> list[Check]:
    return [
        Check(
            name=f"first words on the phone, {_NAMES[name]}",
            target=f"≤ whole message + {TARGET_MS:.0f} ms (median)",
            measured=f"{side.first_words.median:.1f} ms vs {side.whole_message.median:.1f} ms",
            ok=side.first_words.median <= side.whole_message.median + TARGET_MS,
            limit="see Replies that stream",
        )
        for name, side in result.sides.items()
    ]


def section(result: StreamingResult) -> list[str]:
    lines = [
        "## Replies that stream (real CLI: the API's delta out → the phone has it)",
        "",
        "| side | figure | median | p99 | turns |",
        "|---|---|---|---|---|",
    ]
    for name, side in result.sides.items():
        for figure in (side.first_words, side.whole_message):
            lines.append(f"| {_NAMES[name]} " + figure.row())
    lines += [
        "",
        *(
            f"- {_NAMES[name]}: first words"
            f" {side.first_words.median - side.whole_message.median:+.1f} ms against the whole"
            f" message (median); {side.partials_per_turn:.1f} partials"
            " per turn of five deltas 100 ms apart"
            for name, side in result.sides.items()
        ),
        "",
        "First words: the fake API sends a reply's first text delta → the phone (an SSE",
        "stream with `?partials=1`, as the web app's) has its first `assistant_partial`.",
        "Whole message: the API sends the last delta → the phone has the `assistant_text`.",
        "One clock (`time.monotonic()`, shared by the machine's processes), one turn on",
        "each side in turn, after a warm-up turn each.",
        "",
    ]
    return lines
