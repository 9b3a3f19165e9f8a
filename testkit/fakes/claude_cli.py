"""Finding and configuring the pinned Claude Code CLI that tests drive for real.

The CLI comes from the repo's ``package.json`` (``npm ci`` in the repo root installs it into
``node_modules/.bin/claude``). Tests never skip when it is missing: they fail and say how to
install it.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from spawn.claude import STREAM_JSON_ARGS

__all__ = [
    "CLAUDE_BIN_ENV",
    "REPO_ROOT",
    "STREAM_JSON_ARGS",
    "claude_env",
    "find_claude",
    "local_conversation",
    "open_conversation",
]

CLAUDE_BIN_ENV = "RCD_CLAUDE_BIN"
REPO_ROOT = Path(__file__).resolve().parents[2]


def find_claude() -> str:
    """Path of the pinned ``claude`` executable.

    ``$RCD_CLAUDE_BIN`` when set, else ``<repo>/node_modules/.bin/claude``. Raises
    ``RuntimeError`` (telling to run ``npm ci`` in the repo root) when it is not there.
    """
    override = os.environ.get(CLAUDE_BIN_ENV)
    path = Path(override) if override else REPO_ROOT / "node_modules" / ".bin" / "claude"
    if not (path.is_file() and os.access(path, os.X_OK)):
        source = f"${CLAUDE_BIN_ENV}" if override else "the repo's node_modules"
        raise RuntimeError(
            f"Claude Code CLI not found at {path} (from {source}). "
            f"Run `npm ci` in the repo root ({REPO_ROOT}) to install the pinned version, "
            f"or point ${CLAUDE_BIN_ENV} at a claude executable."
        )
    return str(path)


def find_claude_acp() -> str:
    """Path of the pinned ``claude-agent-acp`` (Claude Code through the Agent Client
    Protocol), ``<repo>/node_modules/.bin/claude-agent-acp``. Raises ``RuntimeError``
    (telling to run ``npm ci``) when it is not there."""
    path = REPO_ROOT / "node_modules" / ".bin" / "claude-agent-acp"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(
            f"claude-agent-acp not found at {path}. Run `npm ci` in the repo root"
            f" ({REPO_ROOT}) to install the pinned version (package-lock.json)."
        )
    return str(path)


def find_codex_acp() -> str:
    """Path of the pinned ``codex-acp`` (OpenAI's Codex through the Agent Client
    Protocol), ``<repo>/node_modules/.bin/codex-acp``; RuntimeError (run ``npm ci``) when
    it is not there."""
    path = REPO_ROOT / "node_modules" / ".bin" / "codex-acp"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(
            f"codex-acp not found at {path}. Run `npm ci` in the repo root ({REPO_ROOT})"
            " to install the pinned version (package-lock.json)."
        )
    return str(path)


def claude_env(home: Path, base_url: str) -> dict[str, str]:
    """A complete environment for running the CLI offline against a fake Messages API.

    ``home`` becomes ``$HOME`` (the CLI keeps its config and session transcripts under
    ``home/.claude``, so ``--resume`` needs the same ``home``) and holds the CLI's temp dir,
    ``home/tmp``, created here: without it the CLI litters ``/tmp/claude-<uid>`` and
    ``/tmp/cc-socks``. Only ``PATH`` is inherited, so the developer's own credentials,
    ``CLAUDE_*`` settings and real home are never seen.
    """
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "CLAUDE_CODE_TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "sk-ant-fake-key",
        # No telemetry, error reporting, auto-update, feature flags or connectivity checks.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        # A failing fake should fail the test quickly rather than be retried with backoff.
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }


def local_conversation(home: Path, base_url: str, cwd: Path, prompts: list[str]) -> str:
    """Have a conversation with the pinned CLI the way a developer does in a terminal,
    ``claude -p PROMPT`` then ``claude -p --resume ID PROMPT`` for each next one, in
    ``cwd``; returns its id. Blocking (call it in a thread from trio)."""
    conversation = str(uuid.uuid4())
    for n, prompt in enumerate(prompts):
        which = ["--session-id", conversation] if n == 0 else ["--resume", conversation]
        done = subprocess.run(
            [find_claude(), "-p", *which, prompt],
            cwd=cwd,
            env=claude_env(home, base_url),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"claude -p {prompt!r} exited {done.returncode}: {done.stderr!r}")
    return conversation


@asynccontextmanager
async def open_conversation(
    home: Path, base_url: str, cwd: Path, conversation: str
) -> AsyncIterator[trio.Process]:
    """A CLI that has ``conversation`` open (resumed, a message taken, waiting for the next
    with its stdin open), as a developer's terminal would; killed when the block ends."""
    cli = await trio.lowlevel.open_process(
        [find_claude(), *STREAM_JSON_ARGS[:6], "--resume", conversation],
        cwd=cwd, env=claude_env(home, base_url), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert cli.stdin is not None and cli.stdout is not None
        line = {"type": "user", "message": {"role": "user", "content": "echo still here"}}
        await cli.stdin.send_all(json.dumps(line).encode() + b"\n")
        with trio.fail_after(30):  # its first line: it took the message (and announced itself)
            await cli.stdout.receive_some()
        yield cli
    finally:
        cli.kill()
        await cli.wait()
