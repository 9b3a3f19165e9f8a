"""Landing a session's work: commit it, merge its branch, push it, or discard it.

The rules that keep everyone's work safe:

- A merge is made without a working tree (``git merge-tree --write-tree``, then
  ``git commit-tree``), so a conflict is found before anything moves: it is refused with
  the conflicting files and nothing is written. The branch it lands on is then moved by a
  fast-forward: ``git merge --ff-only`` in the checkout that has it (the main checkout,
  usually), which never leaves a merge half-done, and never before checking that none of
  that checkout's uncommitted or untracked files is one the merge changes; or
  ``git update-ref`` with the old value when no checkout has it.
- A merge needs the session's work committed; a discard needs the caller to repeat the
  token that names exactly what will be lost (:func:`discard_loss`): if the work changed
  since, the token no longer matches and nothing is removed.
- Mutations of the repository's refs take the repository's lock, as worktree creations do.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import attrs
import structlog
import trio

from . import gitread
from .changes import readable, snapshot
from .checkouts import checkouts_of, dirty_paths, hook_options, in_the_middle
from .commit import Landed, LandingRefused, commit_all, short_commit
from .errors import GitFailed
from .gitproc import run_git
from .manager import Worktrees
from .models import Worktree

__all__ = [
    "BranchFacts",
    "Landed",
    "LandingRefused",
    "Loss",
    "branch_facts",
    "commit_all",
    "discard",
    "discard_loss",
    "merge",
    "merge_target",
    "push",
]

log = structlog.get_logger("worktrees.landing")

#: Seconds a push may take (a remote over the network).
PUSH_TIMEOUT = 120.0
_LISTED = 10


def _listing(files: list[str]) -> str:
    shown = ", ".join(readable(f) for f in files[:_LISTED])
    return shown + (f" and {len(files) - _LISTED} more" if len(files) > _LISTED else "")


async def _git(cwd: Path, *args: str, check: bool = True) -> str:
    return (await run_git(args, cwd=cwd, check=check, env={"GIT_LITERAL_PATHSPECS": "1"})).stdout


async def _rev(cwd: Path, ref: str) -> str | None:
    result = await run_git(
        ["rev-parse", "--verify", "--quiet", ref + "^{commit}"], cwd=cwd, check=False
    )
    return result.stdout.strip() or None


async def _is_ancestor(cwd: Path, older: str, newer: str) -> bool:
    result = await run_git(["merge-base", "--is-ancestor", older, newer], cwd=cwd, check=False)
    if result.returncode not in (0, 1):
        raise result.error()
    return result.returncode == 0


async def merge_target(manager: Worktrees, worktree: Worktree) -> str | None:
    """The branch a session's work merges into: the one the main checkout had when the
    worktree was made, else the one it has now."""
    recorded = await _git(
        manager.root, "config", "--get", f"branch.{worktree.branch}.rcdfrom", check=False
    )
    if recorded.strip():
        return recorded.strip()
    # The branch's whole name, not `symbolic-ref --short`'s (`heads/v1` when a tag `v1`
    # exists), as the target is looked up under refs/heads/.
    return await manager._read(gitread.current_branch, manager.root)


async def merge(manager: Worktrees, worktree: Worktree, target: str) -> Landed:
    """Merge the session's branch into ``target`` (see the module docstring); afterwards
    the branch counts as landed (its recorded base moves to its tip), so the usual
    release rules remove it once its worktree is clean."""
    root, branch = manager.root, worktree.branch
    async with manager._lock:
        exists = await trio.Path(worktree.path).is_dir()  # a kept branch may have none
        if exists and (await snapshot(worktree.path, "HEAD")).files:
            raise LandingRefused(
                "uncommitted_changes",
                "the session has uncommitted changes: commit them (or discard them) first",
            )
        tip = await _rev(root, "refs/heads/" + branch)
        onto = await _rev(root, "refs/heads/" + target)
        if tip is None:
            raise LandingRefused("no_branch", f"the branch {branch} is gone")
        if onto is None:
            raise LandingRefused("no_target", f"there is no branch {target} to merge into")
        if await _is_ancestor(root, tip, onto):
            await _landed(root, worktree, tip)
            return Landed(action="merge", summary=f"{branch} is already in {target}", commit=onto)
        if await _is_ancestor(root, onto, tip):
            new, how = tip, f"fast-forwarded {target} to {short_commit(tip)} ({branch})"
        else:
            result = await run_git(
                ["merge-tree", "--write-tree", "--name-only", "-z", "--no-messages", onto, tip],
                cwd=root,
                check=False,
            )
            fields = result.stdout.split("\0")
            if result.returncode == 1:
                conflicts = sorted({f for f in fields[1:] if f})
                raise LandingRefused(
                    "conflicts",
                    f"{branch} does not merge cleanly into {target}: {len(conflicts)}"
                    f" conflicting file(s): {_listing(conflicts)}. Nothing was changed.",
                    conflicts,
                )
            if not result.ok:
                raise result.error()
            message = f"Merge branch '{branch}' into {target}"
            new = (
                await _git(root, "commit-tree", fields[0], "-p", onto, "-p", tip, "-m", message)
            ).strip()
            how = f"merged {branch} into {target} (merge commit {short_commit(new)})"
        await _move(root, target, onto, new)
        await _landed(root, worktree, tip)
        return Landed(action="merge", summary=how, commit=new)


async def _move(root: Path, target: str, old: str, new: str) -> None:
    """Move ``target`` from ``old`` to ``new`` (a descendant), with its checkouts."""
    busy = await in_the_middle(root, target)
    if busy:
        raise LandingRefused(
            "checkout_busy", f"{target} is {busy}: finish or abort that first; nothing was changed"
        )
    checkouts = await checkouts_of(root, target)
    if not checkouts:
        await _git(root, "update-ref", "refs/heads/" + target, new, old)
        return
    changed = set((await _git(root, "diff-tree", "-r", "-z", "--name-only", old, new)).split("\0"))
    changed.discard("")
    for checkout in checkouts:
        touched = sorted(await dirty_paths(checkout) & changed)
        if touched:
            raise LandingRefused(
                "checkout_dirty",
                f"{checkout} has uncommitted changes in {len(touched)} file(s) the merge"
                f" changes: {_listing(touched)}. Commit or stash them there first;"
                " nothing was changed.",
                touched,
            )
    for checkout in checkouts:
        hooks = await hook_options(checkout)
        try:
            # Ignored files are the user's too (a local config, say): never overwritten.
            await _git(
                checkout, *hooks, "merge", "--ff-only", "--no-overwrite-ignore", "--quiet",
                "--no-stat", new,
            )  # fmt: skip
        except GitFailed as exc:
            code = "checkout_dirty" if "overwritten" in exc.stderr else "checkout_moved"
            raise LandingRefused(
                code, f"git would not move {target} in {checkout}: {exc.summary}"
            ) from exc


async def _landed(root: Path, worktree: Worktree, tip: str) -> None:
    """Record that the branch's work through ``tip`` is landed: it counts from there."""
    key = f"branch.{worktree.branch}"
    if worktree.base_commit is not None:
        started = await _git(root, "config", "--get", key + ".rcdstart", check=False)
        if not started.strip():
            await _git(root, "config", key + ".rcdstart", worktree.base_commit)
    await _git(root, "config", key + ".rcdbase", tip)


