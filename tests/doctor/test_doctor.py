"""``rcd doctor`` as a user runs it (a real ``rcd`` process, a real relay on loopback, a
real git), with the machine's tools replaced on PATH by small scripts where a check reads
them (the agent's ``--version``, ``systemctl``): each check failing in turn says what and
how to fix it, and the exit status and ``--json`` follow."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

import testkit.fakes
from daemon.paths import save_credential
from daemon.relay_client import RelayClient
from relay.auth import issue_environment_credential
from testkit.harness import Relay, home_env, rcd, start_relay
from tests.daemon.test_tokens import laptop

VERSION = "2.1.330 (Claude Code)"


@attrs.define
class Machine:
    """A home, a PATH of chosen tools, a project repository and a relay this home paired
    with."""

    env: dict[str, str]
    bin: Path
    project: Path
    relay: Relay

    def tool(self, name: str, script: str) -> None:
        path = self.bin / name
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(0o755)

    def remove(self, name: str) -> None:
        (self.bin / name).unlink()

    async def doctor(self, *args: str) -> tuple[int, dict[str, Any], str]:
        """(exit status, the --json document, the text output) of ``rcd doctor``."""
        as_json = await rcd(self.env, "doctor", str(self.project), "--json", *args, check=False)
        text = await rcd(self.env, "doctor", str(self.project), *args, check=False)
        assert as_json.returncode == text.returncode, text.stderr.decode()
        return as_json.returncode, json.loads(as_json.stdout), text.stdout.decode()


@pytest.fixture
async def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Machine]:
    home = tmp_path / "home"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = home_env(home, {"PATH": str(bin_dir), "ANTHROPIC_API_KEY": "sk-test"})
    env.pop("CLAUDE_CONFIG_DIR", None)
    project = tmp_path / "project"
    project.mkdir()
    git = shutil.which("git")
    assert git, "git is needed: apt-get install git"
    for argv in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "first"]):
        await trio.run_process(
            [git, "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t", *argv]
        )
    (bin_dir / "git").symlink_to(git)
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        m = Machine(env=env, bin=bin_dir, project=project, relay=relay)
        m.tool("claude", f'echo "{VERSION}"\n')
        m.tool("systemctl", 'echo "PATH=/usr/bin"\n')  # `--user show-environment` answers
        # This home is paired with the relay (what `rcd pair` stores).
        credential = await issue_environment_credential(relay.storage, "m1")
        monkeypatch.setenv("XDG_CONFIG_HOME", env["XDG_CONFIG_HOME"])
        save_credential(relay.url, credential)
        yield m
        await relay.aclose()
        nursery.cancel_scope.cancel()


def by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in document["checks"]}


async def test_everything_in_place_is_ok_and_the_json_has_its_documented_shape(
    machine: Machine,
) -> None:
    code, document, text = await machine.doctor("--relay", machine.relay.url, "--spawn", "worktree")
    assert set(document) == {"ok", "checks"}
    for check in document["checks"]:
        assert set(check) == {"name", "status", "detail", "fix"}
        assert check["status"] in ("ok", "problem", "note")
    checks = by_name(document)
    assert list(checks) == [
        "agent",
        "model credential",
        "git",
        "relay",
        "clock",
        "service manager",
        "runtime directory",
    ]
    problems = [c for c in document["checks"] if c["status"] == "problem"]
    assert (code, document["ok"], problems) == (0, True, [])
    assert VERSION in checks["agent"]["detail"]
    assert checks["model credential"]["detail"] == "ANTHROPIC_API_KEY in the environment"
    assert checks["clock"]["status"] == "ok"
    # Lingering is off here: worth a note, not a problem.
    assert checks["service manager"]["status"] in ("ok", "note")
    assert "nothing in the way" in text


async def failing(machine: Machine, name: str, *args: str) -> tuple[dict[str, Any], str]:
    """The one failing check's finding (the others pass), and the text output."""
    code, document, text = await machine.doctor(*args)
    problems = [c for c in document["checks"] if c["status"] == "problem"]
    assert [c["name"] for c in problems] == [name], problems
    assert code == 1 and document["ok"] is False
    [problem] = problems
    assert f"PROBLEM  {name}" in text and f"fix: {problem['fix']}" in text
    return problem, text


async def test_no_agent(machine: Machine) -> None:
    machine.remove("claude")
    problem, _ = await failing(machine, "agent")
    assert "'claude' is not on PATH" in problem["detail"]
    assert "--agent-bin" in problem["fix"] and "npm install" in problem["fix"]
    # One that is there but broken says so too.
    machine.tool("claude", "echo 'cannot find module' >&2; exit 3\n")
    problem, _ = await failing(machine, "agent")
    assert "--version failed: cannot find module" in problem["detail"]


async def test_no_model_credential(machine: Machine) -> None:
    del machine.env["ANTHROPIC_API_KEY"]
    problem, _ = await failing(machine, "model credential")
    assert "ANTHROPIC_API_KEY" in problem["fix"] and "log in" in problem["fix"]
    # The CLI's own login, or the service's env file, is one.
    login = Path(machine.env["HOME"]) / ".claude" / ".credentials.json"
    login.parent.mkdir()
    login.write_text("{}")
    checks = by_name((await machine.doctor())[1])
    assert checks["model credential"]["status"] == "ok"
    login.unlink()
    service_env = Path(machine.env["XDG_CONFIG_HOME"]) / "rcd" / "env"
    service_env.parent.mkdir(parents=True, exist_ok=True)
    service_env.write_text("# for the service\nANTHROPIC_API_KEY=sk-service\n")
    checks = by_name((await machine.doctor())[1])
    assert "(the service's)" in checks["model credential"]["detail"]


