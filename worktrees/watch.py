"""Which files of a working tree changed since its last snapshot, so the next one reads only
those: what git's stat pass over every file (20,000 on a large repository, for each of 32
sessions) would otherwise find out again each time.

One inotify instance serves every tracked tree (an instance is a scarce, per-user resource);
each directory has a watch, except ``.git``, ``.rcd`` (the other sessions' worktrees) and
directories git ignores. Events are read only when a snapshot is taken, never in between:
the kernel queues them, so a change made before a snapshot is always seen by it. When
anything cannot be followed — the queue overflowed, a ``.gitignore`` changed, too many
directories, not Linux — the tree is marked for a full read, which is always right.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import attrs
import structlog

__all__ = ["Tracked", "TreeWatcher"]

log = structlog.get_logger("worktrees.watch")

#: Directories watched per tree at most; past it the tree is always read in full.
MAX_WATCHES = 20_000
#: Changed paths one snapshot takes by name at most; past it, a full read is cheaper.
MAX_DIRTY = 2_000
_SKIPPED = frozenset({".git", ".rcd"})

if sys.platform == "linux":  # pragma: no branch
    try:
        from inotify_simple import INotify, flags  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - a dependency on Linux
        INotify = None
else:  # pragma: no cover
    INotify = None


@attrs.define(eq=False)
class Tracked:
    """One working tree: the paths (relative to ``top``) changed since its last snapshot."""

    top: Path
    #: Read everything next time (the first time, and whenever events were lost).
    full: bool = True
    dirty: set[str] = attrs.Factory(set)
    #: New directories whose ignore status is not known yet (see :meth:`TreeWatcher.adopt`).
    new_dirs: set[str] = attrs.Factory(set)
    watches: dict[int, str] = attrs.Factory(dict)
    #: Too many directories: not watched, always read in full.
    given_up: bool = False
    #: The directory's device and inode when watching began.
    ident: tuple[int, int] = (0, 0)
    #: The agent's index and the rules and config files as last seen (worktrees.snapshots).
    stamps: tuple[Any, Any] | None = None

    def take(self) -> list[str] | None:
        """The paths to read now (None: all), and start collecting anew."""
        if self.full or self.given_up or len(self.dirty) > MAX_DIRTY:
            paths = None
        else:
            paths = sorted(self.dirty)
        self.full = False
        self.dirty.clear()
        return paths


@attrs.define(eq=False)
class TreeWatcher:
    """Follows changes in any number of working trees (see the module docstring)."""

    _inotify: object | None = None
    _trees: dict[Path, Tracked] = attrs.Factory(dict)
    _by_wd: dict[int, tuple[Tracked, str]] = attrs.Factory(dict)
    _failed: bool = False

    @property
    def available(self) -> bool:
        return INotify is not None and not self._failed

    def _instance(self) -> object | None:
        if self._inotify is None and self.available:
            try:
                self._inotify = INotify(nonblocking=True)
            except OSError as exc:  # out of instances: read in full, always
                log.warning("inotify_unavailable", error=str(exc))
                self._failed = True
        return self._inotify

    def known(self, top: Path) -> bool:
        """Whether ``top`` is followed, as the directory it is now: a worktree made again
        at the same path (a slug used again, a spare moved there) is another directory,
        whose changes the old watches never see. BLOCKS (a stat)."""
        tree = self._trees.get(top)
        if tree is not None and tree.ident != _ident(top):
            self.forget(top)
            return False
        return tree is not None

    def tracked(self, top: Path, ignored: frozenset[str] = frozenset()) -> Tracked:
        """The tree at ``top`` (watched from now on, but its ``ignored`` directories; the
        first snapshot reads it all). BLOCKS (it lists the tree's directories)."""
        tree = self._trees.get(top)
        if tree is None:
            tree = self._trees[top] = Tracked(top=top, ident=_ident(top))
            self._watch_tree(tree, "", ignored)
        return tree

    def close(self) -> None:
        """Stop following every tree (the inotify instance is closed)."""
        inotify, self._inotify = self._inotify, None
        self._trees.clear()
        self._by_wd.clear()
        if inotify is not None:
            inotify.close()  # type: ignore[attr-defined]

    def forget(self, top: Path) -> None:
        tree = self._trees.pop(top, None)
        if tree is not None:
            self._unwatch(tree)

    def _unwatch(self, tree: Tracked) -> None:
        """Remove the tree's watches (those another tree took over stay theirs)."""
        for wd in list(tree.watches):
            tree.watches.pop(wd, None)
            if self._by_wd.get(wd, (None, ""))[0] is not tree:
                continue
            del self._by_wd[wd]
            if self._inotify is not None:
                with contextlib.suppress(OSError):  # the directory is gone, its watch too
                    self._inotify.rm_watch(wd)  # type: ignore[attr-defined]

    def _watch_tree(
        self, tree: Tracked, relative: str, ignored: frozenset[str] = frozenset()
    ) -> None:
        inotify = self._instance()
        if inotify is None or tree.given_up:
            tree.given_up = True
            return
        mask = (
            flags.MODIFY | flags.ATTRIB | flags.CLOSE_WRITE | flags.MOVED_FROM | flags.MOVED_TO
            | flags.CREATE | flags.DELETE | flags.DELETE_SELF | flags.MOVE_SELF | flags.ONLYDIR
        )  # fmt: skip
        for directory, subdirs, _ in os.walk(tree.top / relative):
            here = os.path.relpath(directory, tree.top)
            here = "" if here == "." else here
            if here == "":
                subdirs[:] = [d for d in subdirs if d not in _SKIPPED]
            if ignored:
                prefix = here + "/" if here else ""
                subdirs[:] = [d for d in subdirs if prefix + d + "/" not in ignored]
            if len(tree.watches) >= MAX_WATCHES:
                log.info("tree_too_large_to_watch", top=str(tree.top), watches=len(tree.watches))
                tree.given_up = True
                self._unwatch(tree)  # the kernel's watches are everyone's: give them back
                return
            try:
                wd = inotify.add_watch(directory, mask)  # type: ignore[attr-defined]
            except OSError:  # gone already, or out of watches
                tree.full = True
                continue
            # The same directory has the same watch: moved here from another tree (a spare
            # taken, a worktree recycled), it is this tree's now, and the other's is stale.
            owner = self._by_wd.get(wd, (tree, ""))[0]
            if owner is not tree:
                owner.watches.pop(wd, None)
                owner.full = True
            tree.watches[wd] = here
            self._by_wd[wd] = (tree, here)

    def drain(self) -> None:
        """Read every queued event into the trees' dirty paths (never waits for one).

        Not thread-safe, like everything here: one caller at a time (the snapshots run
        every call through a limiter of one thread)."""
        inotify = self._inotify
        if inotify is None:
            return
        for event in inotify.read(timeout=0):  # type: ignore[attr-defined]
            if event.mask & flags.Q_OVERFLOW:
                # Each tree is read in full next, and watched again then (with what git
                # ignores left out) for the directories made while events were lost.
                log.info("inotify_overflow")
                for tree in self._trees.values():
                    tree.full = True
                continue
            found = self._by_wd.get(event.wd)
            if found is None:
                continue
            tree, directory = found
            if event.mask & (flags.IGNORED | flags.DELETE_SELF | flags.MOVE_SELF):
                if event.mask & flags.IGNORED:  # the watch is gone (not on a move)
                    self._by_wd.pop(event.wd, None)
                    tree.watches.pop(event.wd, None)
                if directory:
                    tree.dirty.add(directory)
                else:
                    tree.full = True  # the tree itself moved or went
                continue
            path = f"{directory}/{event.name}" if directory else event.name
            if not event.name:
                continue
            if directory == "" and event.name in _SKIPPED:
                continue
            if event.name in (".gitignore", ".gitattributes"):
                tree.full = True  # what counts as work, or how a file is taken, changed
            tree.dirty.add(path)
            if event.mask & flags.ISDIR and event.mask & (flags.CREATE | flags.MOVED_TO):
                tree.new_dirs.add(path)

    def rewatch(self, tree: Tracked, ignored: frozenset[str]) -> None:
        """Watch every directory of the tree git does not ignore now (watches it has are
        kept). BLOCKS (a walk)."""
        self._watch_tree(tree, "", ignored)

    def adopt(self, tree: Tracked, ignored: set[str]) -> None:
        """Watch the tree's new directories, but those git ignores. BLOCKS (a walk)."""
        for path in sorted(tree.new_dirs):
            if path not in ignored and (tree.top / path).is_dir():
                self._watch_tree(tree, path)
        tree.new_dirs.clear()


def _ident(path: Path) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0)
    return (st.st_dev, st.st_ino)
