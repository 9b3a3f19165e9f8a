"""What a session changed: its work against the commit it started from, committed and not.

The work is read as one snapshot tree: a copy of the worktree's index takes every change
(``git add --all`` into the copy, so untracked files count and a file moved by hand is
seen as renamed), and ``git write-tree`` names the result. The copy starts with the real
index's stat data, so only changed files are read again: cheap on a 20,000-file
repository. Nothing the agent sees changes: its own index, HEAD and files stay as they
were (the snapshot's blobs land in the object store, unreferenced, for ``git gc``).

Then ``git diff`` between the start commit and that tree lists the files (status, ``+``/
``-`` counts, sizes) and gives one file's hunks. Binary and huge files are summarised by
size, never sent. Paths travel NUL-separated and go back to git as literal pathspecs after
``--``, so names with spaces, newlines, leading dashes or ``..`` are only names.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

if TYPE_CHECKING:
    from .snapshots import Snapshots

from common.sizes import SHOWN_LIMIT, file_summary

from .errors import GitFailed, WorktreeError
from .gitproc import run_git
from .together import beside

__all__ = [
    "DIFF_LIMIT",
    "FILES_LIMIT",
    "FileChange",
    "FileDiff",
    "Hunk",
    "Snapshot",
    "file_diff",
    "read_all",
    "readable",
    "snapshot",
    "summary_of",
]

#: A file whose old or new version is larger than this (bytes) is summarised, not diffed.
DIFF_LIMIT = SHOWN_LIMIT
#: The most files one listing carries (the rest are counted).
FILES_LIMIT = 3000
#: The most lines one file's diff carries.
LINES_LIMIT = 20_000

_STATUS = {
    "A": "added",
    "M": "modified",
    "D": "deleted",
    "R": "renamed",
    "C": "copied",
    "T": "type_changed",
}
_EMPTY_BLOB = "0" * 40
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")
#: Never pathspec magic, never globs: a path is a path.
_LITERAL = {"GIT_LITERAL_PATHSPECS": "1"}


@attrs.frozen(kw_only=True)
class FileChange:
    """One changed file. ``added``/``removed`` are line counts (None for a binary file);
    sizes are in bytes (None for a side that does not exist)."""

    path: str
    old_path: str | None
    status: str
    added: int | None
    removed: int | None
    binary: bool
    size: int | None
    old_size: int | None

    @property
    def too_large(self) -> bool:
        return max(self.size or 0, self.old_size or 0) > DIFF_LIMIT


@attrs.frozen(kw_only=True)
class Snapshot:
    """The work in a directory against ``base`` (a commit): ``tree`` is its snapshot,
    ``head`` the commit checked out, ``commits`` how many commits HEAD has beyond ``base``,
    ``uncommitted`` whether the files differ from HEAD; ``top`` is the working tree's top."""

    top: Path
    base: str
    base_tree: str
    head: str
    tree: str
    commits: int
    uncommitted: bool
    files: list[FileChange]
    #: Files changed beyond :data:`FILES_LIMIT`, not listed.
    more_files: int = 0


@attrs.frozen(kw_only=True)
class Hunk:
    header: str
    old_start: int
    new_start: int
    #: Each line as git writes it: a " ", "+", "-" or "\\" then the text.
    lines: list[str]


@attrs.frozen(kw_only=True)
class FileDiff:
    change: FileChange
    #: None when the file is summarised (binary or too large): see ``summary``.
    hunks: list[Hunk] | None
    summary: str | None
    #: Lines beyond :data:`LINES_LIMIT` were left out.
    truncated: bool = False


def readable(text: str) -> str:
    """Text read from git as a client can show it: bytes that are not UTF-8 (kept as
    surrogates so a path names its file) become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def summary_of(change: FileChange) -> str | None:
    """Why a file's content is not shown ("binary, 5.0 MB"), or None when it is."""
    return file_summary(change.binary, change.size, change.old_size)


async def run_git_text(
    cwd: Path,
    *args: str,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
    ok: tuple[int, ...] = (0,),
) -> str:
    """``git ARGS`` in ``cwd`` with every pathspec literal; its output. Raises GitFailed
    for an exit status not in ``ok``."""
    result = await run_git(args, cwd=cwd, stdin=stdin, env={**_LITERAL, **(env or {})}, check=False)
    if result.returncode not in ok:
        raise result.error()
    return result.stdout


