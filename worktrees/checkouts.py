"""The checkouts a merge moves, and what must stop it: their own work in the files it
changes, a rebase or bisect of the branch in progress, and hooks a session could have
written (see :mod:`worktrees.landing`)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import trio

from .changes import run_git_text as _git
from .errors import GitFailed

__all__ = ["checkouts_of", "dirty_paths", "hook_options", "in_the_middle"]


async def hook_options(cwd: Path) -> list[str]:
    """``-c core.hooksPath=/dev/null`` when the repository's hooks live in a working tree
    (a relative ``core.hooksPath``, as husky sets): a session's agent could have written
    them, and the daemon runs them outside any sandbox. Hooks in the repository's git
    directory (the sandbox keeps those read only) or outside the repository run."""
    try:
        found = await _git(
            cwd, "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir",
            "--git-path", "hooks",
        )  # fmt: skip
    except GitFailed:  # a hooks path git cannot even name here: none run, the safe side
        return ["-c", "core.hooksPath=/dev/null"]
    top, common, hooks = (Path(p) for p in found.splitlines()[:3])
    main_top = common.parent if common.name == ".git" else top
    inside = any(h.is_relative_to(t) for h in (hooks,) for t in (top, main_top))
    if inside and not hooks.is_relative_to(common):
        return ["-c", "core.hooksPath=/dev/null"]
    return []


async def checkouts_of(root: Path, branch: str) -> list[Path]:
    found, path = [], None
    for line in (await _git(root, "worktree", "list", "--porcelain", "-z")).split("\0"):
        if line.startswith("worktree "):
            path = Path(line.removeprefix("worktree "))
        elif line == f"branch refs/heads/{branch}" and path is not None:
            found.append(path)
    return found


async def dirty_paths(checkout: Path) -> set[str]:
    out = await _git(checkout, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    fields, paths, i = out.split("\0"), set(), 0
    while i < len(fields) and fields[i]:
        entry = fields[i]
        paths.add(entry[3:])
        i += 2 if entry[0] in "RC" else 1  # a rename's source follows
        if entry[0] in "RC":
            paths.add(fields[i - 1])
    return paths


async def in_the_middle(root: Path, target: str) -> str | None:
    """What a checkout of the repository is doing with ``target`` (a rebase, a bisect),
    during which it shows as on no branch; None when nothing."""
    common = Path(
        (await _git(root, "rev-parse", "--path-format=absolute", "--git-common-dir")).strip()
    )
    ref = f"refs/heads/{target}"

    def look() -> str | None:
        dirs = [common, *(common / "worktrees").glob("*")]
        for git_dir in dirs:
            for state in ("rebase-merge", "rebase-apply"):
                with contextlib.suppress(OSError):
                    if (git_dir / state / "head-name").read_text().strip() == ref:
                        return f"being rebased in {git_dir}"
            with contextlib.suppress(OSError):
                if (git_dir / "BISECT_START").read_text().strip() in (target, ref):
                    return f"being bisected in {git_dir}"
        return None

    return await trio.to_thread.run_sync(look)
