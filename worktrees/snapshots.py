"""Snapshots of working trees kept up to date by reading only what changed.

The first snapshot of a tree copies its index into one of our own (in ``scratch``, never the
agent's) and adds everything (``git add --all``, a stat of every file). Later ones start
from the previous snapshot's tree and take only the paths :class:`~worktrees.watch.TreeWatcher`
saw change — ignored ones left out, removed ones dropped — with no index at all
(:mod:`worktrees.trees`). Anything unexpected (git refusing a path, a nested repository, the
agent's index taking or letting go of an ignored file) falls back to a full read at once,
so a snapshot is never less than right.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import attrs
import structlog
import trio

from .changes import read_all, run_git_text, snapshot_tree
from .errors import GitFailed
from .gitproc import run_git
from .trees import Change, TreeStore, Unsupported
from .watch import MAX_DIRTY, Tracked, TreeWatcher

__all__ = ["Snapshots"]

_T = TypeVar("_T")

log = structlog.get_logger("worktrees.snapshots")

_TRACKED_IGNORED = ("ls-files", "-z", "--cached", "--ignored", "--exclude-standard")
#: Files of the repository whose change makes the next read a full one.
_RULES = ("info/exclude", "info/attributes")
#: The repository's config files: when one changes, the settings below are read again.
_CONFIG = ("config", "config.worktree")
#: Settings under which only a full read is right: core.fileMode off (a mode comes from the
#: agent's index), links not kept as links, names matched regardless of case, HFS rules.
_SETTINGS = r"^core\.(filemode|symlinks|ignorecase|protecthfs)$"


@attrs.define(eq=False)
class _Known:
    """What the last snapshot of a tree left to start the next one from."""

    #: The settings (``git config`` of :data:`_SETTINGS`, and the object format) as read.
    settings: str
    #: Whether they let the tree be made here (sha1 names, and none of :data:`_SETTINGS`).
    settings_ok: bool
    #: Whether the agent's index lets it too (no entry git must take from the index:
    #: assume-unchanged, skip-worktree, a submodule), as of the last full read.
    index_ok: bool = False
    tree: str | None = None
    #: The agent's tracked-though-ignored files as its index listed them just before.
    tracked_ignored: str | None = None

    @property
    def partial(self) -> bool:
        return self.settings_ok and self.index_ok

    @property
    def forced(self) -> set[str]:
        """The agent's tracked-though-ignored files (never left out as ignored)."""
        return set((self.tracked_ignored or "").split("\0")) - {""}


