"""A snapshot tree made from the previous one: only the files that changed are read, and
only the directories along their paths are written again.

What ``git add`` into an index and ``git write-tree`` would give, without an index: on a
20,000-file worktree both read (and ``add`` writes) a 1.6 MB index, which is most of what
a listing costs when 32 sessions are looked at together. Here the changed files are hashed
(``git hash-object -w --stdin-paths``, so the repository's filters apply as for ``add``),
each directory along their paths is the previous tree's entries with the changes made, and
the new trees are written in one ``git mktree --batch``, which must name each tree as it
was computed here (anything else is an error, and the caller reads everything instead).

What is kept as ``git add`` keeps it: the mode from the file (executable or not; with
``core.fileMode`` off, the previous mode), a symbolic link as a link, a path replaced by a
directory or a directory by a file. What this does not do — a nested repository, a path
inside a submodule or through a link, a name git refuses — raises :class:`Unsupported`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

import attrs
import trio

from .errors import GitFailed
from .gitproc import run_git

__all__ = ["Change", "TreeStore", "Unsupported"]

TREE = "40000"
LINK = "120000"
GITLINK = "160000"
REGULAR = "100644"
EXECUTABLE = "100755"

#: A directory's entries: name → (mode, object name in hex).
Entries = dict[bytes, tuple[str, str]]
Path_ = tuple[bytes, ...]


class Unsupported(Exception):
    """What a read of the changed paths cannot follow: the caller reads everything."""


@attrs.frozen
class Change:
    """The paths gone (their entries, and everything under them, dropped first) and the
    files to take as they are on disk now, relative to the top, as git names them."""

    dropped: list[str]
    files: list[str]


#: Names git refuses anywhere in a path (``verify_path``, with its NTFS rules, which it
#: applies on every system): ``.git`` and what Windows would take for it.
_DOTGIT = re.compile(rb"(\.git|git~1)[. ]*([:\\].*)?", re.IGNORECASE | re.DOTALL)


def _parts(path: str) -> Path_:
    parts = tuple(p.encode("utf-8", "surrogateescape") for p in path.split("/"))
    for part in parts:
        # A backslash: git's NTFS rules look at what follows it too; leave those to git.
        if not part or part in (b".", b"..") or b"\\" in part or _DOTGIT.fullmatch(part):
            raise Unsupported(f"a name git does not take: {path!r}")
    return parts


def _key(item: tuple[bytes, tuple[str, str]]) -> bytes:
    name, (mode, _) = item
    return name + b"/" if mode == TREE else name


def _body(entries: Entries) -> bytes:
    return b"".join(
        mode.encode() + b" " + name + b"\0" + bytes.fromhex(sha)
        for name, (mode, sha) in sorted(entries.items(), key=_key)
    )


def _name(body: bytes) -> str:
    return hashlib.sha1(b"tree %d\0" % len(body) + body, usedforsecurity=False).hexdigest()


def _mode(text: str) -> str:
    """A tree entry's mode as an index holds it (an old tree may say 100664 or 040000)."""
    value = int(text, 8)
    kind = value & 0o170000
    if kind == 0o100000:
        return EXECUTABLE if value & 0o100 else REGULAR
    return {0o040000: TREE, 0o120000: LINK, 0o160000: GITLINK}.get(kind, text)


def _parse(body: bytes) -> Entries:
    entries: Entries = {}
    at = 0
    while at < len(body):
        space = body.index(b" ", at)
        nul = body.index(b"\0", space)
        mode = _mode(body[at:space].decode())
        entries[body[space + 1 : nul]] = (mode, body[nul + 1 : nul + 21].hex())
        at = nul + 21
    return entries


def _quoted(path: str) -> bytes:
    """A path as ``--stdin-paths`` reads it: one line, C-quoted (octal escapes) when it
    holds a control character or starts with a quote."""
    raw = path.encode("utf-8", "surrogateescape")
    if not raw.startswith(b'"') and all(b >= 0x20 for b in raw):
        return raw + b"\n"
    escaped = b"".join(b"\\%03o" % b if b < 0x20 or b in b'"\\' else bytes([b]) for b in raw)
    return b'"' + escaped + b'"\n'


