"""Running git commands that change a repository, through :func:`trio.run_process`.

Mutations run as subprocesses (not through GitPython) so they can be cancelled: each git
runs in its own process group, and cancelling the call sends SIGTERM to the whole group
(git itself and any hook it started), waits :data:`TERM_GRACE` seconds, then SIGKILLs
whatever is left. ``git worktree add`` removes its half-made directory on SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import trio

from .errors import GitFailed

__all__ = ["GitResult", "TERM_GRACE", "git_env", "run_git"]

#: Seconds a cancelled git gets between SIGTERM and SIGKILL.
TERM_GRACE = 3.0

#: Variables that point git at another repository (``git rev-parse --local-env-vars``).
#: A daemon started from a git hook inherits them; they must not leak into our commands.
_REPOSITORY_ENV = frozenset(
    {
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_DIR",
        "GIT_GRAFT_FILE",
        "GIT_IMPLICIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_INTERNAL_SUPER_PREFIX",
        "GIT_NAMESPACE",
        "GIT_NO_REPLACE_OBJECTS",
        "GIT_OBJECT_DIRECTORY",
        "GIT_PREFIX",
        "GIT_REPLACE_REF_BASE",
        "GIT_SHALLOW_FILE",
        "GIT_WORK_TREE",
    }
)


@attrs.frozen(kw_only=True)
class GitResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def error(self) -> GitFailed:
        return GitFailed(self.argv, self.returncode, self.stderr)


_NICE = shutil.which("nice")


def git_env() -> dict[str, str]:
    """The environment for git: ours, minus repository overrides, with no prompts and
    untranslated messages (some are matched, e.g. 'already exists')."""
    env = {k: v for k, v in os.environ.items() if k not in _REPOSITORY_ENV}
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", LANGUAGE="C")
    return env


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, signum)


async def run_git(
    args: Sequence[str],
    *,
    cwd: Path,
    check: bool = True,
    background: bool = False,
    stdin: bytes = b"",
    env: Mapping[str, str] | None = None,
) -> GitResult:
    """Run ``git <args>`` in ``cwd`` and return its result.

    ``background`` runs git at the lowest CPU priority (``nice -n 19``): for work done
    ahead of need (spare worktrees) that must not slow the agents down. ``stdin`` is fed
    to git; ``env`` adds variables (e.g. ``GIT_INDEX_FILE``). The output is decoded as
    UTF-8 with ``surrogateescape``: a path read from it names the same file when passed
    back to git.

    Raises :class:`GitFailed` when git exits non-zero and ``check`` is true, or when git
    cannot be started at all (``returncode`` 127). Cancellation stops git and everything
    it started (see the module docstring), waits for git to exit, and then propagates.
    """
    argv = ("git", *args)
    command = argv
    if background and _NICE is not None:
        command = (_NICE, "-n", "19", *argv)
    groups: list[int] = []

    async def stop_group(process: trio.Process) -> None:
        groups.append(process.pid)
        _signal_group(process.pid, signal.SIGTERM)
        await trio.sleep(TERM_GRACE)
        _signal_group(process.pid, signal.SIGKILL)

    try:
        completed = await trio.run_process(
            command,
            cwd=cwd,
            env={**git_env(), **(env or {})},
            stdin=stdin,
            check=False,
            capture_stdout=True,
            capture_stderr=True,
            start_new_session=True,
            deliver_cancel=stop_group,
        )
    except OSError as exc:
        raise GitFailed(argv, 127, f"could not run git in {cwd}: {exc}") from exc
    except BaseException:
        # trio stops waiting for stop_group once git itself has exited; hooks git started
        # may still be running in its group and writing into the worktree: end them now.
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)
        raise
    result = GitResult(
        argv=argv,
        returncode=completed.returncode,
        stdout=completed.stdout.decode("utf-8", "surrogateescape"),
        stderr=completed.stderr.decode("utf-8", "replace"),
    )
    if check and not result.ok:
        raise result.error()
    return result
