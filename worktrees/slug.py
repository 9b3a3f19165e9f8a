"""Worktree names: a session title turned into a short, branch-safe slug.

A slug is lowercase ASCII letters and digits in runs joined by single dashes
(``^[a-z0-9]+(-[a-z0-9]+)*$``), at most :data:`MAX_SLUG_LENGTH` characters, never empty.
That alphabet makes ``rcd/<slug>`` a valid branch name (``git check-ref-format --branch``)
and ``.rcd/worktrees/<slug>`` a portable directory name, without any quoting.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Container

__all__ = ["BRANCH_PREFIX", "MAX_SLUG_LENGTH", "SLUG_PATTERN", "slugify", "unique_slug"]

#: Every branch rcd creates lives under this prefix: ``rcd/<slug>``.
BRANCH_PREFIX = "rcd/"
MAX_SLUG_LENGTH = 40
SLUG_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_FALLBACK = "session"
_SEPARATORS = re.compile(r"[^a-z0-9]+")


def _clean(text: str, max_length: int) -> str:
    # NFKD splits accented letters into letter + combining mark, so "Café" keeps its "e".
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = _SEPARATORS.sub("-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-")


def slugify(title: str | None, session_id: str, *, max_length: int = MAX_SLUG_LENGTH) -> str:
    """The slug for a session: from ``title``, else from ``session_id``, else ``"session"``.

    >>> slugify("Fix the login bug!", "s1")
    'fix-the-login-bug'
    >>> slugify(None, "sess_01HX")
    'sess-01hx'
    """
    return _clean(title or "", max_length) or _clean(session_id, max_length) or _FALLBACK


def unique_slug(base: str, taken: Container[str], *, max_length: int = MAX_SLUG_LENGTH) -> str:
    """``base`` if it is not taken, else the first free ``base-2``, ``base-3``, ...

    ``base`` must already be a slug. The result keeps within ``max_length`` by shortening
    ``base`` before the suffix.
    """
    if base not in taken:
        return base
    n = 2
    while True:
        suffix = f"-{n}"
        candidate = base[: max_length - len(suffix)].rstrip("-") + suffix
        if candidate not in taken:
            return candidate
        n += 1
