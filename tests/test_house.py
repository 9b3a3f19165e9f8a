"""The house rules that can be checked on the source (docs/architecture.md): a module stays
under about 400 lines, or says at its top why it is longer."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: "About 400": a module a screenful over is not worth a split.
LIMIT = 420
REASON = re.compile(r"\b(over|about) \d{3} lines\b", re.IGNORECASE)


def _python_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [REPO / name for name in listed if (REPO / name).is_file()]


def test_a_long_module_says_why_at_its_top() -> None:
    files = _python_files()
    assert len(files) > 100, "git ls-files found too few modules"
    unexplained = []
    for path in files:
        source = path.read_text()
        lines = source.count("\n")
        if lines <= LIMIT:
            continue
        docstring = ast.get_docstring(ast.parse(source)) or ""
        if not REASON.search(docstring):
            unexplained.append(f"{path.relative_to(REPO)}: {lines} lines")
    assert not unexplained, (
        f"modules over {LIMIT} lines must say why at the top of their docstring"
        " ('Over 400 lines on purpose: ...'), or be split:\n" + "\n".join(unexplained)
    )


def test_the_rule_reads_a_reason() -> None:
    assert REASON.search("(Over 400 lines on purpose: one document.)")
    assert REASON.search("Longer than our modules should be (about 460 lines), for a reason")
    assert not REASON.search("Handles 400 requests per line.")
