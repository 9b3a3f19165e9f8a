"""``rcd start --expose tailscale`` against a stand-in ``tailscale`` on PATH
(``testkit/fakes/tailscale.py``: it records its arguments and answers ``status --json`` with
a sample in ``testkit/fakes/tailscale_samples/``): the relay is published on the tailnet
while the daemon runs, the links use the tailnet name, and the publication is undone when
the daemon stops on SIGTERM; a missing, stopped or logged-out Tailscale is a clear error."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import attrs
import trio

import testkit.fakes
from testkit.harness import home_env, rcd

from .test_embedded import start_embedded, wait_logged

SAMPLES = Path(testkit.fakes.__file__).parent / "tailscale_samples"


@attrs.define
class Tailnet:
    env: dict[str, str]
    state: Path

    def logged(self, sample: str | None) -> None:
        """Answer ``status --json`` with ``sample`` (None: tailscaled not running)."""
        status = self.state / "status.json"
        if sample is None:
            status.unlink(missing_ok=True)
        else:
            shutil.copy(SAMPLES / f"{sample}.json", status)

    def calls(self) -> list[list[str]]:
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def serving(self) -> dict[str, object]:
        path = self.state / "serve.json"
        served: dict[str, object] = json.loads(path.read_text()) if path.exists() else {}
        return served


def tailnet(tmp_path: Path) -> Tailnet:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "tailscale"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m testkit.fakes.tailscale "$@"\n')
    wrapper.chmod(0o755)
    state = tmp_path / "tailscale"
    state.mkdir()
    env = home_env(tmp_path / "home")
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env["FAKE_TAILSCALE_DIR"] = str(state)
    return Tailnet(env=env, state=state)


async def test_published_on_the_tailnet_while_it_runs_and_undone_on_sigterm(
    tmp_path: Path,
) -> None:
    net = tailnet(tmp_path)
    net.logged("running")
    process, out = await start_embedded(
        tmp_path, net.env, "tailnet", extra=("--expose", "tailscale")
    )
    try:
        await wait_logged(process, out, "registered with")
        text = out.read_text()
        assert (
            "sign in from your phone or any browser: https://box.tail1234.ts.net/login?code="
            in (text)
        ), text
        assert "published at https://box.tail1234.ts.net" in text
        assert "works on this machine only" not in text
        port = int(text.split("relay running at http://127.0.0.1:")[1].split()[0])
        serve = ["serve", "--bg", "--https=443", f"http://127.0.0.1:{port}"]
        assert net.calls() == [["status", "--json"], ["serve", "status", "--json"], serve]
        assert net.serving()["Web"] == {
            "box.tail1234.ts.net:443": {"Handlers": {"/": {"Proxy": f"http://127.0.0.1:{port}"}}}
        }
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            code = await process.wait()
    assert code == 0, out.read_text()
    assert net.calls()[-1] == ["serve", "--https=443", "off"]
    assert net.serving()["Web"] == {}


async def test_a_missing_stopped_or_logged_out_tailscale_says_what_to_do(tmp_path: Path) -> None:
    net = tailnet(tmp_path)
    project = tmp_path / "project"
    project.mkdir()

    async def start() -> str:
        done = await rcd(
            net.env, "start", str(project), "--expose", "tailscale", "--no-agent-check", check=False
        )
        assert done.returncode == 1, done.stdout
        return done.stderr.decode()

    net.logged("needs-login")
    said = await start()
    assert "not logged in to Tailscale" in said and "tailscale up" in said
    net.logged(None)
    said = await start()
    assert "tailscaled" in said and "systemctl start tailscaled" in said
    # Something else already served on the tailnet's HTTPS port: not taken over.
    net.logged("running")
    (net.state / "serve.json").write_text(
        json.dumps(
            {
                "TCP": {"443": {"HTTPS": True}},
                "Web": {
                    "box.tail1234.ts.net:443": {
                        "Handlers": {"/": {"Proxy": "http://127.0.0.1:3000"}}
                    }
                },
            }
        )
    )
    said = await start()
    assert "already publishes / → http://127.0.0.1:3000" in said and "--public-url" in said
    assert not [c for c in net.calls() if c[:2] == ["serve", "--bg"]]
    # No tailscale at all.
    env = dict(net.env, PATH=net.env["PATH"].split(":", 1)[1])
    done = await rcd(
        env, "start", str(project), "--expose", "tailscale", "--no-agent-check", check=False
    )
    assert done.returncode == 1 and "install Tailscale" in done.stderr.decode()
    # And it means nothing beside a hosted relay or a URL of one's own.
    for extra in (["--public-url", "https://x.example"], ["--relay", "https://relay.example"]):
        done = await rcd(
            net.env, "start", str(project), "--expose", "tailscale", *extra, check=False
        )
        assert done.returncode == 1 and "--expose" in done.stderr.decode(), done.stderr


async def test_a_service_is_not_installed_with_options_that_cannot_go_together(
    tmp_path: Path,
) -> None:
    env = home_env(tmp_path / "home")

    async def install(*extra: str) -> subprocess.CompletedProcess[bytes]:
        return await rcd(
            env,
            *("service", "install", "--print", "--platform", "linux", "--expose", "tailscale"),
            *extra,
            str(tmp_path),
            check=False,
        )

    for extra in (["--public-url", "https://x.example"], ["--relay", "https://relay.example"]):
        done = await install(*extra)
        assert done.returncode == 1 and "--expose tailscale publishes" in done.stderr.decode()
    printed = await install()
    assert printed.returncode == 0 and "--expose=tailscale" in printed.stdout.decode()
