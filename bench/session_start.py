"""Session start: a client's ``POST /api/environments/{id}/sessions`` → the
``session_started`` event on the session's SSE stream, in the project directory and in a
new git worktree.

The relay runs in this process, the daemon is a real ``rcd start`` process with the stand-in
agent. Agent boot is excluded by construction: the daemon writes ``session_started`` as soon
as the agent process has been spawned (``spawn.session``: after the adapter reports its
handle, before the agent has read or written anything), and the stand-in is a ``python -SE``
script, so what is timed is rcd — relay, downlink, supervisor, workspace, fork/exec, uplink,
relay, SSE — and not an agent getting ready. No prompt is sent, so no turn overlaps.

The client subscribes to the session's SSE stream (from seq 0) as soon as the POST answers,
as the web app does. Every session is stopped, and its ``session_ended`` seen, before the
next trial starts (in worktree mode that removes the worktree and its branch).

The worktree case runs in a git repository of 20,000 files made once per run (200
directories of 100 files, one commit, packed and checked out), against a bare
``git worktree add --quiet -b BRANCH PATH HEAD_SHA`` of the same repository — the command
rcd runs — measured in the same run, alternating with rcd's trials.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import attrs
import trio

from testkit.harness import Relay, start_daemon, start_relay
from worktrees.gitproc import git_env

from .relayhttp import EventFeed
from .stats import STALL_NOTE, Check, Figure, keep_logs, stall_check, verdict

__all__ = ["SessionStartResult", "make_repository", "measure_session_start"]

FILES = 20_000
#: Seconds to wait for an event that normally follows within milliseconds.
STALL_S = 5.0


@attrs.frozen(kw_only=True)
class SessionStartResult:
    get: Figure
    post: Figure
    same_dir: Figure
    same_dir_parts: tuple[Figure, Figure, Figure]
    bare_worktree: Figure
    worktree: Figure
    worktree_parts: tuple[Figure, Figure, Figure]
    repo_files: int
    repo_seconds: float
    repo_fs: str
    #: Events the daemon held back (see ``STALL_NOTE``).
    stalls: int


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", *args],
        cwd=repo,
        env=git_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def make_repository(repo: Path, files: int = FILES) -> None:
    """A git repository of ``files`` small distinct text files in one commit, checked out.

    Written with ``git fast-import`` (one pack, as a real repository's history is) and then
    checked out, which is much faster than adding 20,000 loose objects.
    """
    repo.mkdir(parents=True)
    _git(repo, "init", "--quiet", "--initial-branch=main")
    per_dir = 100
    stream = bytearray(b"commit refs/heads/main\n")
    stream += b"committer bench <bench@localhost> 1700000000 +0000\n"
    message = f"{files} files".encode()
    stream += b"data %d\n%s\n" % (len(message), message)
    for n in range(files):
        d, f = divmod(n, per_dir)
        content = (
            f'"""Module {d}.{f}."""\n\nVALUE = {n}\n\n\n'
            f"def f{f}(x: int) -> int:\n    return x + VALUE\n"
        ).encode()
        stream += b"M 100644 inline pkg%03d/mod%03d.py\ndata %d\n%s\n" % (
            d,
            f,
            len(content),
            content,
        )
    subprocess.run(
        ["git", "fast-import", "--quiet"],
        cwd=repo,
        env=git_env(),
        input=bytes(stream),
        capture_output=True,
        check=True,
    )
    _git(repo, "reset", "--hard", "--quiet", "main")


@attrs.frozen(kw_only=True)
class _Start:
    #: POST → 201.
    post: float
    #: POST → session_started seen on SSE.
    total: float
    #: By the daemon's event timestamps (``at``, wall clock): POST → the daemon's runtime
    #: starts (``status: starting``) ...
    inbound: float
    #: ... → workspace ready and agent spawned (``session_started``) ...
    spawn: float
    #: ... → the client sees it.
    outbound: float


async def _session_start(relay: Relay, env_id: str, spawn: str) -> tuple[_Start | None, int]:
    """Start a session, time it, stop it (and see it ended). Returns the timings (None if
    ``session_started`` was held back by the daemon) and the number of held-back events."""
    # How long an event may take before it counts as held back: a worktree's removal
    # (before session_ended) takes up to a second or two here.
    patience = STALL_S if spawn == "same-dir" else 30.0
    posted_at = time.time()
    started = time.perf_counter()
    r = await relay.create_session(env_id, spawn=spawn)
    r.raise_for_status()
    posted = time.perf_counter()
    sid = r.json()["id"]
    starting_at = 0.0
    stalls = 0
    timing: _Start | None = None
    feed = await EventFeed.open(relay.url, relay.token, sid, 0)
    try:
        with trio.move_on_after(patience):
            while True:
                message = await feed.next()
                if message.event == "status" and '"starting"' in (message.data or ""):
                    starting_at = json.loads(message.data or "{}")["at"]
                if message.event == "session_started":
                    seen, seen_at = time.perf_counter(), time.time()
                    started_at = json.loads(message.data or "{}")["at"]
                    timing = _Start(
                        post=(posted - started) * 1000,
                        total=(seen - started) * 1000,
                        inbound=(starting_at - posted_at) * 1000,
                        spawn=(started_at - starting_at) * 1000,
                        outbound=(seen_at - started_at) * 1000,
                    )
                    break
                if message.event in ("error", "session_ended"):
                    raise RuntimeError(f"session {sid} failed to start: {message.data}")
        if timing is None:
            stalls += 1  # stopping the session sends it along
        (await relay.client.post(f"/api/sessions/{sid}/stop")).raise_for_status()
        ended = None
        with trio.move_on_after(patience):
            while (message := await feed.next()).event != "session_ended":
                pass
            ended = message
        if ended is None:
            stalls += 1
        elif spawn == "worktree" and '"worktree_kept":true' in (ended.data or ""):
            raise RuntimeError(f"worktree kept: {ended.data}")
    finally:
        await feed.aclose()
    return timing, stalls


async def _bare_worktree(repo: Path, base: str, scratch: Path, n: int) -> float:
    path = scratch / f"bare-{n}"
    branch = f"bench/bare-{n}"
    env = git_env()
    started = time.perf_counter()
    await trio.run_process(
        ["git", "worktree", "add", "--quiet", "-b", branch, str(path), base],
        cwd=str(repo),
        env=env,
        capture_stdout=True,
        capture_stderr=True,
    )
    elapsed = (time.perf_counter() - started) * 1000
    await trio.run_process(
        ["git", "worktree", "remove", "--force", str(path)], cwd=str(repo), env=env
    )
    await trio.run_process(
        ["git", "branch", "-D", "--quiet", branch], cwd=str(repo), env=env, capture_stdout=True
    )
    return elapsed


async def measure_session_start(
    trials: int = 7, same_dir_trials: int = 40, files: int = FILES
) -> SessionStartResult:
    repo_parent = _repo_parent()
    with (
        tempfile.TemporaryDirectory(prefix="rcd-start-") as tmp,
        tempfile.TemporaryDirectory(prefix="rcd-repo-", dir=repo_parent) as repo_tmp,
    ):
        root = Path(tmp)
        repo = Path(repo_tmp) / "repo"
        made = time.perf_counter()
        await trio.to_thread.run_sync(make_repository, repo, files)
        repo_seconds = time.perf_counter() - made
        base = await trio.to_thread.run_sync(_git, repo, "rev-parse", "HEAD")
        scratch = Path(repo_tmp) / "bare-worktrees"
        scratch.mkdir()
        async with trio.open_nursery() as nursery:
            relay = await start_relay(nursery, root / "relay")
            try:
                daemon = await start_daemon(relay, root / "home", repo, "--capacity", "4")
                env_id = daemon.environment_id
                get: list[float] = []
                for _ in range(same_dir_trials):
                    started = time.perf_counter()
                    (await relay.client.get("/api/environments")).raise_for_status()
                    get.append((time.perf_counter() - started) * 1000)
                stalls = (await _session_start(relay, env_id, "same-dir"))[1]  # warm-up
                same: list[_Start] = []
                worktree: list[_Start] = []

                async def start(spawn: str, into: list[_Start]) -> None:
                    nonlocal stalls
                    timing, stalled = await _session_start(relay, env_id, spawn)
                    stalls += stalled
                    if timing is not None:
                        into.append(timing)

                for _ in range(same_dir_trials):
                    await start("same-dir", same)
                await _bare_worktree(repo, base, scratch, -1)  # warm-up: page cache
                await start("worktree", [])  # warm-up
                bare: list[float] = []
                for n in range(trials):
                    if n % 2 == 0:
                        bare.append(await _bare_worktree(repo, base, scratch, n))
                        await start("worktree", worktree)
                    else:
                        await start("worktree", worktree)
                        bare.append(await _bare_worktree(repo, base, scratch, n))
                if await daemon.stop() != 0:
                    raise RuntimeError(f"daemon did not stop cleanly: {daemon.log()}")
                left = list((repo / ".rcd" / "worktrees").glob("*"))
                if left:
                    raise RuntimeError(f"worktrees left behind: {left}")
            except BaseException:
                keep_logs(root, "session-start")
                raise
            finally:
                await relay.aclose()
                nursery.cancel_scope.cancel()
    return SessionStartResult(
        get=Figure(name="baseline: one authenticated GET", unit="ms", samples=tuple(get)),
        post=Figure(
            name="POST create session → 201 (relay only)",
            unit="ms",
            samples=tuple(t.post for t in same),
        ),
        same_dir=Figure(
            name="same-dir: POST → session_started on SSE",
            unit="ms",
            samples=tuple(t.total for t in same),
        ),
        same_dir_parts=_parts(same),
        bare_worktree=Figure(
            name=f"baseline: bare `git worktree add`, {files} files", unit="ms", samples=tuple(bare)
        ),
        worktree=Figure(
            name="worktree: POST → session_started on SSE",
            unit="ms",
            samples=tuple(t.total for t in worktree),
        ),
        worktree_parts=_parts(worktree),
        repo_files=files,
        repo_seconds=repo_seconds,
        repo_fs=_filesystem(repo_parent),
        stalls=stalls,
    )


def _parts(starts: list[_Start]) -> tuple[Figure, Figure, Figure]:
    return (
        Figure(
            name="… POST → daemon starts the session",
            unit="ms",
            samples=tuple(t.inbound for t in starts),
        ),
        Figure(
            name="… → workspace ready, agent spawned",
            unit="ms",
            samples=tuple(t.spawn for t in starts),
        ),
        Figure(
            name="… → client sees session_started",
            unit="ms",
            samples=tuple(t.outbound for t in starts),
        ),
    )


def _repo_parent() -> str | None:
    """Where the repository goes: a tmpfs (``/dev/shm``) when there is one, because on these
    VMs creating 20,000 files on the disk costs 3 to 15 s of kernel time from one run to the
    next, which would drown both figures; else the default temp dir."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2**30:
        return shm
    return None


def _filesystem(path: str | None) -> str:
    target = os.path.realpath(path or tempfile.gettempdir())
    best, kind = "", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                _, point, fstype = line.split()[:3]
                if target.startswith(point) and len(point) > len(best):
                    best, kind = point, fstype
    except OSError:
        pass
    return f"{target} ({kind})"


def checks(result: SessionStartResult) -> list[Check]:
    ratio = result.worktree.median / result.bare_worktree.median
    inbound, spawn, outbound = (f.median for f in result.same_dir_parts)
    extra_git = result.worktree_parts[1].median - result.bare_worktree.median
    return [
        Check(
            name="session start, same-dir (agent boot excluded)",
            target="≤ 50 ms median",
            measured=f"{result.same_dir.median:.1f} ms",
            ok=result.same_dir.median <= 50,
            limit=f"POST → daemon starts it {inbound:.1f} ms, workspace + spawn {spawn:.1f} ms, "
            f"→ client sees it {outbound:.1f} ms; see Session start",
        ),
        Check(
            name=f"session start, worktree ({result.repo_files} files)",
            target="≤ 1.2x a bare `git worktree add`",
            measured=f"{ratio:.2f}x ({result.worktree.median:.0f} vs "
            f"{result.bare_worktree.median:.0f} ms)",
            ok=ratio <= 1.2,
            limit=f"the daemon's own git work around `worktree add` ({extra_git:+.0f} ms: HEAD, "
            "exclude file, taken slugs, `git config` of the base) plus the relay hops; "
            "see Session start",
        ),
        stall_check("session start", result.stalls),
    ]


def section(result: SessionStartResult) -> list[str]:
    ratio = result.worktree.median / result.bare_worktree.median
    return [
        "## Session start (POST create session → session_started on SSE, stand-in agent)",
        "",
        "| figure | median | p99 | samples |",
        "|---|---|---|---|",
        result.get.row(),
        result.post.row(),
        result.same_dir.row(),
        *(f.row() for f in result.same_dir_parts),
        result.bare_worktree.row(),
        result.worktree.row(),
        *(f.row() for f in result.worktree_parts),
        "",
        f"- same-dir: **{result.same_dir.median:.1f} ms** median — target ≤ 50 ms: "
        + verdict(result.same_dir.median <= 50),
        f"- worktree: **{ratio:.2f}x** a bare `git worktree add` (medians; "
        f"{result.worktree.median - result.bare_worktree.median:+.0f} ms) — target ≤ 1.2x: "
        + verdict(ratio <= 1.2),
        f"- stalls (a session's new events not on the relay {STALL_S:.0f} s — worktree: 30 s"
        f" — after the event before them): **{result.stalls}**"
        + (" (those trials are left out of the figures)" if result.stalls else ""),
        "",
        *([STALL_NOTE, ""] if result.stalls else []),
        "Agent boot is excluded by construction: `session_started` is written once the agent",
        "process is spawned, before it runs, and the agent is the stand-in (`python -SE`).",
        'The "…" rows split each start by the daemon\'s event timestamps: `status: starting`',
        "is written when the daemon's session task starts, `session_started` once the",
        'workspace is ready and the agent spawned. In worktree mode "workspace ready" is',
        "rcd's whole worktree creation: HEAD, the exclude file and the taken names (GitPython,",
        "in threads), `git worktree add`, then `git config` recording the base commit.",
        "A new session's first events wait for its session token to be minted (`POST",
        ".../tokens`: one more request, one storage call at the relay); in same-dir",
        "mode that is on the path of `session_started` (the last hop is longer than in",
        "worktree mode, where git hides it).",
        f"The repository ({result.repo_files} files, one packed commit) was generated in this "
        f"run in {result.repo_seconds:.1f} s, in {result.repo_fs}: on this VM's disk, creating",
        "20,000 files costs 3 to 15 s of kernel time from one try to the next, which would",
        "drown both worktree figures, so a tmpfs is used when there is one.",
        "",
    ]
