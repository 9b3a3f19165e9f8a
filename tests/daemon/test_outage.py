"""Past --outage-timeout the daemon ends its sessions and exits 75 (EXIT_RELAY_OUTAGE) with
one clear log line, so the service manager restarts it; when the relay comes back first,
nothing happens at all. The relay then shows that environment's sessions disconnected and
refuses inputs to them, and the restarted daemon reports how they ended."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from daemon.exits import EXIT_RELAY_OUTAGE
from testkit.fakes.flaky_proxy import FlakyProxy
from testkit.harness import processes_in, start_daemon, start_relay
from testkit.waiting import eventually


async def test_outage_timeout_stops_sessions_and_exits_non_zero(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    async with trio.open_nursery() as nursery:
        # A short grace: the outage below (3 s) outlasts it, as a real one (10 min by
        # default) outlasts the default grace (30 s).
        relay = await start_relay(nursery, tmp_path / "relay", offline_grace=1.0)
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
            await trio.sleep(1)  # clock: an outage shorter than the timeout (3 s)
            proxy.refuse(False)

            async def connected() -> bool:
                return bool((await daemon.status())["environment"]["connected"])

            await eventually(connected, timeout=10, what="the daemon to be connected again")
            # A long one is not.
            proxy.refuse(True)
            proxy.cut_all()
            with trio.fail_after(30):
                code = await daemon.process.wait()
            assert code == EXIT_RELAY_OUTAGE == 75
            log = daemon.log()
            assert "Traceback" not in log
            records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
            [error] = [r for r in records if r["level"] in ("error", "critical")]
            assert error["event"] == "relay_outage"
            assert "unreachable for" in error["error"] and "giving up" in error["error"]
            assert processes_in(project) == []

            # The relay is reachable again; the daemon is gone, and nothing pretends otherwise.
            proxy.refuse(False)
            [env] = await relay.environments()
            assert env["online"] is False
            assert (await relay.session(sid))["state"] == "disconnected"
            refused = await relay.post_message(sid, "still there?", "m-late")
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"]["code"] == "environment_offline"

            # The service manager restarts the daemon: the ends it kept go up, and the
            # session can be resumed.
            again = await start_daemon(relay, tmp_path / "home", project, via=proxy.url)
            assert again.environment_id == daemon.environment_id
            events = await relay.wait_kind(sid, "session_ended")
            assert events[-1]["data"]["reason"] in ("daemon_stopped", "daemon_restarted")
            assert (await relay.session(sid))["state"] == "ended"
            assert (await relay.client.post(f"/api/sessions/{sid}/resume")).status_code == 202
            await relay.wait_kind(sid, "session_started", 2)
            assert await again.stop() == 0
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