@attrs.define(eq=False)
class TreeStore:
    """Trees read from (or written to) the object store, by name: a tree never changes, so
    what one worktree's snapshot read serves every other's. Bounded: forgotten all at once
    past :attr:`limit` entries."""

    #: Entries held at most (about 150 bytes each).
    limit: int = 200_000
    _trees: dict[str, Entries] = attrs.Factory(dict)
    _held: int = 0

    def _keep(self, name: str, entries: Entries) -> None:
        if self._held + len(entries) > self.limit:
            self._trees.clear()
            self._held = 0
        if name not in self._trees:
            self._held += len(entries)
        self._trees[name] = entries

    async def _read(self, top: Path, names: set[str]) -> dict[str, Entries]:
        found = {n: self._trees[n] for n in names if n in self._trees}
        wanted = sorted(names - found.keys())
        if not wanted:
            return found
        result = await run_git(
            ["cat-file", "--batch"], cwd=top, stdin="".join(n + "\n" for n in wanted).encode()
        )
        out = result.stdout.encode("utf-8", "surrogateescape")
        at = 0
        for name in wanted:
            end = out.index(b"\n", at)
            header = out[at:end].decode().split(" ")
            if len(header) != 3 or header[0] != name or header[1] != "tree":
                raise Unsupported(f"{name} is not a tree here")
            size = int(header[2])
            found[name] = _parse(out[end + 1 : end + 1 + size])
            self._keep(name, found[name])
            at = end + 1 + size + 1
        return found

    async def _before(
        self, top: Path, root: str, dirs: set[Path_], dropped: set[Path_]
    ) -> dict[Path_, tuple[str, Entries] | None]:
        """Each directory's tree before (None: there was none, or it was dropped), read a
        level at a time from the root down."""
        before: dict[Path_, tuple[str, Entries] | None] = {}
        level: dict[Path_, str | None] = {(): root}
        while level:
            read = await self._read(top, {name for name in level.values() if name})
            for d, name in level.items():
                before[d] = (name, read[name]) if name else None
            level = {}
            for d in dirs:
                if d and d[:-1] in before and d not in before:
                    up = before[d[:-1]]
                    mode, sha = up[1].get(d[-1], ("", "")) if up else ("", "")
                    if mode == GITLINK:
                        raise Unsupported(f"{_text(d)!r} is a submodule")
                    gone = any(d[:n] in dropped for n in range(1, len(d) + 1))
                    level[d] = sha if mode == TREE and not gone else None
        return before

    async def apply(self, top: Path, root: str, change: Change, *, filemode: bool) -> str:
        """The tree of ``top`` now, given ``root`` (its tree before) and what changed."""
        dropped = {_parts(p) for p in change.dropped}
        files = {_parts(p): p for p in change.files}
        dirs = _dirs(dropped) | _dirs(files)
        before = await self._before(top, root, dirs, dropped)
        work = {d: dict(b[1]) if (b := before[d]) else {} for d in dirs}
        # Each file's mode before anything was dropped (as the index still holds it).
        earlier = {p: b[1].get(p[-1], ("", ""))[0] if (b := before[p[:-1]]) else "" for p in files}
        if dropped:
            undropped = await self._before(top, root, _dirs(files), set())
            for p in files:
                up = undropped[p[:-1]]
                earlier[p] = up[1].get(p[-1], ("", ""))[0] if up else ""
        for path in dropped:
            work[path[:-1]].pop(path[-1], None)
        modes = await trio.to_thread.run_sync(_modes, top, files, earlier, filemode)
        for path, entry in (await _blobs(top, files, modes)).items():
            work[path[:-1]][path[-1]] = entry
        written: list[tuple[str, Entries]] = []
        names: dict[Path_, str] = {}
        for d in sorted(dirs, key=len, reverse=True):
            entries, was = work[d], before[d]
            if was and entries == was[1]:
                names[d] = was[0]
            elif entries:
                names[d] = _name(_body(entries))
                written.append((names[d], entries))
            if not d:
                break
            parent = work[d[:-1]]
            if d in files:
                continue  # a file there now: what is on disk wins
            if d in names:
                parent[d[-1]] = (TREE, names[d])
            elif parent.get(d[-1], ("",))[0] == TREE:
                del parent[d[-1]]  # nothing left in it
        if () not in names:
            raise Unsupported("nothing left in the tree")
        await self._write(top, written)
        return names[()]

    async def _write(self, top: Path, trees: list[tuple[str, Entries]]) -> None:
        """Write the trees (children before parents) and check git names them alike."""
        if not trees:
            return
        listing = b"\0".join(
            b"".join(
                b"%s %s %s\t%s\0" % (mode.encode(), _KIND[mode], sha.encode(), name)
                for name, (mode, sha) in entries.items()
            )
            for _, entries in trees
        )
        out = await run_git(["mktree", "-z", "--batch"], cwd=top, stdin=listing + b"\0")
        made = out.stdout.split()
        expected = [name for name, _ in trees]
        if made != expected:
            raise GitFailed(("git", "mktree"), 0, f"trees named {made}, expected {expected}")
        for name, entries in trees:
            self._keep(name, entries)


