"""Slugs: examples, properties (Hypothesis, against a pure model of git's ref-name rules)
and a few checked with the real ``git check-ref-format --branch``."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worktrees import BRANCH_PREFIX, MAX_SLUG_LENGTH, slugify, unique_slug
from worktrees.slug import SLUG_PATTERN

_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def is_valid_branch_name(name: str) -> bool:
    """git-check-ref-format(1) rules for ``refs/heads/<name>``, plus ``--branch``'s own."""
    if name.startswith("-") or name == "HEAD" or name == "@":
        return False
    if _FORBIDDEN.search(name) or ".." in name or "@{" in name:
        return False
    if name.startswith("/") or name.endswith(("/", ".")) or "//" in name:
        return False
    return all(
        part and not part.startswith(".") and not part.endswith(".lock") for part in name.split("/")
    )


def git_says_valid_branch(name: str, cwd: Path) -> bool:
    done = subprocess.run(
        ["git", "check-ref-format", "--branch", name], cwd=cwd, capture_output=True, check=False
    )
    return done.returncode == 0


@pytest.mark.parametrize(
    ("title", "session_id", "expected"),
    [
        ("Fix the login bug!", "s1", "fix-the-login-bug"),
        ("  --Hello__World--  ", "s1", "hello-world"),
        ("Café au lait", "s1", "cafe-au-lait"),
        ("a..b/c.lock @{x} ~^:?*[\\", "s1", "a-b-c-lock-x"),
        ("HEAD", "s1", "head"),
        ("日本語のタイトル", "sess_01HX", "sess-01hx"),
        (None, "sess_01HX", "sess-01hx"),
        ("", "Session-42", "session-42"),
        ("!!!", "???", "session"),
        ("x" * 100, "s1", "x" * MAX_SLUG_LENGTH),
        ("word " * 20, "s1", "word-word-word-word-word-word-word-word"),
    ],
)
def test_slugify_examples(title: str | None, session_id: str, expected: str) -> None:
    assert slugify(title, session_id) == expected


def test_unique_slug_suffixes_and_keeps_length() -> None:
    assert unique_slug("fix", set()) == "fix"
    assert unique_slug("fix", {"fix"}) == "fix-2"
    assert unique_slug("fix", {"fix", "fix-2", "fix-3"}) == "fix-4"
    long = "abcd-" * 7 + "abcde"  # 40 characters
    assert len(long) == MAX_SLUG_LENGTH
    suffixed = unique_slug(long, {long})
    assert suffixed.endswith("-2")
    assert len(suffixed) <= MAX_SLUG_LENGTH
    assert SLUG_PATTERN.match(suffixed)


@given(title=st.none() | st.text(), session_id=st.text())
def test_any_title_gives_a_valid_short_slug(title: str | None, session_id: str) -> None:
    slug = slugify(title, session_id)
    assert SLUG_PATTERN.match(slug)
    assert 0 < len(slug) <= MAX_SLUG_LENGTH
    assert is_valid_branch_name(BRANCH_PREFIX + slug)
    assert slugify(slug, session_id) == slug  # a slug is its own slug


slugs = st.builds(slugify, st.text(), st.just("s"))


@given(title=st.text(), taken=st.sets(slugs, max_size=20), more=st.integers(0, 12))
def test_unique_slug_is_free_valid_and_short(title: str, taken: set[str], more: int) -> None:
    base = slugify(title, "s")
    # Make collisions likely: the base and a run of its suffixed forms are taken.
    taken = taken | {base} | {unique_slug(base, set(), max_length=MAX_SLUG_LENGTH)}
    for _ in range(more):
        taken.add(unique_slug(base, taken))
    slug = unique_slug(base, taken)
    assert slug not in taken
    assert SLUG_PATTERN.match(slug)
    assert len(slug) <= MAX_SLUG_LENGTH
    assert is_valid_branch_name(BRANCH_PREFIX + slug)


@pytest.mark.parametrize(
    "name",
    [
        "rcd/fix-the-bug",
        "rcd/a",
        "rcd/a..b",
        "rcd/.hidden",
        "rcd/x.lock",
        "rcd/a b",
        "rcd/end.",
        "rcd//x",
        "rcd/",
        "-rcd",
        "rcd/@{x}",
        "rcd/a~1",
        "rcd/a:b",
        "rcd/a\\b",
        "rcd/a*",
    ],
)
def test_model_agrees_with_git(name: str, tmp_path: Path) -> None:
    assert is_valid_branch_name(name) == git_says_valid_branch(name, tmp_path)


@pytest.mark.parametrize(
    "title",
    ["Fix: the ~bug~ in ^HEAD^..@{upstream}", ".lock", "../../etc/passwd", "-rf /", "Ünïcödé ☃"],
)
def test_real_git_accepts_slugs_of_hostile_titles(title: str, tmp_path: Path) -> None:
    assert git_says_valid_branch(BRANCH_PREFIX + slugify(title, "s"), tmp_path)