@attrs.frozen(kw_only=True)
class BranchFacts:
    """What the repository's config says of a branch, read in one call."""

    #: The commit its work started from (rcd's record; None: none).
    start: str | None = None
    #: The branch its work merges into (rcd's record; None: none).
    target: str | None = None
    #: Where it pushes: its configured remote, else ``origin``, else the only one.
    remote: str | None = None
    #: The session it was made for (rcd's record; None: none).
    session: str | None = None


#: ``git config --list`` by repository, with the stamps of the files it read.
_CONFIGS: dict[Path, tuple[object, str]] = {}


async def _config_list(cwd: Path, config_files: list[Path]) -> str:
    """``git config -z --list`` at ``cwd``, read again only when one of ``config_files``
    (the repository's own: what rcd records) changed."""
    stamps = await trio.to_thread.run_sync(lambda: [_stamp(f) for f in config_files])
    known = _CONFIGS.get(cwd)
    if config_files and known is not None and known[0] == stamps:
        return known[1]
    listed = await _git(cwd, "config", "-z", "--list")
    if config_files:
        _CONFIGS[cwd] = (stamps, listed)
    return listed


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


async def branch_facts(
    cwd: Path, branch: str | None, common_dir: Path | None = None
) -> BranchFacts:
    """:class:`BranchFacts` of ``branch`` (one ``git config --list``; given the repository's
    ``common_dir``, none while its config and the user's are as they were)."""
    config: dict[str, str] = {}
    remotes: list[str] = []
    files = [common_dir / "config", Path.home() / ".gitconfig"] if common_dir else []
    for entry in (await _config_list(cwd, files)).split("\0"):
        key, _, value = entry.partition("\n")
        config[key] = value
        if key.startswith("remote.") and key.endswith(".url"):
            remotes.append(key.removeprefix("remote.").removesuffix(".url"))
    prefix = f"branch.{branch}." if branch else None
    remote = config.get(prefix + "remote") if prefix else None
    if remote is None:
        remote = "origin" if "origin" in remotes else remotes[0] if len(remotes) == 1 else None
    if prefix is None:
        return BranchFacts(remote=remote)
    return BranchFacts(
        start=config.get(prefix + "rcdstart") or config.get(prefix + "rcdbase"),
        target=config.get(prefix + "rcdfrom"),
        session=config.get(prefix + "rcdsession"),
        remote=remote,
    )