_KIND = {TREE: b"tree", GITLINK: b"commit", LINK: b"blob", REGULAR: b"blob", EXECUTABLE: b"blob"}


def _text(path: Path_) -> str:
    return "/".join(p.decode("utf-8", "surrogateescape") for p in path)


def _dirs(paths: Iterable[Path_]) -> set[Path_]:
    """Every directory above the paths, the top (``()``) included."""
    dirs: set[Path_] = {()}
    for path in paths:
        dirs.update(path[:n] for n in range(1, len(path)))
    return dirs


def _modes(
    top: Path, files: dict[Path_, str], earlier: dict[Path_, str], filemode: bool
) -> dict[Path_, str]:
    """Each file's mode as ``git add`` sets it (``earlier``: its mode in the tree before,
    or ""). BLOCKS."""
    modes: dict[Path_, str] = {}
    for path, name in files.items():
        try:
            st = os.lstat(top / name)
            for n in range(1, len(path)):
                if not stat.S_ISDIR(os.lstat(top / _text(path[:n])).st_mode):
                    raise Unsupported(f"{name!r} is reached through a link")
        except FileNotFoundError as exc:
            raise Unsupported(f"{name!r} went away while being read") from exc
        if stat.S_ISLNK(st.st_mode):
            if path[-1].lower().startswith((b".gitmodules", b"gitmod~", b"gi7eba~")):
                raise Unsupported(f"{name!r}: git takes no link by that name")
            modes[path] = LINK
        elif not stat.S_ISREG(st.st_mode):
            raise Unsupported(f"{name!r} is a nested repository or not a file")
        elif filemode:
            modes[path] = EXECUTABLE if st.st_mode & stat.S_IXUSR else REGULAR
        else:
            modes[path] = earlier[path] if earlier[path] in (REGULAR, EXECUTABLE) else REGULAR
    return modes


async def _blobs(
    top: Path, files: dict[Path_, str], modes: dict[Path_, str]
) -> dict[Path_, tuple[str, str]]:
    """Each file's entry: its content hashed (and written) as ``git add`` does, the
    repository's filters applied; a link's blob is what it points to."""
    shas: dict[Path_, str] = {}
    plain = [p for p in files if modes[p] != LINK]
    links = [p for p in files if modes[p] == LINK]
    if plain:
        listed = b"".join(_quoted(files[p]) for p in plain)
        out = await run_git(["hash-object", "-w", "--stdin-paths"], cwd=top, stdin=listed)
        shas.update(zip(plain, out.stdout.split(), strict=True))
    if links:

        def targets(scratch: str) -> bytes:
            for n, path in enumerate(links):
                (Path(scratch) / str(n)).write_bytes(os.fsencode(os.readlink(top / files[path])))
            return b"".join(_quoted(str(Path(scratch) / str(n))) for n in range(len(links)))

        with tempfile.TemporaryDirectory(prefix="rcd-links-") as scratch:
            listed = await trio.to_thread.run_sync(targets, scratch)
            out = await run_git(
                ["hash-object", "-w", "--no-filters", "--stdin-paths"], cwd=top, stdin=listed
            )
        shas.update(zip(links, out.stdout.split(), strict=True))
    return {p: (modes[p], shas[p]) for p in files}
