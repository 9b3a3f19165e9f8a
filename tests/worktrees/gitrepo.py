"""Real git repositories for the worktrees tests, and async helpers to look inside them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import trio

from worktrees import BRANCH_PREFIX

#: Guard for each test: real processes, real clock.
TIMEOUT = 15


def git_sync(cwd: Path, *args: str) -> str:
    """For sync fixtures only: run git, fail loudly, return stdout."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def make_repo(path: Path, *, commit: bool = True) -> Path:
    """``git init`` with a local identity and (by default) one commit of README.md."""
    path.mkdir(parents=True, exist_ok=True)
    git_sync(path, "init", "-q", "-b", "main")
    git_sync(path, "config", "user.name", "Test User")
    git_sync(path, "config", "user.email", "test@example.invalid")
    if commit:
        (path / "README.md").write_text("hello\n")
        git_sync(path, "add", "README.md")
        git_sync(path, "commit", "-q", "-m", "first")
    return path


async def git(cwd: Path, *args: str, check: bool = True) -> str:
    """Run git from an async test; returns stdout (stripped)."""
    done = await trio.run_process(
        ["git", *args], cwd=cwd, capture_stdout=True, capture_stderr=True, check=False
    )
    if check:
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr.decode()}"
    return done.stdout.decode().strip()


async def commit_file(cwd: Path, name: str, text: str = "work\n") -> str:
    """Write, add and commit one file in ``cwd``; returns the new commit."""
    await trio.Path(cwd / name).write_text(text)
    await git(cwd, "add", name)
    await git(cwd, "commit", "-q", "-m", f"add {name}")
    return await git(cwd, "rev-parse", "HEAD")


async def rcd_branches(repo: Path) -> set[str]:
    out = await git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/rcd")
    return {b for b in out.split() if b.startswith(BRANCH_PREFIX)}


async def registered_worktrees(repo: Path) -> set[Path]:
    """Paths of the linked worktrees git knows (the main one excluded)."""
    out = await git(repo, "worktree", "list", "--porcelain")
    paths = [
        Path(line.split(" ", 1)[1]) for line in out.splitlines() if line.startswith("worktree ")
    ]
    return set(paths[1:])


async def recorded_bases(repo: Path) -> dict[str, str]:
    out = await git(repo, "config", "--get-regexp", r"^branch\..*\.rcdbase$", check=False)
    pairs = (line.split(" ", 1) for line in out.splitlines())
    return {k.removeprefix("branch.").removesuffix(".rcdbase"): v for k, v in pairs}


async def worktree_dirs(repo: Path) -> set[str]:
    directory = trio.Path(repo / ".rcd" / "worktrees")
    if not await directory.exists():
        return set()
    return {p.name for p in await directory.iterdir()}
