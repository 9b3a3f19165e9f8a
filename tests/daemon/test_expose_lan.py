"""``rcd start --expose lan`` for real: the daemon (the real CLI against the fake Messages
API) in a network namespace of its own, a phone in another, joined by a veth pair with
addresses of the test's choosing. The phone pins the certificate by the fingerprint the
daemon showed, signs in with the link and drives a session; plain HTTP gets nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from daemon.lan import fingerprint, lan_certificate
from relay import RelayConfig
from relay.errors import RelayError
from relay.server import check_bind
from testkit.fakes import claude_env, find_claude
from testkit.harness import REPO, home_env
from testkit.privileges import needs_root
from testkit.waiting import eventually_sync

#: Addresses of the test's choosing (a /30 no real network uses here).
DAEMON_ADDRESS, PHONE_ADDRESS = "10.213.77.1", "10.213.77.2"


@attrs.frozen
class Namespaces:
    daemon: str
    phone: str

    def run(self, ns: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    needs_root("to make network namespaces")
    if shutil.which("ip") is None:
        pytest.fail("needs the ip command: apt-get install iproute2")
    tag = f"{os.getpid() % 100000}"
    spaces = Namespaces(daemon=f"rcd-d{tag}", phone=f"rcd-p{tag}")
    made: list[str] = []
    try:
        for ns in (spaces.daemon, spaces.phone):
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", f"vd{tag}", "netns", spaces.daemon, "type", "veth",
           "peer", "name", f"vp{tag}", "netns", spaces.phone)  # fmt: skip
        ip("-n", spaces.daemon, "addr", "add", f"{DAEMON_ADDRESS}/30", "dev", f"vd{tag}")
        ip("-n", spaces.phone, "addr", "add", f"{PHONE_ADDRESS}/30", "dev", f"vp{tag}")
        ip("-n", spaces.daemon, "link", "set", f"vd{tag}", "up")
        ip("-n", spaces.phone, "link", "set", f"vp{tag}", "up")
        # The daemon's machine reaches its network through the phone's side (its LAN).
        ip("-n", spaces.daemon, "route", "add", "default", "via", PHONE_ADDRESS)
        yield spaces
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)


def test_a_phone_on_the_lan_pins_the_certificate_signs_in_and_drives_a_session(
    namespaces: Namespaces, tmp_path: Path
) -> None:
    claude = find_claude()
    home = tmp_path / "home"
    project = tmp_path / "project"
    project.mkdir()
    api = subprocess.Popen(
        namespaces.run(
            namespaces.daemon, sys.executable, "-c",
            "from testkit.fakes.messages_api import main; main()",
        ),
        stdout=subprocess.PIPE, cwd=str(REPO),
    )  # fmt: skip
    daemon = None
    try:
        assert api.stdout is not None
        base_url = api.stdout.readline().decode().strip().split("=", 1)[1]
        env = home_env(home, claude_env(home, base_url))
        log_path = tmp_path / "daemon.log"
        with log_path.open("wb") as log:
            daemon = subprocess.Popen(
                namespaces.run(
                    namespaces.daemon, sys.executable, "-m", "daemon", "start", str(project),
                    "--expose", "lan", "--relay-port", "0", "--agent-bin", claude,
                ),
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO),
            )  # fmt: skip

        def shown() -> tuple[str, str] | None:
            text = log_path.read_text()
            if daemon.poll() is not None:
                raise AssertionError(f"the daemon exited {daemon.returncode}: {text}")
            link = re.search(r"sign in from your phone or any browser: (\S+)", text)
            sha = re.search(r"fingerprint it shows is ([0-9A-F:]{95})", text)
            online = "registered with" in text
            return (link.group(1), sha.group(1)) if link and sha and online else None

        link, sha256 = eventually_sync(shown, timeout=30, what="the daemon's sign-in link")
        assert link.startswith(f"https://{DAEMON_ADDRESS}:")
        phone = subprocess.run(
            namespaces.run(
                namespaces.phone, sys.executable, "-m", "testkit.lan_phone", link, sha256,
                "hello from the lan",
            ),
            capture_output=True, cwd=str(REPO), timeout=120, env=dict(os.environ),
        )  # fmt: skip
        assert phone.returncode == 0, phone.stderr.decode()
        seen = json.loads(phone.stdout)
        assert seen["fingerprint_matches"] is True
        assert not seen["plain_http"].startswith("HTTP/"), seen["plain_http"]
        assert seen["sign_in"] == 200 and seen["online"] == [True]
        assert seen["created"] == 201
        assert seen["session_url"].startswith(f"https://{DAEMON_ADDRESS}:")
        assert seen["texts"] == ["echo: hello from the lan"]
        assert seen["unpinned"].startswith("refused")
        # Kept for the next start: the same certificate, the same fingerprint, 0600.
        relay_dir = Path(env["XDG_DATA_HOME"]) / "rcd" / "relay"
        for name in ("lan-cert.pem", "lan-key.pem"):
            assert (relay_dir / name).stat().st_mode & 0o777 == 0o600
        kept = lan_certificate(relay_dir, DAEMON_ADDRESS, "anything")
        assert kept.fingerprint == sha256
    finally:
        for process in (daemon, api):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
        if api.stdout is not None:
            api.stdout.close()


def test_doctor_says_whether_there_is_an_address_to_serve_on(
    namespaces: Namespaces, tmp_path: Path
) -> None:
    def lan_finding(ns: str) -> dict[str, str]:
        done = subprocess.run(
            namespaces.run(ns, sys.executable, "-m", "daemon", "doctor", "--expose", "lan",
                           "--json", str(tmp_path)),
            env=home_env(tmp_path / "home"), capture_output=True, cwd=str(REPO), timeout=60,
        )  # fmt: skip
        document = json.loads(done.stdout)
        [found] = [c for c in document["checks"] if c["name"] == "lan"]
        return found  # type: ignore[no-any-return]

    ok = lan_finding(namespaces.daemon)
    assert ok["status"] == "ok" and f"https://{DAEMON_ADDRESS}:7878" in ok["detail"]
    # The phone's side has an address but no route out: nothing to serve on.
    problem = lan_finding(namespaces.phone)
    assert problem["status"] == "problem" and "no network route" in problem["detail"]
    assert "docs/phone.md" in (problem["fix"] or "")


def test_a_certificate_is_made_once_per_address(tmp_path: Path) -> None:
    first = lan_certificate(tmp_path, "192.168.1.20", "laptop")
    assert lan_certificate(tmp_path, "192.168.1.20", "laptop") == first
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = x509.load_pem_x509_certificate(first.cert.read_bytes())
    assert fingerprint(cert.public_bytes(Encoding.DER)) == first.fingerprint
    # Another address (the machine moved networks): a new one, for it.
    moved = lan_certificate(tmp_path, "10.0.0.7", "laptop")
    assert moved.fingerprint != first.fingerprint
    # A key that is not the certificate's (a write cut between the two), or one others
    # may read: a new pair.
    key = moved.key.read_bytes()
    first_again = lan_certificate(tmp_path / "other", "10.0.0.7", "laptop")
    moved.key.write_bytes(first_again.key.read_bytes())
    remade = lan_certificate(tmp_path, "10.0.0.7", "laptop")
    assert remade.fingerprint != moved.fingerprint and remade.key.read_bytes() != key
    remade.key.chmod(0o644)
    assert lan_certificate(tmp_path, "10.0.0.7", "laptop").fingerprint != remade.fingerprint
    assert remade.key.stat().st_mode & 0o777 == 0o600


def test_the_lan_listener_refuses_to_exist_without_tls(tmp_path: Path) -> None:
    with pytest.raises(RelayError, match="without TLS"):
        check_bind(RelayConfig(data_dir=tmp_path, lan_host="192.168.1.20"))
