"""Reaching a relay safely: no plain HTTP to another machine unless asked (and then a
warning at every start), certificates refused with a message that says why and how to
trust a private CA (--ca-cert, SSL_CERT_FILE), and attach's token kept out of `ps`."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from daemon.errors import ConfigError
from daemon.transport import check_relay_url, is_loopback_url, tls_context
from relay import RelayConfig, RunningRelay, admin, serve_relay
from testkit.harness import TINY_AGENT, Relay, home_env, rcd, start_daemon, start_relay
from tests.attach.pty_client import attach_argv, run_attach_plain

REFUSED = "refusing plain HTTP to"


# -- plain HTTP ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:7878",
        "http://127.9.8.7",
        "http://[::1]:7878/",
        "http://localhost:1",
        "http://LOCALHOST",
        "https://relay.example.org",
    ],
)
def test_loopback_and_https_need_no_flag(url: str) -> None:
    assert check_relay_url(url, insecure_http=False) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://relay.example.org",
        "http://10.0.0.5:7878",
        "http://[fd00::2]:7878",
        "http://localhost.example.org",
        "http://127.0.0.1.nip.io",
        "http://[::ffff:10.0.0.1]",
    ],
)
def test_plain_http_to_another_machine_needs_the_flag(url: str) -> None:
    assert not is_loopback_url(url)
    with pytest.raises(ConfigError, match="--insecure-http") as refused:
        check_relay_url(url, insecure_http=False)
    assert REFUSED in str(refused.value) and "https://" in str(refused.value)
    assert check_relay_url(url, insecure_http=True) == url


async def test_each_command_refuses_plain_http_to_another_machine(tmp_path: Path) -> None:
    env = home_env(tmp_path / "home")
    far = "http://relay.example.org:7878"
    project = tmp_path / "project"
    project.mkdir()
    commands: list[tuple[str, ...]] = [
        ("pair", far, "CODE"),
        ("start", str(project), "--relay", far),
        ("attach", "ses_x", "--relay", far, "--token", "t"),
    ]
    for args in commands:
        result = await rcd(env, *args, check=False)
        err = result.stderr.decode()
        assert result.returncode == 1, (args, err)
        assert f"{REFUSED} {far}" in err and "--insecure-http" in err, (args, err)
        assert "Traceback" not in err
    # The same rule for the relay named in config.toml.
    config = tmp_path / "home" / ".config" / "rcd" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'relay = "{far}"\n')
    commands = [("start", str(project)), ("attach", "ses_x", "--token", "t")]
    for args in commands:
        result = await rcd(env, *args, check=False)
        assert result.returncode == 1 and f"{REFUSED} {far}".encode() in result.stderr, args


def outward_address() -> str | None:
    """This machine's address on a non-loopback interface (no packet is sent), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.123", 9))
        except OSError:
            return None
        address: str = s.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.fixture
async def open_relay(tmp_path: Path) -> AsyncIterator[Relay]:
    """A relay bound to every interface over plain HTTP, reached at a non-loopback address."""
    address = outward_address()
    if address is None:
        # Never a silent skip: what this shows (plain HTTP to another machine, allowed with
        # the flag) needs the relay reached by an address that is not loopback.
        pytest.fail(
            "this machine has no address other than loopback: the test reaches the relay at "
            "one to stand for another machine (bring up any network interface)"
        )
    data = tmp_path / "relay"
    config = RelayConfig(host="0.0.0.0", port=0, data_dir=data, insecure_http=True)
    async with trio.open_nursery() as nursery:
        running: RunningRelay = await nursery.start(serve_relay, config)
        token = await trio.to_thread.run_sync(admin.create_device_token, data, "tests")
        client = httpx.AsyncClient(
            base_url=f"http://{address}:{running.port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        relay = Relay(running=running, data_dir=data, client=client, token=token)
        yield relay
        await relay.aclose()
        nursery.cancel_scope.cancel()


async def test_with_insecure_http_each_command_works_and_warns(
    open_relay: Relay, tmp_path: Path
) -> None:
    relay = open_relay
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    env = home_env(home)
    warning = f"rcd: warning: --insecure-http: talking to {relay.url} over plain HTTP"
    code = await trio.to_thread.run_sync(admin.create_pair_code, relay.data_dir)
    paired = await rcd(env, "pair", relay.url, code, "--insecure-http")
    assert warning in paired.stderr.decode()
    daemon = await start_daemon(relay, home, project, "--insecure-http")
    sid = (await relay.create_session(daemon.environment_id, prompt="hi")).json()["id"]
    await relay.wait_kind(sid, "turn_result")
    assert await daemon.stop() == 0
    log = daemon.log()
    assert warning in log and '"insecure_http"' in log, log
    # Every start says it again.
    daemon = await start_daemon(relay, home, project, "--insecure-http")
    assert await daemon.stop() == 0
    assert warning in daemon.log()
    token_file = tmp_path / "token"
    token_file.write_text(relay.token + "\n")
    token_file.chmod(0o600)
    argv = attach_argv(sid, "--relay", relay.url, "--token-file", str(token_file))
    attached = await run_attach_plain([*argv, "--insecure-http"], env, timeout=30)
    assert attached.returncode == 0, attached
    assert warning in attached.stderr.decode() and b"echo: hi" in attached.stdout


# -- TLS ----------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=rcd test relay", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_relay(tmp_path: Path) -> AsyncIterator[tuple[Relay, Path]]:
    """A relay served over TLS with a self-signed certificate, and that certificate."""
    cert, key = self_signed(tmp_path)
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, tmp_path / "relay", tls_cert=cert, tls_key=key)
        assert relay.url.startswith("https://127.0.0.1:")
        await relay.client.aclose()
        relay.client = httpx.AsyncClient(
            base_url=relay.url,
            headers={"Authorization": f"Bearer {relay.token}"},
            timeout=10,
            verify=ssl.create_default_context(cafile=str(cert)),
        )
        yield relay, cert
        await relay.aclose()
        nursery.cancel_scope.cancel()


