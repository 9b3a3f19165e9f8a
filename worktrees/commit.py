"""A commit of a session's work from a client: everything uncommitted in its directory,
with the repository's hooks (but those that live in a working tree), and nothing staged
left behind when git refuses it (see :mod:`worktrees.landing`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import attrs
import structlog
import trio

from .changes import readable, run_git_text, top_level
from .checkouts import hook_options
from .errors import GitFailed, WorktreeError
from .gitproc import run_git

__all__ = ["Landed", "LandingRefused", "commit_all", "short_commit"]

log = structlog.get_logger("worktrees.landing")


class LandingRefused(WorktreeError):
    """The action was not done, for a reason the user can act on: ``code`` names it
    (``conflicts``, ``checkout_dirty``, ``uncommitted_changes``, ``nothing_to_commit``,
    ``no_target``, ``no_remote``, ``confirmation_required``, ``push_failed``...), ``files``
    lists the files concerned."""

    def __init__(self, code: str, message: str, files: list[str] | None = None) -> None:
        self.code = code
        self.files = [readable(f) for f in files or []]
        super().__init__(message)


@attrs.frozen(kw_only=True)
class Landed:
    action: str
    #: One sentence for the session log and the client.
    summary: str
    #: The commit the action made or moved a branch to (None for a discard).
    commit: str | None = None


def short_commit(commit: str) -> str:
    return commit[:10]


async def _git(cwd: Path, *args: str, check: bool = True) -> str:
    return await run_git_text(cwd, *args, ok=(0,) if check else tuple(range(256)))


async def commit_all(cwd: Path, message: str) -> Landed:
    """Commit everything uncommitted at ``cwd`` (untracked files too) with ``message``;
    the repository's hooks run as for any commit (see :func:`_hook_options`). When git
    refuses (a hook says no), the index is put back as it was: nothing stays staged."""
    if "\0" in message:
        raise LandingRefused("bad_message", "a commit message cannot hold a NUL character")
    top = await top_level(cwd)
    index = Path(
        (await _git(top, "rev-parse", "--path-format=absolute", "--git-path", "index")).strip()
    )
    with tempfile.TemporaryDirectory(prefix="rcd-commit-") as scratch:
        saved = Path(scratch) / "index"
        had_index = await trio.to_thread.run_sync(_save, index, saved)
        # A daemon started in a subdirectory commits that directory's work only, and
        # nothing else the index holds.
        here = Path(await trio.Path(cwd).resolve())
        within = "." if here == top else str(here.relative_to(top))
        ours: str | None = None  # what the index holds once our add is done
        try:
            await _git(top, "add", "--all", "--", within)
            ours = (await _git(top, "write-tree")).strip()
            staged = await run_git(
                ["diff", "--cached", "--quiet", "--", within],
                cwd=top, check=False, env={"GIT_LITERAL_PATHSPECS": "1"},
            )  # fmt: skip
            if staged.returncode == 0:
                raise LandingRefused(
                    "nothing_to_commit", "nothing to commit: the work is committed"
                )
            hooks = await hook_options(top)
            only = [] if within == "." else ["--", within]
            try:
                await _git(top, *hooks, "commit", "--quiet", "--no-edit", "-m", message, *only)
            except GitFailed as exc:
                raise LandingRefused(
                    "commit_failed", f"git refused the commit: {exc.summary}"
                ) from exc
        except BaseException:
            with trio.CancelScope(shield=True):
                now = await run_git(["write-tree"], cwd=top, check=False)
                # Staging someone did since our add is theirs: never undone.
                if ours is None or now.stdout.strip() == ours:
                    await trio.to_thread.run_sync(_restore, saved if had_index else None, index)
                else:
                    log.warning("index_not_restored", index=str(index), reason="staged since")
            raise
    head = (await _git(top, "rev-parse", "HEAD")).strip()
    ref = (await _git(top, "symbolic-ref", "--quiet", "HEAD", check=False)).strip()
    where = f" on {ref.removeprefix('refs/heads/')}" if ref else ""  # not `--short`'s heads/x
    skipped = " (its hooks not run: they live in a working tree)" if hooks else ""
    return Landed(
        action="commit", summary=f"committed {short_commit(head)}{where}{skipped}", commit=head
    )


def _restore(saved: Path | None, index: Path) -> None:
    """Put the index back as it was before our ``git add`` (``saved``; None: there was
    none), as git writes it: by way of ``index.lock``, never under another git."""
    lock = index.with_name(index.name + ".lock")
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        log.warning("index_not_restored", index=str(index), reason="another git holds it")
        return
    try:
        with os.fdopen(fd, "wb") as out:
            if saved is not None:
                out.write(saved.read_bytes())
        if saved is None:
            lock.unlink()
            index.unlink(missing_ok=True)
        else:
            shutil.copystat(saved, lock)  # its own mtime: git's racily-clean rule
            os.replace(lock, index)
    except BaseException:
        lock.unlink(missing_ok=True)
        raise


def _save(index: Path, saved: Path) -> bool:
    try:
        shutil.copy2(index, saved)
    except FileNotFoundError:
        return False
    return True