async def push(cwd: Path, branch: str) -> Landed:
    """Push ``branch`` to its remote (see :class:`BranchFacts`); no prompt, ever."""
    remote = (await branch_facts(cwd, branch)).remote
    if remote is None:
        raise LandingRefused("no_remote", "this repository has no remote to push to")
    ref = f"refs/heads/{branch}"
    with trio.move_on_after(PUSH_TIMEOUT) as scope:
        result = await run_git(
            ["push", "--porcelain", remote, f"{ref}:{ref}"], cwd=cwd, check=False
        )
    if scope.cancelled_caught:
        raise LandingRefused("push_failed", f"pushing to {remote} took over {PUSH_TIMEOUT:.0f}s")
    if not result.ok:
        raise LandingRefused(
            "push_failed", f"git push to {remote} failed: {result.error().summary}"
        )
    return Landed(
        action="push", summary=f"pushed {branch} to {remote}", commit=await _rev(cwd, ref)
    )


@attrs.frozen(kw_only=True)
class Loss:
    """What a discard loses, in words, and the token that confirms exactly that."""

    #: What goes, e.g. "2 uncommitted file(s): a.py, b.py".
    lost: str
    token: str

    @property
    def text(self) -> str:
        return f"discarding loses {self.lost}"


async def discard_loss(manager: Worktrees, worktree: Worktree) -> Loss:
    state = await manager.inspect(worktree)
    parts = []
    uncommitted: list[str] = []
    tree = tip = ""
    if state.exists and state.registered:
        now = await snapshot(worktree.path, "HEAD")
        uncommitted, tree = [f.path for f in now.files], now.tree
        if uncommitted:
            parts.append(f"{len(uncommitted)} uncommitted file(s): {_listing(uncommitted)}")
    if state.detached_commits:
        parts.append(f"{state.detached_commits} commit(s) on a detached HEAD no branch holds")
    if state.branch_exists:
        tip = await _rev(manager.root, "refs/heads/" + worktree.branch) or ""
        if state.commits_ahead:
            parts.append(f"{state.commits_ahead} commit(s) on {worktree.branch} not landed")
    lost = " and ".join(parts) or f"nothing beyond its base ({worktree.branch} and its worktree go)"
    pinned = f"{worktree.path}\0{tree}\0{tip}\0{state.head}"
    token = hashlib.sha256(pinned.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return Loss(lost=lost, token=token)


async def discard(manager: Worktrees, worktree: Worktree, confirm: str | None) -> Landed:
    """Remove the worktree and its branch, work and all, when ``confirm`` is the token of
    :func:`discard_loss` for the work as it is now."""
    async with manager._lock:
        loss = await discard_loss(manager, worktree)
        if confirm != loss.token:
            raise LandingRefused(
                "confirmation_required",
                f"{loss.text}. To discard, confirm with {loss.token!r}"
                + (" (the work changed since the token you sent)" if confirm else ""),
            )
        if await trio.Path(worktree.path).exists() or await _registered(
            manager.root, worktree.path
        ):
            await _git(manager.root, "worktree", "remove", "--force", "--force", str(worktree.path))
        if await _rev(manager.root, "refs/heads/" + worktree.branch) is not None:
            await _git(manager.root, "branch", "-D", worktree.branch)
        await _git(
            manager.root, "config", "--remove-section", f"branch.{worktree.branch}", check=False
        )
        return Landed(action="discard", summary=f"discarded {worktree.branch}: {loss.lost}")


async def _registered(root: Path, path: Path) -> bool:
    out = await _git(root, "worktree", "list", "--porcelain", "-z")
    return f"worktree {path}" in out.split("\0")