def says_certificate_failed(stderr: bytes) -> None:
    err = stderr.decode()
    assert "certificate verification failed for 127.0.0.1: self-signed certificate" in err, err
    assert "--ca-cert PATH" in err and "SSL_CERT_FILE" in err, err
    assert "Traceback" not in err


async def test_a_self_signed_relay_is_refused_clearly_until_trusted(
    tls_relay: tuple[Relay, Path], tmp_path: Path
) -> None:
    relay, cert = tls_relay
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    env = home_env(home)
    env.pop("SSL_CERT_FILE", None)

    # rcd pair: refused, then trusted with --ca-cert.
    code = await trio.to_thread.run_sync(admin.create_pair_code, relay.data_dir)
    refused = await rcd(env, "pair", relay.url, code, check=False)
    assert refused.returncode == 1
    says_certificate_failed(refused.stderr)
    await rcd(env, "pair", relay.url, code, "--ca-cert", str(cert))

    # rcd start: refused at once (not retried for --outage-timeout), then trusted.
    # (rcd() gives it 30 s; the outage timeout is 600 s.)
    refused = await rcd(
        env, "start", str(project), "--relay", relay.url, "--agent-bin", TINY_AGENT, check=False
    )
    assert refused.returncode == 1
    says_certificate_failed(refused.stderr)
    daemon = await start_daemon(relay, home, project, "--ca-cert", str(cert))
    sid = (await relay.create_session(daemon.environment_id, prompt="hi")).json()["id"]
    await relay.wait_kind(sid, "turn_result")

    # rcd attach: refused at once, trusted with --ca-cert or SSL_CERT_FILE; the token from
    # $RCD_TOKEN.
    argv = attach_argv(sid, "--relay", relay.url)
    refused = await run_attach_plain(argv, env | {"RCD_TOKEN": relay.token}, timeout=30)
    assert refused.returncode == 1
    says_certificate_failed(refused.stderr)
    for extra_args, extra_env in (
        (["--ca-cert", str(cert)], {}),
        ([], {"SSL_CERT_FILE": str(cert)}),
    ):
        attached = await run_attach_plain(
            [*argv, *extra_args], env | {"RCD_TOKEN": relay.token} | extra_env, timeout=30
        )
        assert attached.returncode == 0, attached
        assert b"echo: hi" in attached.stdout
    assert await daemon.stop() == 0


async def test_a_bad_ca_cert_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match=f"cannot use --ca-cert {missing}"):
        tls_context(missing)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="expected one or more CA certificates in PEM"):
        tls_context(garbage)
    result = await rcd(
        home_env(tmp_path), "pair", "https://relay.example.org", "C", "--ca-cert", str(missing),
        check=False,
    )  # fmt: skip
    assert result.returncode == 1 and f"cannot use --ca-cert {missing}".encode() in result.stderr


# -- attach's token -----------------------------------------------------------------------


def test_help_says_why_a_token_file_beats_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "attach", "--help"],
        capture_output=True,
        check=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    text = " ".join(result.stdout.split())
    assert "--token-file PATH" in text and "$RCD_TOKEN" in text
    assert "every user of this machine can read it in `ps`" in text
