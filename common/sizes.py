"""How a changed file too large or binary to show is named: "binary, 6 B", "large, 1.2 MB
→ 3.0 MB", "binary, was 10 B" (the daemon's diffs and ``rcd attach /diff`` alike)."""

from __future__ import annotations

__all__ = ["SHOWN_LIMIT", "file_summary", "size_text"]

#: A file whose old or new version is larger than this (bytes) is summarised, not diffed.
SHOWN_LIMIT = 1024 * 1024


def size_text(size: int | None) -> str:
    if size is None:
        return "none"
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def file_summary(binary: bool, size: int | None, old_size: int | None) -> str | None:
    """Why a file's content is not shown, with its sizes; None when it is shown."""
    large = max(size or 0, old_size or 0) > SHOWN_LIMIT
    what = "binary" if binary else "large" if large else None
    if what is None:
        return None
    if size is None:
        return f"{what}, was {size_text(old_size)}"
    if old_size is not None and old_size != size:
        return f"{what}, {size_text(old_size)} → {size_text(size)}"
    return f"{what}, {size_text(size)}"
