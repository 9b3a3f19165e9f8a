"""Keeping ``.rcd/`` out of ``git status``: one line in the repository's ``info/exclude``.

Blocking file I/O: call :func:`ensure_excluded` from a worker thread.
"""

from __future__ import annotations

from pathlib import Path

from .errors import WorktreeError

__all__ = ["EXCLUDE_PATTERN", "ensure_excluded"]

EXCLUDE_PATTERN = ".rcd/"
# Patterns that already keep the top-level .rcd directory out of git status.
_EQUIVALENT = {b".rcd", b".rcd/", b"/.rcd", b"/.rcd/"}
_BLOCK = b"# rcd: session worktrees live here\n" + EXCLUDE_PATTERN.encode() + b"\n"


def ensure_excluded(common_dir: Path) -> bool:
    """Add ``.rcd/`` to ``<common_dir>/info/exclude`` unless an equivalent line is there.

    ``common_dir`` is ``git rev-parse --git-common-dir``: linked worktrees share their
    repository's exclude file, and in one of them ``.git`` is a file, not a directory.
    Returns True when the line was added. Raises :class:`WorktreeError` when the file
    cannot be read or written.
    """
    path = common_dir / "info" / "exclude"
    try:
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            text = b""
        if any(line.strip() in _EQUIVALENT for line in text.splitlines()):
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as f:
            if text and not text.endswith(b"\n"):
                f.write(b"\n")
            f.write(_BLOCK)
    except OSError as exc:
        raise WorktreeError(f"could not add {EXCLUDE_PATTERN} to {path}: {exc}") from exc
    return True
