"""``rcd start --expose tailscale``: the embedded relay published on the tailnet.

Through the ``tailscale`` CLI: ``tailscale status --json`` tells whether this machine is
logged in and its MagicDNS name (known before the relay starts, so its links use it), then
``tailscale serve --bg --https=443 http://127.0.0.1:PORT`` publishes the relay's port with
the tailnet's certificate, and ``tailscale serve --https=443 off`` undoes it when the daemon
stops. Nothing is opened to the internet; the phone reaches it on the tailnet.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import attrs
import structlog
import trio

from common.commands import run

from .checks import Finding, last_line
from .errors import ConfigError

__all__ = ["Tailscale", "check_tailscale", "find_tailscale", "tailnet_name"]

log = structlog.get_logger("daemon")

_TIMEOUT = 30.0
_INSTALL = "install Tailscale (https://tailscale.com/download) and log in: tailscale up"


def find_tailscale() -> Tailscale:
    """The ``tailscale`` CLI on PATH, or :class:`ConfigError` saying how to get it."""
    exe = shutil.which("tailscale")
    if exe is None:
        raise ConfigError(f"--expose tailscale: the tailscale CLI is not on PATH: {_INSTALL}")
    return Tailscale(exe)


@attrs.define
class Tailscale:
    exe: str
    #: The HTTPS port of this machine's tailnet name that serves the relay.
    https_port: int = 443
    #: Set once :meth:`serve` has published the relay (and until :meth:`unserve`).
    serving: bool = False

    async def url(self) -> str:
        """``https://<machine>.<tailnet>.ts.net``: this machine's name on the tailnet, once
        checked that Tailscale runs and is logged in, and that the HTTPS port is free."""
        host = tailnet_name(await self._json("status", "--json"))
        serve = await self._json("serve", "status", "--json")
        taken = _https_handlers(serve, self.https_port)
        if taken:
            raise ConfigError(
                f"--expose tailscale: tailscale serve already publishes {', '.join(taken)} on"
                f" https://{host}: see `tailscale serve status`; free it with `tailscale serve"
                f" --https={self.https_port} off`, or publish rcd yourself and pass --public-url"
            )
        return f"https://{host}"

    async def serve(self, port: int) -> None:
        """Publish ``127.0.0.1:port`` at the HTTPS port of this machine's tailnet name."""
        target = f"http://127.0.0.1:{port}"
        done = await self._run("serve", "--bg", f"--https={self.https_port}", target)
        if done.returncode != 0:
            raise ConfigError(
                f"--expose tailscale: `tailscale serve` failed: {_said(done)} (HTTPS"
                " certificates must be on for the tailnet: admin console, DNS page)"
            )
        self.serving = True
        log.info("tailscale_serve", target=target, https_port=self.https_port)

    async def unserve(self) -> None:
        """Undo :meth:`serve` (a failure is logged: the publication then points at a closed
        port, which answers nothing)."""
        if not self.serving:
            return
        self.serving = False
        try:
            done = await self._run("serve", f"--https={self.https_port}", "off")
        except ConfigError as exc:
            log.warning("tailscale_unserve_failed", error=str(exc))
            return
        if done.returncode != 0:
            log.warning("tailscale_unserve_failed", error=_said(done))
        else:
            log.info("tailscale_unserved", https_port=self.https_port)

    async def _json(self, *args: str) -> dict[str, Any]:
        done = await self._run(*args)
        if done.returncode != 0:
            raise ConfigError(
                f"--expose tailscale: `tailscale {' '.join(args)}` failed: {_said(done)} (is"
                " tailscaled running? sudo systemctl start tailscaled)"
            )
        try:
            value = json.loads(done.stdout or b"null")
        except ValueError as exc:
            raise ConfigError(
                f"--expose tailscale: `tailscale {' '.join(args)}` printed no JSON ({exc})"
            ) from None
        return value if isinstance(value, dict) else {}

    async def _run(self, *args: str) -> Any:
        try:
            with trio.fail_after(_TIMEOUT):
                return await trio.run_process(
                    [self.exe, *args],
                    stdin=b"",
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
        except trio.TooSlowError:
            raise ConfigError(
                f"--expose tailscale: `tailscale {' '.join(args)}` gave no answer in"
                f" {_TIMEOUT:.0f} s"
            ) from None
        except OSError as exc:
            raise ConfigError(f"--expose tailscale: cannot run {self.exe}: {exc}") from None


def tailnet_name(status: dict[str, Any]) -> str:
    """This machine's MagicDNS name from ``tailscale status --json``, or :class:`ConfigError`
    saying why there is none to publish on (not logged in, stopped, no MagicDNS)."""
    state = status.get("BackendState")
    if state != "Running":
        why = {
            "NeedsLogin": "this machine is not logged in to Tailscale",
            "NeedsMachineAuth": "this machine waits for approval in the tailnet's admin console",
            "Stopped": "Tailscale is stopped",
        }.get(str(state), f"Tailscale is not running (state {state!r})")
        raise ConfigError(f"--expose tailscale: {why}: run `tailscale up`, then start again")
    me = status.get("Self")
    name = me.get("DNSName") if isinstance(me, dict) else None
    if not isinstance(name, str) or not name.strip("."):
        raise ConfigError(
            "--expose tailscale: this machine has no MagicDNS name: turn on MagicDNS and"
            " HTTPS certificates in the tailnet's admin console (DNS page)"
        )
    return name.rstrip(".")


def _https_handlers(serve: dict[str, Any], port: int) -> list[str]:
    """What a ``tailscale serve status --json`` config serves on HTTPS ``port``."""
    found = []
    web = serve.get("Web")
    if isinstance(web, dict):
        for host_port, site in web.items():
            if not str(host_port).endswith(f":{port}") or not isinstance(site, dict):
                continue
            handlers = site.get("Handlers")
            if isinstance(handlers, dict):
                for path, handler in handlers.items():
                    target = handler.get("Proxy") if isinstance(handler, dict) else None
                    found.append(f"{path} → {target or handler}")
    tcp = serve.get("TCP")
    if not found and isinstance(tcp, dict) and isinstance(tcp.get(str(port)), dict):
        handler = tcp[str(port)]
        if handler.get("TCPForward"):
            found.append(f"TCP → {handler['TCPForward']}")
    return found


def _said(done: Any) -> str:
    text = (done.stderr or b"").decode(errors="replace").strip() or (done.stdout or b"").decode(
        errors="replace"
    ).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else f"exit status {done.returncode}"


def check_tailscale() -> Finding:
    """What ``--expose tailscale`` needs: the CLI, tailscaled running, this machine logged
    in with a MagicDNS name."""
    tailscale = shutil.which("tailscale")
    if tailscale is None:
        return Finding(
            name="tailscale",
            status="problem",
            detail="the tailscale CLI is not on PATH",
            fix="install Tailscale (https://tailscale.com/download) and log in: tailscale up",
        )
    done = run([tailscale, "status", "--json"], timeout=_TIMEOUT)
    if not done.ok:
        return Finding(
            name="tailscale",
            status="problem",
            detail=f"`tailscale status` failed: {last_line(done.output) or done.output}",
            fix="start tailscaled (sudo systemctl start tailscaled), then tailscale up",
        )
    try:
        status = json.loads(done.output)
        host = tailnet_name(status if isinstance(status, dict) else {})
    except ValueError as exc:
        return Finding(name="tailscale", status="problem", detail=f"no JSON: {exc}")
    except ConfigError as exc:
        detail, _, fix = str(exc).removeprefix("--expose tailscale: ").partition(": ")
        return Finding(name="tailscale", status="problem", detail=detail, fix=fix or None)
    return Finding(
        name="tailscale", status="ok", detail=f"the relay would be published at https://{host}"
    )
