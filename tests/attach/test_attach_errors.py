"""``rcd attach`` when something is wrong: an unknown session, a refused token, no relay
or no token configured, a relay that is down (it waits, saying so) or that restarts while
attached (it resumes with Last-Event-ID and prints nothing twice)."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx
import trio

from relay import RelayConfig, admin, serve_relay
from testkit.harness import Relay, start_daemon
from testkit.waiting import eventually
from tests.attach.conftest import device_token, new_session
from tests.attach.pty_client import attach_argv, open_attach, run_attach_plain


async def test_unknown_session_exits_1(relay: Relay, attach_env: dict[str, str]) -> None:
    token = await device_token(relay, "term")
    result = await run_attach_plain(
        attach_argv("ses_nope", "--relay", relay.url, "--token", token), attach_env
    )
    assert result.returncode == 1, result
    assert result.stderr.decode().strip() == f"rcd attach: no session ses_nope on {relay.url}"


async def test_a_refused_token_says_it_is_invalid_or_revoked(
    relay: Relay, attach_env: dict[str, str]
) -> None:
    token = await device_token(relay, "gone")
    await trio.to_thread.run_sync(admin.revoke_device_token, relay.data_dir, "gone")
    for argv, env in [
        (attach_argv("ses_x", "--relay", relay.url, "--token", token), attach_env),
        (attach_argv("ses_x", "--relay", relay.url), attach_env | {"RCD_TOKEN": "bogus"}),
    ]:
        result = await run_attach_plain(argv, env)
        assert result.returncode == 1, result
        err = result.stderr.decode()
        assert "refused the token: it is invalid or revoked" in err, err
        assert "rcd relay token create --name NAME" in err


async def test_without_relay_or_token_it_says_what_to_pass(
    relay: Relay, attach_env: dict[str, str]
) -> None:
    result = await run_attach_plain(attach_argv("ses_x"), attach_env)
    assert result.returncode == 1
    assert b"no relay to attach to: pass --relay URL" in result.stderr
    result = await run_attach_plain(attach_argv("ses_x", "--relay", relay.url), attach_env)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert f"no token for {relay.url}: pass --token-file PATH" in err, err
    assert "rcd relay token create --name NAME" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_waits_for_an_unreachable_relay_showing_it(
    tmp_path: Path, attach_env: dict[str, str]
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "late-relay"
    token = await trio.to_thread.run_sync(admin.create_device_token, data_dir, "late")
    async with (
        open_attach(attach_argv("ses_nope", "--relay", url, "--token", token), attach_env) as term,
        trio.open_nursery() as nursery,
    ):
        await term.expect(f"cannot reach the relay at {url} (ConnectError")
        await term.expect("retrying in")
        await term.expect("waiting for the relay… ")
        await term.expect("cannot reach the relay")  # it keeps trying
        await nursery.start(
            serve_relay, RelayConfig(host="127.0.0.1", port=port, data_dir=data_dir)
        )
        await term.expect(f"rcd attach: no session ses_nope on {url}", timeout=10)
        assert await term.wait() == 1
        nursery.cancel_scope.cancel()


async def test_resumes_after_the_relay_restarts_printing_nothing_twice(
    tmp_path: Path, attach_env: dict[str, str]
) -> None:
    data_dir = tmp_path / "relay"
    async with trio.open_nursery() as nursery:

        async def serve(
            scope: trio.CancelScope, port: int, task_status: trio.TaskStatus[object]
        ) -> None:
            with scope:
                config = RelayConfig(host="127.0.0.1", port=port, data_dir=data_dir)
                await serve_relay(config, task_status=task_status)

        first = trio.CancelScope()
        running = await nursery.start(serve, first, 0)
        token = await trio.to_thread.run_sync(admin.create_device_token, data_dir, "tests")
        client = httpx.AsyncClient(
            base_url=running.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        relay = Relay(running=running, data_dir=data_dir, client=client, token=token)
        project = tmp_path / "project"
        project.mkdir()
        daemon = await start_daemon(relay, tmp_path / "daemon-home", project)
        try:
            session_id = await new_session(relay, daemon, "before", "restart")
            argv = attach_argv(session_id, "--relay", relay.url, "--token", token)
            async with open_attach(argv, attach_env) as term:
                await term.expect("echo: before")
                await term.expect("live from here")

                first.cancel()
                await term.expect("reconnecting… (")
                await term.expect("reconnecting… > ")
                await nursery.start(serve, trio.CancelScope(), running.port)
                await term.expect("reconnected")

                # The daemon is back too (its link reconnects on its own backoff).
                async def daemon_online() -> bool:
                    return any(e["online"] for e in await relay.environments())

                await eventually(daemon_online, timeout=10, what="the daemon online again")
                await term.type_line("after the restart")
                await term.expect("echo: after the restart")
                await term.type_line("/quit")
                assert await term.wait() == 0
            lines = term.lines()
            for text in ("you (tests): before", "echo: before", "echo: after the restart"):
                assert sum(line == text for line in lines) == 1, (text, lines)
        finally:
            await daemon.stop(signal.SIGTERM)
            await client.aclose()
        nursery.cancel_scope.cancel()
