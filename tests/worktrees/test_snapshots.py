"""worktrees.snapshots: a snapshot that reads only what changed is always the one a full
read gives — whatever the session did to its files in between."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from worktrees import Worktrees
from worktrees.changes import snapshot, snapshot_tree
from worktrees.snapshots import Snapshots
from worktrees.trees import TreeStore
from worktrees.watch import TreeWatcher

from .gitrepo import TIMEOUT, git, git_sync, make_repo

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="inotify is Linux's: elsewhere every read is full"
)


def test_the_watcher_works_here() -> None:
    """On Linux the watcher must run (a missing inotify_simple fails here, never skips)."""
    assert TreeWatcher().available, (
        "inotify_simple is missing: install the test setup (pip install -e '.[test]')"
    )


NAMES = ["a.py", "b b.txt", "-rf", "ünï.txt", ":(glob)*", "x.log", "new\nline", '"q\\t', "é"]
DIRS = ["", "src", "src/deep", "new dir", "build"]


async def _full_tree(top: Path) -> str:
    index = Path(await git(top, "rev-parse", "--path-format=absolute", "--git-path", "index"))
    return await snapshot_tree(top, index)


async def _apply(top: Path, op: tuple[str, int, int]) -> None:
    # A file where the step wants a directory, or the other way round: a no-op.
    with contextlib.suppress(FileExistsError, NotADirectoryError, IsADirectoryError):
        await _change(top, op)


async def _change(top: Path, op: tuple[str, int, int]) -> None:
    kind, d, n = op
    folder = top / DIRS[d % len(DIRS)]
    path = folder / NAMES[n % len(NAMES)]
    if kind == "write":
        await trio.Path(folder).mkdir(parents=True, exist_ok=True)
        await trio.Path(path).write_text(f"{kind} {d} {n}\n")
    elif kind == "same-size":
        if await trio.Path(path).is_file():
            text = await trio.Path(path).read_text()
            await trio.Path(path).write_text(text[::-1])
    elif kind == "delete":
        if await trio.Path(path).is_file():
            await trio.Path(path).unlink()
    elif kind == "rmdir":
        if d % len(DIRS) and await trio.Path(folder).is_dir():
            await trio.to_thread.run_sync(shutil.rmtree, folder)
    elif kind == "rename":
        if await trio.Path(path).is_file():
            target = top / DIRS[(d + 1) % len(DIRS)]
            await trio.Path(target).mkdir(parents=True, exist_ok=True)
            await trio.Path(path).rename(target / f"moved {n}")
    elif kind == "chmod":
        if await trio.Path(path).is_file():
            os.chmod(path, 0o755 if n % 2 else 0o644)
    elif kind == "replace":  # a file becomes a directory, or a directory a file
        if d % len(DIRS) and await trio.Path(folder).is_dir():
            await trio.to_thread.run_sync(shutil.rmtree, folder)
            await trio.Path(folder).write_text("was a directory\n")
        elif await trio.Path(path).is_file() and not os.path.islink(path):
            await trio.Path(path).unlink()
            await trio.Path(path).mkdir()
            await trio.Path(path / "inside.txt").write_text("was a file\n")
    elif kind == "retarget":  # a link to a file, then to another
        await trio.Path(folder).mkdir(parents=True, exist_ok=True)
        link = folder / "file link"
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(NAMES[n % len(NAMES)], link)
    elif kind == "nested":  # a repository inside: git takes it as one entry
        nested = folder / f"nested {n}"
        if not os.path.lexists(nested):
            make_repo(nested)
    elif kind == "ignore":
        await trio.Path(top / ".gitignore").write_text(f"*.log\n{DIRS[d % len(DIRS)] or 'x'}/\n")
    elif kind == "link":  # a link to a directory is one entry, never followed
        await trio.Path(folder).mkdir(parents=True, exist_ok=True)
        link = folder / f"link {n}"
        if not os.path.lexists(link):
            os.symlink("..", link)
    elif kind == "force":  # the agent's index takes an ignored file, or lets it go
        await trio.Path(top / "forced.log").write_text(f"{d}\n")
        if n % 2:
            await git(top, "add", "-f", "forced.log")
        else:
            await git(top, "rm", "-q", "-f", "--cached", "--ignore-unmatch", "forced.log")
    elif kind == "exclude":
        exclude = Path(await git(top, "rev-parse", "--path-format=absolute", "--git-path",
                                 "info/exclude"))  # fmt: skip
        await trio.Path(exclude).write_text(f"{NAMES[n % len(NAMES)]}\n")
    elif kind == "commit":
        await git(top, "add", "-A")
        await git(top, "commit", "-q", "--allow-empty", "-m", "step")


OPS = st.tuples(
    st.sampled_from(
        [
            "write",
            "same-size",
            "delete",
            "rmdir",
            "rename",
            "chmod",
            "replace",
            "retarget",
            "nested",
            "ignore",
            "link",
            "force",
            "exclude",
            "commit",
        ]
    ),
    st.integers(0, 10),
    st.integers(0, 10),
)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
# Found: a directory holding only ignored files is not an ignored directory.
@example(ops=[[("write", 3, 5)], [("write", 3, 2)]], filemode=True)
# Found: a directory git ignored, then no longer does.
@example(
    ops=[[("ignore", 1, 0), ("write", 2, 1)], [("ignore", 0, 0)], [("write", 1, 2)]], filemode=True
)
# A file made a directory and back, a link pointed elsewhere, modes with core.fileMode off.
@example(
    ops=[[("write", 1, 0)], [("replace", 0, 0)], [("replace", 1, 0), ("retarget", 2, 3)]],
    filemode=True,
)
@example(ops=[[("write", 0, 0)], [("chmod", 0, 1)], [("chmod", 0, 0)]], filemode=False)
@given(
    ops=st.lists(st.lists(OPS, min_size=1, max_size=4), min_size=2, max_size=5),
    filemode=st.booleans(),
)
def test_a_read_of_what_changed_equals_a_full_read(
    tmp_path_factory: pytest.TempPathFactory,
    ops: list[list[tuple[str, int, int]]],
    filemode: bool,
) -> None:
    root = tmp_path_factory.mktemp("snap")
    repo = make_repo(root / "repo")
    git_sync(repo, "config", "core.fileMode", str(filemode).lower())
    (repo / ".gitignore").write_text("*.log\nbuild/\n")

    async def main() -> None:
        with trio.fail_after(TIMEOUT * 4):
            snaps = Snapshots(scratch=root / "scratch")
            base = await git(repo, "rev-parse", "HEAD")
            try:
                await _steps(snaps, base)
            finally:
                snaps.close()

    async def _steps(snaps: Snapshots, base: str) -> None:
        for batch in ops:
            for op in batch:
                await _apply(repo, op)
            watched = await snaps.tree(repo, Path(await _index(repo)))
            assert watched == await _full_tree(repo), repr(ops)  # every batch so far
        seen = await snapshot(repo, base, snapshots=snaps)
        plain = await snapshot(repo, base)
        assert seen.files == plain.files
        # A nested repository is read in full for as long as it is there, and every tree
        # with core.fileMode off (a mode then comes from the agent's index).
        nested = any(op[0] == "nested" for b in ops for op in b)
        assert snaps.partial_reads > 0 or nested or not filemode

    trio.run(main)


async def _index(top: Path) -> str:
    return await git(top, "rev-parse", "--path-format=absolute", "--git-path", "index")


@pytest.fixture
def closing() -> Iterator[list[Snapshots]]:
    made: list[Snapshots] = []
    yield made
    for snaps in made:
        snaps.close()


async def test_a_worktree_made_again_at_the_same_path_is_read_anew(
    repo: Path, tmp_path: Path, closing: list[Snapshots]
) -> None:
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(repo)
        first = await manager.create("again", "s1")
        snaps = Snapshots(scratch=tmp_path / "scratch")
        closing.append(snaps)
        base = await git(repo, "rev-parse", "HEAD")
        assert (await snapshot(first.path, base, snapshots=snaps)).files == []
        await manager.release(first)
        second = await manager.create("again", "s2")
        assert second.path == first.path
        await trio.Path(second.path / "README.md").write_text("hello\n")  # unchanged size...
        await trio.Path(second.path / "new.txt").write_text("new\n")
        seen = await snapshot(second.path, base, snapshots=snaps)
        assert [f.path for f in seen.files] == ["new.txt"]
        assert snaps.full_reads == 2


async def test_too_many_directories_are_read_in_full(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closing: list[Snapshots]
) -> None:
    with trio.fail_after(TIMEOUT):
        monkeypatch.setattr("worktrees.watch.MAX_WATCHES", 2)
        for n in range(4):
            await trio.Path(repo / f"d{n}").mkdir()
        snaps = Snapshots(scratch=tmp_path / "scratch")
        closing.append(snaps)
        base = await git(repo, "rev-parse", "HEAD")
        for n in range(3):
            await trio.Path(repo / f"d{n}" / "f.txt").write_text(f"{n}\n")
            seen = await snapshot(repo, base, snapshots=snaps)
            assert len(seen.files) == n + 1
        assert (snaps.full_reads, snaps.partial_reads) == (3, 0)


async def test_a_moved_worktree_keeps_its_watches_and_its_old_path_gets_new_ones(
    repo: Path, tmp_path: Path, closing: list[Snapshots]
) -> None:
    """A spare moved into place (or a worktree recycled) is the same directory, with the
    same watches: they follow it, and whatever is made at the old path is watched anew."""
    with trio.fail_after(TIMEOUT):
        manager = await Worktrees.open(repo)
        first = await manager.create("moving", "s1")
        snaps = Snapshots(scratch=tmp_path / "scratch")
        closing.append(snaps)
        base = await git(repo, "rev-parse", "HEAD")
        assert (await snapshot(first.path, base, snapshots=snaps)).files == []
        moved = first.path.with_name("moved")
        await git(repo, "worktree", "move", str(first.path), str(moved))
        assert (await snapshot(moved, base, snapshots=snaps)).files == []
        await trio.Path(moved / "root.txt").write_text("at the top\n")
        seen = await snapshot(moved, base, snapshots=snaps)
        assert [f.path for f in seen.files] == ["root.txt"]
        await git(repo, "worktree", "add", "-q", "--detach", str(first.path), "HEAD")
        again = first
        assert (await snapshot(again.path, base, snapshots=snaps)).files == []
        await trio.Path(moved / "more.txt").write_text("more\n")
        await trio.Path(again.path / "other.txt").write_text("other\n")
        assert [f.path for f in (await snapshot(moved, base, snapshots=snaps)).files] == [
            "more.txt",
            "root.txt",
        ]
        assert [f.path for f in (await snapshot(again.path, base, snapshots=snaps)).files] == [
            "other.txt"
        ]


async def test_a_read_cancelled_midway_is_made_whole_by_the_next(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closing: list[Snapshots]
) -> None:
    """The changed paths a cancelled read had taken are in no tree: the next read must not
    start from the last one as if they had not changed."""
    with trio.fail_after(TIMEOUT):
        snaps = Snapshots(scratch=tmp_path / "scratch")
        closing.append(snaps)
        base = await git(repo, "rev-parse", "HEAD")
        assert (await snapshot(repo, base, snapshots=snaps)).files == []
        await trio.Path(repo / "made.txt").write_text("made\n")
        stuck = trio.Event()
        apply = TreeStore.apply

        async def hang(*args: object, **kwargs: object) -> str:
            stuck.set()
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        monkeypatch.setattr(TreeStore, "apply", hang)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(snapshot, repo, base, snapshots=snaps))
            await stuck.wait()
            nursery.cancel_scope.cancel()
        monkeypatch.setattr(TreeStore, "apply", apply)
        seen = await snapshot(repo, base, snapshots=snaps)
        assert [f.path for f in seen.files] == ["made.txt"]
