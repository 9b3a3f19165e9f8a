"""Schemathesis over ``/api/openapi.json`` against a real relay process, with a device
token: no 5xx, and every response (status, content type, headers, body) as the document
says. Bounded: a few examples per operation, deterministic, well under a minute here."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import httpx
import trio

from bench.relayhttp import start_relay_process
from relay import admin

ST = Path(sys.executable).with_name("st")


async def test_the_client_api_matches_its_openapi_document(tmp_path: Path) -> None:
    assert ST.exists() or shutil.which("st"), "schemathesis is in the test extras"
    relay = await start_relay_process(tmp_path)
    try:
        token = await trio.to_thread.run_sync(admin.create_device_token, relay.data_dir, "st")
        with trio.fail_after(120):
            result = await trio.run_process(
                [
                    str(ST),
                    "run",
                    f"{relay.url}/api/openapi.json",
                    "--header",
                    f"Authorization: Bearer {token}",
                    "--checks",
                    "all",
                    "--max-examples",
                    "20",
                    "--request-timeout",
                    "10",
                    "--generation-deterministic",
                    "--no-color",
                ],
                check=False,
                capture_stdout=True,
                capture_stderr=True,
                cwd=str(tmp_path),
            )
    finally:
        await relay.stop()
    report = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert result.returncode == 0, report[-8000:]
    assert "internal error" not in relay.log(), relay.log()[-4000:]


async def test_a_405_on_a_session_lists_every_method_it_takes(http: httpx.AsyncClient) -> None:
    # Found by schemathesis: GET and PATCH were two routes, and the 405 named only one.
    response = await http.request("OPTIONS", "/api/sessions/ses_x")
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert allowed == {"GET", "HEAD", "PATCH"}