@attrs.define(eq=False)
class Snapshots:
    """Snapshot trees of working trees (see the module docstring). ``scratch`` holds one
    index per tree, private to this process (removed and made again at its start)."""

    scratch: Path
    watcher: TreeWatcher = attrs.Factory(TreeWatcher)
    _locks: dict[Path, trio.Lock] = attrs.Factory(dict)
    _rules: dict[Path, list[Path]] = attrs.Factory(dict)
    _known: dict[Path, _Known] = attrs.Factory(dict)
    store: TreeStore = attrs.Factory(TreeStore)
    _limiter: trio.CapacityLimiter = attrs.Factory(lambda: trio.CapacityLimiter(1))
    _ready: bool = False
    #: Snapshots read in full, and by their changed paths only (for tests and status).
    full_reads: int = 0
    partial_reads: int = 0

    def _index_of(self, top: Path) -> Path:
        return self.scratch / (hashlib.sha256(str(top).encode()).hexdigest()[:24] + ".index")

    async def _watcher(self, fn: Callable[..., _T], *args: object) -> _T:
        # One thread at a time: the watcher's maps and its inotify descriptor are not
        # thread-safe, and a caller waiting here holds no thread of trio's.
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def tree(self, top: Path, index: Path) -> str:
        """The tree of everything at ``top`` now (``index``: the tree's own index)."""
        if not self.watcher.available:
            return await snapshot_tree(top, index)
        if not self._ready:
            await trio.to_thread.run_sync(self._clear_scratch)
        async with self._locks.setdefault(top, trio.Lock()):
            first = not await self._watcher(self.watcher.known, top)
            ignored = await self._ignored_dirs(top) if first else frozenset()
            tracked = await self._watcher(self.watcher.tracked, top, ignored)
            await self._watcher(self.watcher.drain)
            if first:
                self._known.pop(top, None)  # whatever was at this path before
            own = self._index_of(top)
            if await self._ignore_rules_moved(top, index, tracked):
                tracked.full = True
            if tracked.full and not first:
                # What git ignores may have changed (a .gitignore, or events lost): the
                # directories it no longer ignores are watched from now on.
                ignored = await self._ignored_dirs(top)
                await self._watcher(self.watcher.rewatch, tracked, ignored)
            if tracked.new_dirs:
                # A directory holding a file the agent's index tracks though ignored is
                # watched all the same.
                forced = self._known[top].forced if top in self._known else set()
                unwatched = {
                    d
                    for d in await self._ignored(top, sorted(tracked.new_dirs))
                    if not any(f.startswith(d + "/") for f in forced)
                }
                await self._watcher(self.watcher.adopt, tracked, unwatched)
            paths = tracked.take()
            known = await self._known_of(top)
            try:
                if paths is not None and known.partial and known.tree is not None:
                    known.tree = await self._apply(top, known, paths)
                    self.partial_reads += 1
                    return known.tree
            except (GitFailed, Unsupported, OSError, ValueError, KeyError) as exc:
                log.info("snapshot_read_in_full", top=str(top), reason=str(exc))
            except BaseException:
                tracked.full = True  # the paths taken are not in any tree: start over
                raise
            return await self._full(top, index, own, tracked, known)

    async def _settings(self, top: Path) -> str:
        found = await run_git_text(
            top, "config", "--type=bool-or-str", "--get-regexp", _SETTINGS, ok=(0, 1)
        )
        names = await run_git_text(top, "rev-parse", "--show-object-format")
        return found + names

    async def _known_of(self, top: Path) -> _Known:
        known = self._known.get(top)
        if known is None:
            settings = await self._settings(top)
            lines = settings.splitlines()
            known = self._known[top] = _Known(
                settings=settings,
                settings_ok=lines[-1:] == ["sha1"]
                and all(
                    line.endswith(("filemode true", "symlinks true", "case false", "hfs false"))
                    for line in lines[:-1]
                ),
            )
        return known

    async def _ignore_rules_moved(self, top: Path, index: Path, tracked: Tracked) -> bool:
        """Whether what decides how files are taken changed outside the tree's files: the
        agent's index (an ignored file taken or let go, an entry flagged, a submodule),
        ``info/exclude`` or ``info/attributes``, the settings. Watched files never tell."""
        rules = self._rules.get(top)
        if rules is None:
            where = await run_git_text(
                top, "rev-parse", "--path-format=absolute",
                *(arg for name in _RULES + _CONFIG for arg in ("--git-path", name)),
            )  # fmt: skip
            rules = self._rules[top] = [Path(p) for p in where.splitlines()]
        stamps = (_stamp(index), tuple(_stamp(p) for p in rules))
        before = tracked.stamps
        tracked.stamps = stamps  # taken as seen only by the full read asked for, if one is
        if before is None or before == stamps:
            return False
        known = self._known.get(top)
        if known is None or before[1][: len(_RULES)] != stamps[1][: len(_RULES)]:
            self._known.pop(top, None)
            return True
        if before[1] != stamps[1] and await self._settings(top) != known.settings:
            self._known.pop(top, None)  # read again, and everything with them
            return True
        if before[0] == stamps[0]:
            return False
        # The agent's index changed: still the same tracked-though-ignored files, and none
        # that only a full read takes right?
        listed = await run_git_text(top, *_TRACKED_IGNORED)
        return listed != known.tracked_ignored or not _index_ok(
            await run_git_text(top, "ls-files", "-z", "-s", "-v")
        )

    async def _full(
        self, top: Path, index: Path, own: Path, tracked: Tracked, known: _Known
    ) -> str:
        known.tree = known.tracked_ignored = None
        try:
            # Listed before the index is copied: a file the agent takes in between makes
            # the next look read in full again, never miss it.
            listed = await run_git_text(top, *_TRACKED_IGNORED)
            tree = await read_all(top, index, own)
            entries = await run_git_text(
                top, "ls-files", "-z", "-s", "-v", env={"GIT_INDEX_FILE": str(own)}
            )
        except BaseException:
            tracked.full = True  # whatever was half done, the next one starts over
            raise
        known.index_ok = _index_ok(entries)
        known.tree, known.tracked_ignored = tree, listed
        self.full_reads += 1
        return tree

    async def _apply(self, top: Path, known: _Known, paths: list[str]) -> str:
        """The last tree with the paths brought up to date: a directory's files are listed
        (a directory holding only ignored files is no error, and entries of files gone
        from it go), ignored files left out but those the agent's index tracks, what is
        gone dropped."""
        assert known.tree is not None
        if not paths:
            return known.tree
        files, dropped = await trio.to_thread.run_sync(_expand, top, paths)
        if files:
            ignored = await self._ignored(top, files) - known.forced
            # Tracked by the agent's index though ignored, and not so at the last full read
            # (a .gitignore in a new directory, a global excludes file): only a full read.
            if ignored and await run_git_text(top, "ls-files", "-z", "--cached", "--", *ignored):
                raise Unsupported("an ignored file the agent's index tracks")
            files = [f for f in files if f not in ignored]
            crlf = await trio.to_thread.run_sync(_carriage_return, top, files)
            if crlf is not None:
                raise Unsupported(f"{crlf!r} holds a CR: 'auto' text looks at the index")
        change = Change(dropped, files)
        return await self.store.apply(top, known.tree, change, filemode=True)

    async def _ignored_dirs(self, top: Path) -> frozenset[str]:
        """The directories git ignores as such ("build/", "node_modules"), not worth a
        watch. Not those whose files only happen to be ignored now ("logs/" holding only
        *.log files): a file made there later may count."""
        listed = await run_git_text(
            top, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory"
        )
        candidates = [p.rstrip("/") for p in listed.split("\0") if p.endswith("/")]
        if not candidates:
            return frozenset()
        ignored = await self._ignored(top, candidates)
        return frozenset(p + "/" for p in ignored)

    async def _ignored(self, top: Path, paths: list[str]) -> set[str]:
        """Those of ``paths`` git's rules ignore, tracked or not (no index is read)."""
        # check-ignore takes no literal pathspecs: "./" keeps a leading ":" a name.
        result = await run_git(
            ["check-ignore", "-z", "--no-index", "--stdin"],
            cwd=top, stdin=_nul(["./" + p for p in paths]), check=False,
        )  # fmt: skip
        if result.returncode not in (0, 1):
            raise result.error()
        return {p.removeprefix("./") for p in result.stdout.split("\0") if p}

    def _clear_scratch(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._ready = True

    def close(self) -> None:
        self.watcher.close()

    async def forget(self, top: Path) -> None:
        """Stop following ``top`` (its worktree is gone)."""
        async with self._locks.setdefault(top, trio.Lock()):
            await self._watcher(self.watcher.forget, top)
            self._known.pop(top, None)
            self._index_of(top).unlink(missing_ok=True)


def _expand(top: Path, paths: list[str]) -> tuple[list[str], list[str]]:
    """(files to add, paths whose entries go first): a directory's files, recursively
    (not into a nested repository); a path that is gone, or a directory, is dropped first.
    Past :data:`~worktrees.watch.MAX_DIRTY` files, or at anything but files, links and
    directories, :class:`Unsupported` (a full read is right, and cheaper). BLOCKS."""
    files: list[str] = []
    dropped: list[str] = []
    for path in paths:
        full = top / path
        if full.is_symlink() or full.is_file():
            files.append(path)
        elif full.is_dir():
            if (full / ".git").exists():
                raise Unsupported(f"{path!r} is a repository of its own")
            dropped.append(path)
            for directory, subdirs, names in os.walk(full):
                here = os.path.relpath(directory, top)
                # A link to a directory, or a nested repository, is one entry, not a tree.
                whole = [
                    d for d in subdirs
                    if (Path(directory) / d).is_symlink() or (Path(directory) / d / ".git").exists()
                ]  # fmt: skip
                subdirs[:] = [d for d in subdirs if d not in whole]
                files.extend(f"{here}/{name}" for name in [*names, *whole] if name != ".git")
                if len(files) > MAX_DIRTY:
                    raise Unsupported(f"more than {MAX_DIRTY} files changed")
        elif os.path.lexists(full):
            raise Unsupported(f"{path!r} is no file, link or directory")
        else:
            dropped.append(path)
    return files, dropped


def _index_ok(entries: str) -> bool:
    """Whether ``ls-files -z -s -v`` lists no entry only a full read takes right: one
    flagged assume-unchanged (a lowercase tag) or skip-worktree ("S"), or a submodule."""
    for entry in entries.split("\0"):
        if entry and (entry[0] != "H" or entry[2:8] == "160000"):
            return False
    return True


def _carriage_return(top: Path, files: list[str]) -> str | None:
    """The first of ``files`` that holds a CR and no NUL: text git may convert ("auto"
    text keeps CRLF when the indexed blob has it, which only the index tells). BLOCKS."""
    for name in files:
        path = top / name
        if path.is_symlink():
            continue
        with path.open("rb") as file:
            content = file.read()
        if b"\r" in content and b"\0" not in content:
            return name
    return None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _nul(paths: list[str]) -> bytes:
    return b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)
