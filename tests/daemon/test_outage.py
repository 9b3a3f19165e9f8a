"""Past --outage-timeout the daemon ends its sessions and exits non-zero, so the service
manager restarts it; when the relay comes back first, nothing happens at all."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.fakes.flaky_proxy import FlakyProxy
from tests.harness import processes_in, start_daemon, start_relay


async def test_outage_timeout_stops_sessions_and_exits_non_zero(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay")
        proxy = FlakyProxy(target=("127.0.0.1", relay.port))
        await nursery.start(proxy.run)
        try:
            daemon = await start_daemon(
                relay, tmp_path / "home", project, "--outage-timeout", "3", via=proxy.url
            )
            sid = (await relay.create_session(daemon.environment_id, prompt="sleep 300")).json()[
                "id"
            ]
            await relay.wait_kind(sid, "user_message")
            assert processes_in(project)
            # A short outage (shorter than the timeout) is ridden through.
            proxy.refuse(True)
            proxy.cut_all()
            await trio.sleep(1)
            proxy.refuse(False)
            with trio.fail_after(10):
                while not (await daemon.status())["environment"]["connected"]:
                    await trio.sleep(0.1)
            # A long one is not.
            proxy.refuse(True)
            proxy.cut_all()
            with trio.fail_after(30):
                code = await daemon.process.wait()
            assert code == 1
            log = daemon.log()
            assert "unreachable for" in log and "giving up" in log
            assert processes_in(project) == []
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
