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
from .watch import Tracked, TreeWatcher

__all__ = ["Snapshots"]

_T = TypeVar("_T")

log = structlog.get_logger("worktrees.snapshots")

_TRACKED_IGNORED = ("ls-files", "-z", "--cached", "--ignored", "--exclude-standard")


@attrs.define(eq=False)
class _Known:
    """What the last snapshot of a tree left to start the next one from."""

    #: The repository's settings that decide how a file is taken.
    filemode: bool
    #: Whether the tree can be made here (sha1 object names, links kept as links).
    partial: bool
    tree: str | None = None
    #: The agent's tracked-though-ignored files as its index listed them just before.
    tracked_ignored: str | None = None


@attrs.define(eq=False)
class Snapshots:
    """Snapshot trees of working trees (see the module docstring). ``scratch`` holds one
    index per tree, private to this process (removed and made again at its start)."""

    scratch: Path
    watcher: TreeWatcher = attrs.Factory(TreeWatcher)
    _locks: dict[Path, trio.Lock] = attrs.Factory(dict)
    _excludes: dict[Path, Path] = attrs.Factory(dict)
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
                unwatched = await self._ignored(top, sorted(tracked.new_dirs))
                await self._watcher(self.watcher.adopt, tracked, unwatched)
            paths = tracked.take()
            known = await self._known_of(top)
            try:
                if paths is not None and known.partial and known.tree is not None:
                    known.tree = await self._apply(top, known.tree, paths, known.filemode)
                    self.partial_reads += 1
                    return known.tree
            except (GitFailed, Unsupported, OSError, ValueError) as exc:
                log.info("snapshot_read_in_full", top=str(top), reason=str(exc))
            except BaseException:
                tracked.full = True  # the paths taken are not in any tree: start over
                raise
            return await self._full(top, index, own, tracked, known)

    async def _known_of(self, top: Path) -> _Known:
        known = self._known.get(top)
        if known is None:
            found = await run_git_text(
                top, "config", "--type=bool", "--get-regexp", r"^core\.(filemode|symlinks)$",
                ok=(0, 1),
            )  # fmt: skip
            settings = dict(line.split(" ", 1) for line in found.splitlines())
            sha1 = (await run_git_text(top, "rev-parse", "--show-object-format")).strip()
            known = self._known[top] = _Known(
                filemode=settings.get("core.filemode", "true") == "true",
                partial=settings.get("core.symlinks", "true") == "true" and sha1 == "sha1",
            )
        return known

    async def _ignore_rules_moved(self, top: Path, index: Path, tracked: Tracked) -> bool:
        """Whether what git tracks-though-ignored, or ignores by ``info/exclude``, changed
        outside the tree's files: the agent's ``git add -f`` / ``git rm --cached`` of an
        ignored file, an exclude added. Watched files never tell."""
        exclude = self._excludes.get(top)
        if exclude is None:
            where = await run_git_text(
                top, "rev-parse", "--path-format=absolute", "--git-path", "info/exclude"
            )
            exclude = self._excludes[top] = Path(where.strip())
        stamps = (_stamp(index), _stamp(exclude))
        before = tracked.stamps
        if before is None or before == stamps:
            tracked.stamps = stamps
            return False
        known = self._known.get(top)
        if (
            before[1] == stamps[1]
            and known is not None
            and known.tracked_ignored is not None
            and await run_git_text(top, *_TRACKED_IGNORED) == known.tracked_ignored
        ):
            tracked.stamps = stamps
            return False
        # Taken as seen only by the full read this asks for (or the next one, if it fails).
        tracked.stamps = stamps
        return True

    async def _full(
        self, top: Path, index: Path, own: Path, tracked: Tracked, known: _Known
    ) -> str:
        known.tree = known.tracked_ignored = None
        try:
            # Listed before the index is copied: a file the agent takes in between makes
            # the next look read in full again, never miss it.
            listed = await run_git_text(top, *_TRACKED_IGNORED)
            tree = await read_all(top, index, own)
        except BaseException:
            tracked.full = True  # whatever was half done, the next one starts over
            raise
        known.tree, known.tracked_ignored = tree, listed
        self.full_reads += 1
        return tree

    async def _apply(self, top: Path, tree: str, paths: list[str], filemode: bool) -> str:
        """``tree`` with the paths brought up to date: a directory's files are listed (a
        directory holding only ignored files is no error, and entries of files gone from
        it go), ignored files left out (a file the tree holds is never ignored, as a file
        the index tracks), what is gone dropped."""
        if not paths:
            return tree
        files, dropped = await trio.to_thread.run_sync(_expand, top, paths)
        if files:
            new = set(files) - await self.store.tracked(top, tree, files)
            if new:
                ignored = await self._ignored(top, sorted(new))
                files = [f for f in files if f not in ignored]
        return await self.store.apply(top, tree, Change(dropped, files), filemode=filemode)

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
    BLOCKS."""
    files: list[str] = []
    dropped: list[str] = []
    for path in paths:
        full = top / path
        if full.is_symlink() or full.is_file():
            files.append(path)
        elif full.is_dir():
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
        else:
            dropped.append(path)
    return files, dropped


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _nul(paths: list[str]) -> bytes:
    return b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)
