"""``/diff`` in ``rcd attach``: a session's changes against the commit it started from, as
lines: a header (branch → target, commits, uncommitted changes), the changed files, then
each file's diff with old and new line numbers.

The relay stores no code: it asks the environment's daemon for the list, then for each
file's diff (:meth:`SessionApi.file_diff`). Paths are untrusted text and shown on one line
(a newline in a name is shown as ``\\n``); a diff's lines go through :func:`clean`.
"""

from __future__ import annotations

import trio

import wire
from common.sizes import file_summary
from daemon.errors import DaemonError, RelayRejected, RelayUnreachable

from .api import SessionApi
from .render import Style, clean, one

__all__ = ["diff_lines", "render_changes", "render_file_diff", "sizes_of"]

#: Files whose diffs a whole ``/diff`` shows (the list names them all): ``/diff PATH`` for more.
MAX_DIFFS = 40
#: Diffs asked for at once.
CONCURRENT_DIFFS = 4

_WORDS = {"type_changed": "type changed"}


async def diff_lines(api: SessionApi, style: Style, path: str | None = None) -> list[str]:
    """What ``/diff`` (``path`` None) or ``/diff PATH`` prints. Never raises a relay's error:
    it becomes one line (the relay's message). Cancellable."""
    try:
        if path is None:
            return await _whole(api, style)
        return await _one(api, style, path)
    except RelayUnreachable as exc:
        return [style.red(f"no diff: cannot reach the relay ({exc.detail})")]
    except RelayRejected as exc:
        return [style.red(f"no diff: {exc.message}")]
    except DaemonError as exc:
        return [style.red(f"no diff: {exc}")]


async def _whole(api: SessionApi, style: Style) -> list[str]:
    changes = await api.changes()
    lines = render_changes(changes, style)
    shown = changes.files[:MAX_DIFFS]
    diffs = await _fetch(api, [f.path for f in shown])
    for change, diff in zip(shown, diffs, strict=True):
        lines.append("")
        if isinstance(diff, RelayRejected):
            lines += [_file_title(change, style), style.red(f"  no diff: {diff.message}")]
        else:
            lines += render_file_diff(diff, style)
    left = len(changes.files) - len(shown) + changes.more_files
    if left > 0:
        lines += ["", style.dim(f"diffs of {left} more file(s) left out: /diff PATH shows one")]
    return lines


async def _fetch(api: SessionApi, paths: list[str]) -> list[wire.FileDiff | RelayRejected]:
    """Each path's diff, in order (a refusal in its place); raises the first other error."""
    found: list[wire.FileDiff | DaemonError | None] = [None] * len(paths)
    limiter = trio.CapacityLimiter(CONCURRENT_DIFFS)

    async def fetch(index: int, path: str) -> None:
        async with limiter:
            try:
                found[index] = await api.file_diff(path)
            except DaemonError as exc:
                found[index] = exc

    async with trio.open_nursery() as nursery:
        for index, path in enumerate(paths):
            nursery.start_soon(fetch, index, path)
    diffs: list[wire.FileDiff | RelayRejected] = []
    for diff in found:
        if isinstance(diff, RelayRejected) and diff.code not in ("not_changed", "git_failed"):
            raise diff  # the workspace went away, the daemon went offline...: one line
        if isinstance(diff, DaemonError) and not isinstance(diff, RelayRejected):
            raise diff
        assert diff is not None
        diffs.append(diff)
    return diffs


async def _one(api: SessionApi, style: Style, path: str) -> list[str]:
    try:
        return render_file_diff(await api.file_diff(path), style)
    except RelayRejected as exc:
        if exc.code != "not_changed":
            raise
        # Maybe the path as the list shows it: a newline in a name is typed as "\n" (and a
        # rename may be named by its old path).
        changes = await api.changes()
        for change in changes.files:
            if path in (one(change.path), one(change.old_path or change.path)):
                return render_file_diff(await api.file_diff(change.path), style)
        raise


def render_changes(changes: wire.Changes, style: Style) -> list[str]:
    """The header and the list of changed files (no content)."""
    where = one(changes.branch) if changes.branch else "(no branch)"
    if changes.target:
        where += f" → {one(changes.target)}"
    parts = [where, f"{changes.commits} commit{'' if changes.commits == 1 else 's'}"]
    if changes.uncommitted:
        parts.append("uncommitted changes")
    lines = [style.bold(f"━━ changes: {' · '.join(parts)} ━━")]
    if not changes.files and not changes.more_files:
        return [*lines, "no changes since the session started"]
    width = max((len(_word(f)) for f in changes.files), default=0)
    for change in changes.files:
        lines.append(f"  {_word(change):<{width}}  {_name(change)}  {_counts(change, style)}")
    if changes.more_files:
        lines.append(style.dim(f"  … and {changes.more_files} more file(s), not listed"))
    return lines


def render_file_diff(diff: wire.FileDiff, style: Style) -> list[str]:
    """One file's diff: a title, then each hunk's header and its lines numbered (old, new),
    additions green and removals red; a summary instead for a binary or large file."""
    lines = [_file_title(diff.file, style)]
    if diff.hunks is None:
        return [*lines, style.dim(f"  {one(diff.summary or 'content not shown')}")]
    if not diff.hunks:
        return [*lines, style.dim("  (no change in the content)")]
    last = max(max(h.old_start, h.new_start) + len(h.lines) for h in diff.hunks)
    width = max(3, len(str(last)))
    for hunk in diff.hunks:
        lines.append(style.cyan(one(hunk.header)))
        old, new = hunk.old_start, hunk.new_start
        for line in hunk.lines:
            mark, text = line[:1], _text(line[1:])
            if mark == "+":
                lines.append(style.green(f"{'':>{width}} {new:>{width}} +{text}"))
                new += 1
            elif mark == "-":
                lines.append(style.red(f"{old:>{width}} {'':>{width}} -{text}"))
                old += 1
            elif mark == "\\":
                lines.append(style.dim(f"{'':>{width}} {'':>{width}} \\{text}"))
            else:
                lines.append(f"{old:>{width}} {new:>{width}}  {text}")
                old, new = old + 1, new + 1
    if diff.truncated:
        lines.append(style.yellow("  … the rest of this file's diff is left out (too long)"))
    return lines


def sizes_of(change: wire.FileChange) -> str | None:
    """What stands for the line counts of a binary or large file ("binary, 6 B"), else None."""
    return file_summary(change.binary, change.size, change.old_size)


def _word(change: wire.FileChange) -> str:
    return _WORDS.get(change.status, change.status)


def _name(change: wire.FileChange) -> str:
    if change.old_path is not None and change.old_path != change.path:
        return f"{one(change.old_path)} → {one(change.path)}"
    return one(change.path)


def _counts(change: wire.FileChange, style: Style) -> str:
    sizes = sizes_of(change)
    if sizes is not None or change.added is None or change.removed is None:
        return style.dim(sizes or "binary")
    return f"{style.green(f'+{change.added}')} {style.red(f'-{change.removed}')}"


def _file_title(change: wire.FileChange, style: Style) -> str:
    return style.bold(f"── {_word(change)} {_name(change)}  {_counts(change, Style())} ──")


def _text(text: str) -> str:
    """A diff line's text on one line: control characters escaped, tabs kept."""
    return clean(text).replace("\n", "\\n")
