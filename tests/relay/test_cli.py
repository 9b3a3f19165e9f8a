"""``rcd relay``: each option sets its RelayConfig field, and their defaults (in the config
and in ``--help``) are RelayConfig's alone; the process logs JSON lines only, Hypercorn's
included, and SIGTERM stops it."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from cli.main import build_parser
from relay import RelayConfig
from relay.cli import relay_config
from testkit.harness import REPO

from .conftest import GUARD


def parse(*args: str) -> argparse.Namespace:
    return build_parser().parse_args(["relay", *args])


def test_options_not_given_take_relay_configs_defaults(tmp_path: Path) -> None:
    assert relay_config(parse("--data-dir", str(tmp_path))) == RelayConfig(data_dir=tmp_path)


def test_each_option_sets_its_field(tmp_path: Path) -> None:
    args = parse(
        *("--data-dir", str(tmp_path), "--host", "::1", "--port", "0"),
        *("--public-url", "https://relay.example", "--insecure-http"),
        *("--tls-cert", "cert.pem", "--tls-key", "key.pem"),
        *("--access-token-ttl", "60", "--keepalive", "5"),
        *("--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "::1"),
    )
    assert relay_config(args) == RelayConfig(
        data_dir=tmp_path,
        host="::1",
        port=0,
        public_url="https://relay.example",
        insecure_http=True,
        tls_cert=Path("cert.pem"),
        tls_key=Path("key.pem"),
        access_token_ttl=60.0,
        keepalive_interval=5.0,
        trusted_proxies=("10.0.0.0/8", "::1"),
    )


def test_the_help_shows_relay_configs_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    shown = " ".join(capsys.readouterr().out.split())
    defaults = RelayConfig(data_dir=Path("unused"))
    assert f"address to bind (default: {defaults.host})" in shown
    assert f"port to bind (default: {defaults.port})" in shown
    assert f"access tokens (default: {defaults.access_token_ttl:g})" in shown
    assert f"ends its open downlink within it (default: {defaults.keepalive_interval:g})" in shown


async def test_the_relay_logs_json_lines_only_and_stops_on_sigterm(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "daemon", "relay", "--verbose", "--port", "0"]
    with trio.fail_after(GUARD):
        process = await trio.lowlevel.open_process(
            [*command, "--data-dir", str(tmp_path)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        try:
            out = b""
            while b"serving" not in out:
                out += await process.stdout.receive_some()
            process.send_signal(signal.SIGTERM)
            err = b""
            while chunk := await process.stderr.receive_some():
                err += chunk
            assert await process.wait() == 0
        finally:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
    lines = [json.loads(line) for line in err.decode().splitlines()]
    # Hypercorn's error log (through the standard library) comes out as structlog's lines.
    [hypercorn] = [line for line in lines if line.get("logger") == "relay.hypercorn"]
    assert hypercorn["event"].startswith("Running on http://127.0.0.1:")
    assert {"level", "timestamp"} <= hypercorn.keys()
    assert [line["event"] for line in lines if "logger" not in line] == [
        "vapid_key_made",  # a new data dir: the relay's Web Push key is made once
        "relay listening",
        "relay stopping",
        "relay stopped",
    ]
