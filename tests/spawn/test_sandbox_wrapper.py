"""The sandbox for an agent without one of its own: the scripted stream-json agent runs
wrapped whole in bubblewrap (real processes, a real proxy, curl against a real server). An
approved command writes in the session's directory and nowhere else, and reaches a host
only through the proxy, only when allowed; without the sandbox all of it goes through. The
macOS profile is checked by rendering it, as the service files are."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import wire
from spawn import AgentLaunch, AgentOptions, ClaudeCode
from spawn.proxy import host_allowed, serve_proxy
from spawn.sandbox import SandboxPolicy, bwrap_argv, seatbelt_profile, wrap_argv
from testkit.fakes.web_server import counting_server

TINY_AGENT = str(Path(__file__).parents[2] / "testkit" / "fakes" / "tiny_agent.py")

#: Only the tests that run bubblewrap: the rendering and the proxy run everywhere. (On
#: Linux a missing bwrap fails them: tests/run.sh installs it.)
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="bubblewrap is Linux's (macOS: rendered below)"
)


@pytest.fixture
def server() -> Iterator[tuple[int, list[str]]]:
    """A web server on loopback that counts what reaches it."""
    with counting_server() as running:
        yield running


async def run_approved(
    policy: SandboxPolicy | None, cwd: Path, commands: list[str]
) -> list[wire.ToolResult]:
    """Start the scripted agent (wrapped when ``policy`` says so), have it run each of
    ``commands`` with approval, and return their results."""
    send, receive = trio.open_memory_channel[object](1000)

    async def sink(event: object) -> None:
        await send.send(event)

    adapter = ClaudeCode(binary=TINY_AGENT, partial=False, native_sandbox=False)
    launch = AgentLaunch(cwd=str(cwd), env=dict(os.environ), options=AgentOptions(sandbox=policy))
    results = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(adapter.run, launch, sink)
            for command in commands:
                await handle.send_message(f"run {command}")
                async for event in receive:
                    if isinstance(event, wire.PermissionRequest):
                        await handle.answer_permission(event.request_id, "allow", None)
                    elif isinstance(event, wire.ToolResult):
                        results.append(event)
                    elif isinstance(event, wire.TurnResult):
                        break
            await handle.stop(2)
    return results


@linux_only
@pytest.mark.parametrize(
    ("policy", "writes_outside", "reaches"),
    [
        (SandboxPolicy(enabled=True), False, False),
        (SandboxPolicy(enabled=True, allow_hosts=("127.0.0.1",)), False, True),
        (None, True, True),
    ],
    ids=["sandbox", "sandbox-allowing-the-host", "no-sandbox"],
)
async def test_a_wrapped_agent_writes_and_reaches_only_what_it_may(
    server: tuple[int, list[str]],
    tmp_path: Path,
    policy: SandboxPolicy | None,
    writes_outside: bool,
    reaches: bool,
) -> None:
    port, hits = server
    work = tmp_path / "work"
    work.mkdir()
    outside = Path.home() / f".rcd-sandbox-test-{os.getpid()}"  # not under the private /tmp
    try:
        touched, inside, fetched, other = await run_approved(
            policy,
            work,
            [
                f"touch {outside}",
                f"touch {work}/inside.txt",
                f"curl -sS http://127.0.0.1:{port}/allowed",
                f"curl -sS http://localhost:{port}/not-allowed",
            ],
        )
        assert outside.exists() is writes_outside
    finally:
        outside.unlink(missing_ok=True)
    if not writes_outside:
        assert touched.is_error and "Read-only file system" in touched.content
    assert not inside.is_error and (work / "inside.txt").exists()
    assert ("/allowed" in hits) is reaches, fetched
    assert ("hello" in fetched.content) is reaches
    # localhost is not 127.0.0.1 to the allow-list: only an unsandboxed agent gets there.
    assert ("/not-allowed" in hits) is (policy is None), other
    if policy is not None and policy.allow_hosts:
        assert "rcd sandbox: localhost is not an allowed host" in other.content


@linux_only
async def test_no_way_out_through_git_or_root(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@example.org"]):
        await trio.run_process(["git", *args], cwd=repo)
    escape = Path.home() / f".rcd-escape-{os.getpid()}"
    try:
        hook, config, remount, work = await run_approved(
            SandboxPolicy(enabled=True),
            repo,
            [
                "touch .git/hooks/post-checkout",  # run later by the daemon's own git
                "git config core.fsmonitor 'touch /escaped'",
                f"mount -o remount,rw / && touch {escape}",  # root keeps no capability
                "touch work.txt && git add work.txt",
            ],
        )
        assert not escape.exists()
    finally:
        escape.unlink(missing_ok=True)
    assert hook.is_error and not (repo / ".git" / "hooks" / "post-checkout").exists()
    assert config.is_error and "fsmonitor" not in (repo / ".git" / "config").read_text()
    assert remount.is_error
    assert not work.is_error, work  # the index and objects stay writable


def test_the_wrappers_as_rendered() -> None:
    policy = SandboxPolicy(enabled=True, allow_hosts=("api.example.com",))
    argv = bwrap_argv(policy, "/w", ["/repo/.git"], proxy="/run/p.sock")
    assert argv[:10] == [
        "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
    ]  # fmt: skip
    for path in ("/w", "/repo/.git", "/run/p.sock"):
        assert ["--bind", path, path] == argv[argv.index(path) - 1 : argv.index(path) + 2]
    assert "--unshare-net" in argv and argv[argv.index("--chdir") + 1] == "/w"
    assert argv[argv.index("HTTPS_PROXY") - 1 : argv.index("HTTPS_PROXY") + 2] == [
        "--setenv",
        "HTTPS_PROXY",
        "http://127.0.0.1:3128",
    ]
    assert argv[-2:] == ["sh", "/run/p.sock"]
    assert bwrap_argv(SandboxPolicy(enabled=True), "/w")[-1] == "--"

    profile = seatbelt_profile(policy, "/w", ["/repo/.git"], proxy_port=4567)
    assert "(deny file-write*)" in profile and '(subpath "/w")' in profile
    assert '(subpath "/repo/.git")' in profile
    assert "(deny network-outbound)" in profile
    assert '(remote ip "localhost:4567")' in profile
    assert "localhost:4567" not in seatbelt_profile(policy, "/w")
    mac = wrap_argv(policy, "/w", proxy="127.0.0.1:4567", platform="darwin")
    assert mac[:2] == ["env", "HTTP_PROXY=http://127.0.0.1:4567"] and "sandbox-exec" in mac


def test_hosts_are_matched_by_name_or_under_a_wildcard() -> None:
    allowed = ("api.example.com", "*.pkg.dev", "10.0.0.5")
    assert host_allowed("API.example.com", allowed)
    assert host_allowed("a.b.pkg.dev", allowed) and not host_allowed("pkg.dev", allowed)
    assert host_allowed("10.0.0.5", allowed) and not host_allowed("10.0.0.50", allowed)
    assert not host_allowed("example.com", allowed)
    assert not host_allowed("evilpkg.dev", allowed)


async def ask_proxy(path: str, request: bytes) -> bytes:
    stream = await trio.open_unix_socket(path)
    async with stream:
        await stream.send_all(request)
        answer = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(4096):
                answer += chunk
                if b"\r\n\r\n" in answer:
                    break
    return answer


async def test_the_proxy_refuses_what_it_must_and_outlives_bad_clients(
    server: tuple[int, list[str]], tmp_path: Path
) -> None:
    port, hits = server
    path = str(tmp_path / "proxy.sock")
    allowed = ("127.0.0.1", "*.example.com", "localhost")
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_proxy, path, allowed)
        # A name that leads to this machine is refused, even when allowed by name.
        local = await ask_proxy(path, f"GET http://localhost:{port}/ HTTP/1.1\r\n\r\n".encode())
        assert local.startswith(b"HTTP/1.1 403") and b"leads to this machine" in local
        bad = await ask_proxy(path, b"CONNECT a..example.com:443 HTTP/1.1\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 502") and b"not a host name" in bad
        garbage = await ask_proxy(path, b"\xff\xfe nonsense\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400")
        # Still serving: the allowed address itself goes through.
        fine = await ask_proxy(path, f"GET http://127.0.0.1:{port}/ok HTTP/1.1\r\n\r\n".encode())
        assert fine.startswith(b"HTTP/1.0 200") and hits == ["/ok"]
        nursery.cancel_scope.cancel()
