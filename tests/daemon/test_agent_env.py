"""What an agent inherits: the daemon's environment less rcd's own variables and handles."""

from __future__ import annotations

from pathlib import Path

import trio
from hypothesis import given
from hypothesis import strategies as st

from common.agent_env import agent_environment, withheld
from testkit.harness import start_daemon, start_relay

SECRET = "rcd_dev_not-for-agents-0123456789"


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


async def test_an_agent_never_sees_rcds_variables_but_keeps_its_own(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        project = tmp_path / "project"
        project.mkdir()
        daemon = await start_daemon(
            relay,
            tmp_path / "home",
            project,
            extra_env={
                "RCD_TOKEN": SECRET,
                "RCD_RELAY": "https://relay.example",
                "rcd_lowercase": "also rcd's",
                "NOTIFY_SOCKET": str(tmp_path / "no-such-notify-socket"),
                "WATCHDOG_USEC": "30000000",
                "LISTEN_FDS": "0",
                "ANTHROPIC_API_KEY": "sk-ant-for-the-agent",
                "ANTHROPIC_BASE_URL": "http://127.0.0.1:9/",
                "HTTPS_PROXY": "http://proxy.invalid:3128",
                "NO_PROXY": "127.0.0.1,localhost",
                "LANG": "C.UTF-8",
                "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
            },
        )
        sid = (await relay.create_session(daemon.environment_id, prompt="hello")).json()["id"]
        await relay.wait_kind(sid, "turn_result")
        [session] = (await daemon.status())["sessions"]
        agent = environ_of(session["pid"])
        daemon_env = environ_of(daemon.process.pid)
        assert daemon_env["RCD_TOKEN"] == SECRET  # the test did give it to the daemon

        for name in (
            "RCD_TOKEN",
            "RCD_RELAY",
            "rcd_lowercase",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "LISTEN_FDS",
        ):
            assert name not in agent, name
        assert SECRET not in "\0".join(f"{k}={v}" for k, v in agent.items())
        # rcd's one variable, which it sets itself: the marker of its agents (no secret).
        assert [k for k in agent if k.upper().startswith("RCD_")] == ["RCD_AGENT_OF"]
        for name in (
            "PATH",
            "HOME",
            "XDG_CONFIG_HOME",
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
            "HTTPS_PROXY",
            "NO_PROXY",
            "LANG",
            "SSL_CERT_FILE",
        ):
            assert agent.get(name) == daemon.env[name], name
        assert await daemon.stop() == 0
        await relay.aclose()
        nursery.cancel_scope.cancel()


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=8)))
def test_only_withheld_names_are_dropped(environ: dict[str, str]) -> None:
    kept = agent_environment(environ)
    assert kept == {k: v for k, v in environ.items() if not withheld(k)}
    assert not any(k.upper().startswith("RCD_") for k in kept)
