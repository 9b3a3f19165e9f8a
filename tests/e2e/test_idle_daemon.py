"""An idle daemon logs nothing at level warning or above: 120 s on the real clock, with
keep-alives every few seconds and link tokens short-lived enough that the link is renewed
several times meanwhile (each renewal mints a token and opens a new downlink)."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from testkit.harness import start_daemon, start_relay

IDLE = 120.0
KEEPALIVE = 5.0
#: The daemon renews its link at 80 % of this: every 24 s.
TOKEN_TTL = 30.0
QUIET_LEVELS = {"debug", "info"}


async def test_an_idle_daemon_logs_nothing_at_warning_or_above(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    async with trio.open_nursery() as nursery:
        relay = await start_relay(
            nursery,
            tmp_path / "relay",
            keepalive_interval=KEEPALIVE,
            access_token_ttl=TOKEN_TTL,
        )
        try:
            daemon = await start_daemon(relay, tmp_path / "home", project)
            # One session that did its turn and now waits, as most do most of the time.
            sid = (await relay.create_session(daemon.environment_id, prompt="hello")).json()["id"]
            await relay.wait_kind(sid, "turn_result")
            await relay.wait_events(sid, lambda evs: bool(evs) and evs[-1]["kind"] == "status")

            await trio.sleep(IDLE)  # clock: what an idle daemon does over time is under test

            status = await daemon.status()
            assert status["environment"]["connected"] is True
            assert [s["state"] for s in status["sessions"]] == ["idle"]
            lines = daemon.log().splitlines()
            loud = []
            renewals = 0
            for line in lines:
                if line.startswith("rcd: "):
                    continue  # what the daemon prints on stdout (registered, ...)
                try:
                    record = json.loads(line)
                except ValueError:
                    loud.append(line)  # not structlog's: the standard library's logging
                    continue
                if record.get("level") not in QUIET_LEVELS:
                    loud.append(line)
                renewals += record.get("event") == "link_renewal"
            assert loud == [], "\n".join(loud)
            # The idle time really covered link renewals (and their token mints), not
            # only keep-alives: one every 24 s.
            assert renewals >= IDLE // (0.8 * TOKEN_TTL) - 1, lines
            assert await daemon.stop() == 0
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()