_git = run_git_text


async def top_level(cwd: Path) -> Path:
    """The top of the working tree around ``cwd``."""
    return Path((await _git(cwd, "rev-parse", "--show-toplevel")).strip())


async def snapshot_tree(top: Path, index: Path) -> str:
    """The tree of everything in the working tree at ``top``, whose index is ``index``
    (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="rcd-changes-") as scratch:
        return await read_all(top, index, Path(scratch) / "index")


async def read_all(top: Path, index: Path, into: Path) -> str:
    """The tree of everything at ``top``: its ``index`` copied to ``into`` (an index of
    ours), every file added there, and the tree written."""

    def copy() -> None:
        try:
            copy_index(index, into)
        except FileNotFoundError:  # no index yet: git starts an empty one
            into.unlink(missing_ok=True)

    await trio.to_thread.run_sync(copy)
    env = {"GIT_INDEX_FILE": str(into)}
    await _git(top, "add", "--all", "--", ".", env=env)
    return (await _git(top, "write-tree", env=env)).strip()


def copy_index(source: Path, target: Path) -> None:
    # With the index's own mtime: git trusts a file's stat data only when the file is older
    # than the index ("racily clean" otherwise), and a copy made now would vouch for a file
    # rewritten at the same size in the second the index was written.
    shutil.copy2(source, target)


def _fields(out: str) -> list[str]:
    return out.split("\0")[:-1] if out else []


Entry = tuple[str, str | None, str, str, str]


def _parse(out: str) -> tuple[list[Entry], dict[str, tuple[int | None, int | None]]]:
    """``git diff-tree --raw --numstat -z`` → the raw entries (path, old path, status
    letter, old blob, new blob), then the line counts by (new) path (None, None: binary)."""
    fields, i = _fields(out), 0
    entries: list[Entry] = []
    while i < len(fields) and fields[i].startswith(":"):
        meta = fields[i].lstrip(":").split()
        letter, old_blob, new_blob = meta[4][0], meta[2], meta[3]
        if letter in "RC":
            entries.append((fields[i + 2], fields[i + 1], letter, old_blob, new_blob))
            i += 3
        else:
            entries.append((fields[i + 1], None, letter, old_blob, new_blob))
            i += 2
    counts: dict[str, tuple[int | None, int | None]] = {}
    while i < len(fields):
        added, removed, path = fields[i].split("\t", 2)
        if not path:  # a rename: the old and new paths follow
            path = fields[i + 2]
            i += 3
        else:
            i += 1
        counts[path] = (None, None) if added == "-" else (int(added), int(removed))
    return entries, counts


#: What never changes, kept between listings (a blob's size; the commits between two
#: commits), each up to :data:`_REMEMBERED` entries.
_SIZES: dict[str, int] = {}
_COUNTS: dict[tuple[str, ...], str] = {}
_REMEMBERED = 100_000


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _REMEMBERED:
        cache.clear()
    cache[key] = value


async def _sizes(top: Path, blobs: set[str]) -> dict[str, int]:
    blobs.discard(_EMPTY_BLOB)
    unknown = sorted(b for b in blobs if b not in _SIZES)
    if unknown:
        out = await _git(
            top, "cat-file", "--batch-check=%(objectname) %(objectsize)",
            stdin="".join(b + "\n" for b in unknown).encode(),
        )  # fmt: skip
        for line in out.splitlines():
            name, _, size = line.partition(" ")
            if size.isdigit():
                _remember(_SIZES, name, int(size))
    return {b: _SIZES[b] for b in blobs if b in _SIZES}


async def snapshot(
    cwd: Path, base: str, *, commit: str | None = None, snapshots: Snapshots | None = None
) -> Snapshot:
    """The work at ``cwd`` against commit ``base``: the changed files, sorted by path.
    With ``commit`` (a branch whose worktree is gone), that commit's work, the files on
    disk left out.

    Raises :class:`~worktrees.GitFailed` when git cannot read it (``base`` gone, say).
    """
    rev = commit or "HEAD"
    found = await _git(
        cwd, "rev-parse", "--show-toplevel", "--path-format=absolute", "--git-path", "index",
        rev + "^{commit}", rev + "^{tree}", base + "^{commit}", base + "^{tree}",
    )  # fmt: skip
    top_text, index, head, head_tree, base_commit, base_tree = found.split("\n")[:6]
    top = Path(top_text)
    if commit is not None:
        tree = head_tree
    elif snapshots is not None:
        tree = await snapshots.tree(top, Path(index))
    else:
        tree = await snapshot_tree(top, Path(index))
    # A directory below the top (a same-dir session of a daemon started in a subdirectory)
    # sees only its own part of the repository.
    here = Path(await trio.Path(cwd).resolve())
    within = "." if commit is not None or here == top else str(here.relative_to(top))
    limit = [] if within == "." else ["--", within]
    diff = commits = ""
    uncommitted = tree != head_tree

    async def read_diff() -> None:
        nonlocal diff
        diff = await _git(
            top, "diff-tree", "-r", "-z", "-M", "--raw", "--numstat", base_tree, tree, *limit
        )

    async def count() -> None:
        nonlocal commits
        key = (str(top), base_commit, head, *limit)
        if key not in _COUNTS:
            found = await _git(top, "rev-list", "--count", f"{base_commit}..{head}", *limit)
            _remember(_COUNTS, key, found)
        commits = _COUNTS[key]

    await beside(read_diff, count)  # a failure raised as itself: GitFailed, as promised
    if limit and uncommitted:
        result = await run_git(
            ["diff-tree", "--quiet", head_tree, tree, *limit],
            cwd=top, env=dict(_LITERAL), check=False,
        )  # fmt: skip
        uncommitted = result.returncode == 1
    entries, counts = _parse(diff)
    sizes = await _sizes(top, {blob for e in entries[:FILES_LIMIT] for blob in e[3:]})
    files = []
    for path, old_path, letter, old_blob, new_blob in entries[:FILES_LIMIT]:
        added, removed = counts.get(path, (None, None))
        files.append(
            FileChange(
                path=path,
                old_path=old_path,
                status=_STATUS.get(letter, "modified"),
                added=added,
                removed=removed,
                binary=added is None,
                size=sizes.get(new_blob, 0) if new_blob != _EMPTY_BLOB else None,
                old_size=sizes.get(old_blob, 0) if old_blob != _EMPTY_BLOB else None,
            )
        )
    files.sort(key=lambda f: f.path)
    return Snapshot(
        top=top,
        base=base_commit,
        base_tree=base_tree,
        head=head,
        tree=tree,
        commits=int(commits.strip() or 0),
        uncommitted=uncommitted,
        files=files,
        more_files=max(0, len(entries) - FILES_LIMIT),
    )


def _hunks(text: str) -> tuple[list[Hunk], bool]:
    hunks: list[Hunk] = []
    lines = 0
    for line in text.split("\n"):
        match = _HUNK.match(line)
        if match:
            hunks.append(
                Hunk(header=line, old_start=int(match[1]), new_start=int(match[2]), lines=[])
            )
        elif hunks and line[:1] in (" ", "+", "-", "\\"):
            if lines >= LINES_LIMIT:
                return hunks, True
            hunks[-1].lines.append(line)
            lines += 1
    return hunks, False


async def file_diff(
    cwd: Path,
    base: str,
    path: str,
    *,
    commit: str | None = None,
    snapshots: Snapshots | None = None,
) -> FileDiff:
    """One changed file's hunks against ``base`` (3 lines of context), or its summary.

    ``path`` (as :func:`readable` shows it) must be one the :func:`snapshot` lists (the
    new path of a rename): any other is refused with :class:`~worktrees.WorktreeError`,
    so only changed files are ever read.
    """
    now = await snapshot(cwd, base, commit=commit, snapshots=snapshots)
    change = next((f for f in now.files if readable(f.path) == path), None)
    if change is None:
        raise WorktreeError(f"{path!r} is not among the changed files")
    summary = summary_of(change)
    if summary is not None:
        return FileDiff(change=change, hunks=None, summary=summary)
    top, base_tree = now.top, now.base_tree
    paths = [change.path] if change.old_path is None else [change.old_path, change.path]
    try:
        text = await _git(
            top, "diff-tree", "-p", "-M", "--no-color", "--no-ext-diff", "--no-textconv",
            "--unified=3", base_tree, now.tree, "--", *paths,
        )  # fmt: skip
    except GitFailed as exc:
        raise WorktreeError(f"git could not diff {path!r}: {exc.summary}") from exc
    hunks, truncated = _hunks(readable(text))
    return FileDiff(change=change, hunks=hunks, summary=None, truncated=truncated)