async def test_no_git_or_no_repository_for_worktrees(machine: Machine, tmp_path: Path) -> None:
    machine.remove("git")
    problem, _ = await failing(machine, "git", "--spawn", "worktree")
    assert problem["detail"] == "git is not on PATH" and "install git" in problem["fix"]
    # Sessions in the directory itself need no git: a note.
    checks = by_name((await machine.doctor("--spawn", "same-dir"))[1])
    assert checks["git"]["status"] == "note"
    git = shutil.which("git", path=os.environ["PATH"])
    assert git
    (machine.bin / "git").symlink_to(git)
    elsewhere = tmp_path / "plain"
    elsewhere.mkdir()
    code, document, _ = await attrs.evolve(machine, project=elsewhere).doctor("--spawn", "worktree")
    assert code == 1 and "not in a git repository" in by_name(document)["git"]["detail"]


async def test_unreachable_relay(machine: Machine) -> None:
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, never listening
        save_credential(closed, "rcd_env_whatever")
        problem, _ = await failing(machine, "relay", "--relay", closed)
    assert closed in problem["detail"] and "relay runs" in problem["fix"]


async def test_unpaired_and_revoked_credentials(machine: Machine) -> None:
    elsewhere = "http://127.0.0.1:9"
    problem, _ = await failing(machine, "relay", "--relay", elsewhere)
    assert "not paired" in problem["detail"] and f"rcd pair {elsewhere}" in problem["fix"]
    # Registered, then revoked on the relay: refused, and the fix is pairing again.
    relay = machine.relay
    credential = await issue_environment_credential(relay.storage, "m2")
    save_credential(relay.url, credential)

    async with httpx.AsyncClient() as http:
        client = RelayClient(http=http, relay=relay.url, credential=credential)
        registration = await client.register(laptop(capacity=1))
    await relay.storage.revoke_environment(registration.environment_id)
    problem, _ = await failing(machine, "relay", "--relay", relay.url)
    assert "refuses this machine's credential" in problem["detail"]
    assert problem["fix"] == f"pair again: rcd pair {relay.url} CODE"


async def test_no_user_bus(machine: Machine) -> None:
    machine.tool("systemctl", 'echo "Failed to connect to bus: No medium found" >&2; exit 1\n')
    problem, _ = await failing(machine, "service manager")
    assert "Failed to connect to bus" in problem["detail"]
    assert "loginctl enable-linger" in problem["fix"]


async def test_start_refuses_without_the_agent_unless_told(machine: Machine) -> None:
    machine.remove("claude")
    refused = await rcd(machine.env, "start", str(machine.project), check=False)
    assert refused.returncode == 1
    message = refused.stderr.decode()
    assert "'claude' is not on PATH" in message and "--agent-bin" in message
    assert "rcd doctor" in message and "--no-agent-check" in message


async def test_tailscale_is_checked_when_it_is_to_publish_the_relay(machine: Machine) -> None:
    # Not asked for: not checked.
    assert "tailscale" not in by_name((await machine.doctor())[1])
    problem, _ = await failing(machine, "tailscale", "--expose", "tailscale")
    assert "not on PATH" in problem["detail"] and "install Tailscale" in problem["fix"]
    state = machine.bin.parent / "tailscale-state"
    state.mkdir()
    machine.env["FAKE_TAILSCALE_DIR"] = str(state)
    machine.tool("tailscale", f'exec {sys.executable} -m testkit.fakes.tailscale "$@"\n')
    problem, _ = await failing(machine, "tailscale", "--expose", "tailscale")
    assert "systemctl start tailscaled" in problem["fix"]
    samples = Path(testkit.fakes.__file__).parent / "tailscale_samples"
    shutil.copy(samples / "needs-login.json", state / "status.json")
    problem, _ = await failing(machine, "tailscale", "--expose", "tailscale")
    assert problem["detail"] == "this machine is not logged in to Tailscale"
    assert problem["fix"] == "run `tailscale up`, then start again"
    shutil.copy(samples / "running.json", state / "status.json")
    code, document, _ = await machine.doctor("--expose", "tailscale")
    assert code == 0, document
    found = by_name(document)["tailscale"]
    assert found["detail"] == "the relay would be published at https://box.tail1234.ts.net"


async def test_an_acp_agent_is_checked_by_its_own_program(machine: Machine) -> None:
    """``--agent codex`` checks ``codex-acp``, not claude, and no Anthropic credential
    (an ACP agent's credentials are its own); ``--agent acp -- CMD`` checks CMD."""
    del machine.env["ANTHROPIC_API_KEY"]
    machine.remove("claude")
    problem, _ = await failing(machine, "agent", "--agent", "codex")
    assert problem["detail"] == "the agent's program 'codex-acp' (--agent codex) was not found"
    assert "--agent-bin" in problem["fix"]
    machine.tool("codex-acp", "exit 0\n")
    code, document, _ = await machine.doctor("--agent", "codex")
    assert code == 0, document
    checks = by_name(document)
    assert checks["agent"]["status"] == "ok" and "over ACP" in checks["agent"]["detail"]
    assert "model credential" not in checks
    machine.tool("my-agent", "exit 0\n")
    code, document, _ = await machine.doctor("--agent", "acp", "--", "my-agent", "--flag")
    assert code == 0, document
    assert by_name(document)["agent"]["detail"].startswith(str(machine.bin / "my-agent"))
    # Each agent a session may ask for is checked too.
    problem, _ = await failing(
        machine, "agent gemini", "--agent", "codex", "--allow-agent", "gemini"
    )
    assert problem["detail"] == "'gemini' is not on PATH"
