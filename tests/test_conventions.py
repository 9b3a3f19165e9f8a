"""The test conventions that can be checked on the source (tests/CONVENTIONS.md)."""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Where test code lives (``testkit/`` holds the harness shared with bench/, once it exists).
ROOTS = ("tests", "testkit")

#: Calls that wait a fixed time: ``trio.sleep``, ``time.sleep``, ``anyio.sleep``,
#: ``asyncio.sleep``, a bare ``sleep`` imported from any of them, ``trio.sleep_until``,
#: and Playwright's ``page.wait_for_timeout``.
SLEEPS = {"sleep", "sleep_until", "wait_for_timeout"}

#: The one place that sleeps between looks at outside state.
HELPER = Path("testkit/waiting.py")

#: A line that sleeps on purpose says why in a trailing comment.
MARK = "# clock:"


def _sources() -> Iterator[Path]:
    for root in ROOTS:
        yield from sorted((REPO / root).rglob("*.py"))


def _exempt(path: Path) -> bool:
    # Fakes simulate durations (a streamed reply, a slow network): that is their job.
    return path == HELPER or path.parts[:2] == ("testkit", "fakes")


def _marked_lines(source: str) -> set[int]:
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and token.string.startswith(MARK):
            lines.add(token.start[0])
    return lines


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _yields_only(call: ast.Call) -> bool:
    """``sleep(0)``: a checkpoint, not a wait."""
    return (
        _called_name(call) == "sleep"
        and len(call.args) == 1
        and isinstance(call.args[0], ast.Constant)
        and call.args[0].value == 0
    )


def unmarked_sleeps(path: Path, source: str) -> list[str]:
    """``file:line: code`` of every fixed-time wait in ``source`` without a ``# clock:``
    comment on one of its lines."""
    marked = _marked_lines(source)
    lines = source.splitlines()
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, str(path))):
        if not (isinstance(node, ast.Call) and _called_name(node) in SLEEPS):
            continue
        if _yields_only(node):
            continue
        span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
        if marked.isdisjoint(span):
            found.append((node.lineno, f"{path}:{node.lineno}: {lines[node.lineno - 1].strip()}"))
    return [line for _, line in sorted(found)]


def test_no_test_sleeps_on_the_real_clock_to_wait_for_something() -> None:
    found = []
    for file in _sources():
        path = file.relative_to(REPO)
        if not _exempt(path):
            found += unmarked_sleeps(path, file.read_text())
    assert not found, (
        "A test waits on an event, or polls outside state through testkit/waiting.py "
        "(eventually); a sleep that is meant says why with a trailing '# clock: ...' "
        "(tests/CONVENTIONS.md):\n" + "\n".join(found)
    )


def test_the_scanner_sees_every_kind_of_sleep() -> None:
    source = """\
import time, trio
from trio import sleep
async def f(page):
    await trio.sleep(0.1)
    time.sleep(1)
    await sleep(2)
    await trio.sleep_until(5)
    page.wait_for_timeout(300)
    await trio.sleep(0)
    await trio.sleep(0.5)  # clock: the passing of time is under test
    await trio.sleep(
        3,
    )  # clock: marked on any line of the call
    await trio.sleep_forever()
    "time.sleep(4) in a string is no call"
"""
    assert unmarked_sleeps(Path("t.py"), source) == [
        "t.py:4: await trio.sleep(0.1)",
        "t.py:5: time.sleep(1)",
        "t.py:6: await sleep(2)",
        "t.py:7: await trio.sleep_until(5)",
        "t.py:8: page.wait_for_timeout(300)",
    ]
