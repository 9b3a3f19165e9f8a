"""The embedded relay's data dir and credential (``rcd start`` with no ``--relay``).

One environment per machine and directory across restarts: the daemon keeps the
credential it minted beside the relay's database and presents it again at every start
(the relay maps the same credential, machine, directory and name to the same environment).

One relay per data dir: an embedded relay never opens a data dir that another running
relay serves (it would mark that relay's environments offline and register strays in its
database). Imported only in embedded mode.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import attrs
import httpx
import structlog
import trio

from relay import RelayConfig, SqliteStorage, serve_relay
from relay.admin import create_login_link
from relay.auth import hash_secret
from relay.errors import RelayError
from relay.server import read_relay_url

from .errors import DaemonError
from .paths import data_dir, directory_key, load_embedded_credential, save_embedded_credential

if TYPE_CHECKING:
    from .expose import Tailscale
    from .options import StartOptions

log = structlog.get_logger("daemon")

__all__ = [
    "LOCAL_ONLY",
    "Embedded",
    "lan_warning",
    "default_relay_dir",
    "embedded_credential",
    "port_taken_message",
    "relay_dir_for",
    "relay_serving",
    "start_embedded_relay",
]


#: Said at start (and on the live screen) when the sign-in link is a loopback one.
LOCAL_ONLY = (
    "this link works on this machine only; to open it from your phone: --expose tailscale,"
    " or --expose lan (same network, a certificate of its own), or publish the relay"
    " yourself (Caddy, nginx, cloudflared) and pass --public-url, or host a relay: see"
    " docs/phone.md"
)


def lan_warning(fingerprint: str) -> str:
    """What to check before trusting the LAN certificate (its fingerprint, in full)."""
    return (
        "the certificate is this machine's own: your browser warns once; go on only if the"
        f" SHA-256 fingerprint it shows is {fingerprint}"
    )


@attrs.frozen(kw_only=True)
class Embedded:
    """The embedded relay, as the daemon uses it."""

    #: Its loopback URL (this machine's commands).
    local_url: str
    #: This machine's environment credential for it.
    credential: str
    #: A one-time sign-in link (its public URL).
    sign_in: str
    #: Reaches the relay without a socket (the daemon's own calls).
    transport: httpx.AsyncBaseTransport
    #: SHA-256 of its LAN certificate (``--expose lan``), shown beside the QR code.
    fingerprint: str | None = None


def default_relay_dir() -> Path:
    return data_dir() / "relay"


def port_taken_message(port: int) -> str:
    return (
        f"port {port} on 127.0.0.1 is taken, so the embedded relay cannot run (is another"
        " 'rcd start' running on this machine? 'rcd status DIR' tells). To run several"
        " daemons here, start one relay ('rcd relay') and pass --relay URL to each; or give"
        " this daemon an embedded relay of its own with --relay-port 0 (it then keeps its"
        " data in a directory of its own, and the running daemon is not disturbed)"
    )


async def relay_serving(relay_dir: Path) -> str | None:
    """The URL of a relay that runs on ``relay_dir`` now, or None.

    Asks the URL the last relay on that dir announced (``relay.json``) for its API
    description; anything but a relay's answer within a second means none runs there.
    """
    try:
        url = await trio.to_thread.run_sync(lambda: read_relay_url(relay_dir, local=True))
    except RelayError:
        return None
    if url is None:
        return None
    try:
        async with httpx.AsyncClient(timeout=1.0) as http:
            response = await http.get(f"{url}/api/openapi.json")
            answered = response.status_code == 200 and "openapi" in response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return url if answered else None


async def relay_dir_for(directory: Path, chosen: Path | None, port: int) -> tuple[Path, str | None]:
    """The data dir of ``directory``'s embedded relay, and a note for the user when it is
    not the usual one.

    ``chosen`` (``--relay-data-dir``) is used as given, unless another relay serves it:
    :class:`DaemonError`. Without it, the default dir is used; while another relay serves
    that one, a dir of this directory's own (the same one at every start).
    """
    relay_dir = chosen or default_relay_dir()
    running = await relay_serving(relay_dir)
    if running is None:
        return relay_dir, None
    if chosen is not None:
        raise DaemonError(
            f"the relay data dir {relay_dir} is in use by the relay at {running} (another"
            " 'rcd start' or 'rcd relay'); sharing it would disturb that relay's daemons."
            " Pass --relay-data-dir with a directory of its own"
        )
    if port != 0 and running.rstrip("/").endswith(f":{port}"):
        raise DaemonError(port_taken_message(port))
    own = data_dir() / "relays" / f"{directory.name or 'root'}-{directory_key(directory)}"
    if await relay_serving(own) is not None:
        raise DaemonError(f"another rcd daemon already serves {directory}")
    return own, (
        f"the relay at {running} uses {relay_dir}; this daemon's embedded relay keeps its"
        f" data in {own}"
    )


async def embedded_credential(storage: SqliteStorage, relay_dir: Path, machine: str) -> str:
    """This machine's environment credential for the embedded relay on ``relay_dir``: the
    stored one while the relay knows it, else a new one (stored for the next start)."""
    stored = await trio.to_thread.run_sync(load_embedded_credential, relay_dir)
    known = stored is not None and (
        await storage.authenticate_environment_credential(hash_secret(stored)) is not None
    )
    if stored is not None and known:
        return stored
    credential = await storage.create_environment_credential(machine)
    await trio.to_thread.run_sync(save_embedded_credential, relay_dir, credential)
    return credential


async def start_embedded_relay(
    root: trio.Nursery,
    options: StartOptions,
    out: TextIO,
    machine: str,
    tailscale: Tailscale | None = None,
) -> Embedded:
    """Start the relay in this process on 127.0.0.1 (on a data dir no other relay serves),
    get this machine's credential (the same at every start) and a sign-in link. With
    ``tailscale``, the relay is published on the tailnet (the caller undoes it on stop);
    with ``--expose lan``, it listens on the LAN address too, over TLS (:mod:`daemon.lan`)."""
    relay_dir, note = await relay_dir_for(
        options.directory.resolve(), options.relay_data_dir, options.relay_port
    )
    if note is not None:
        print(f"rcd: {note}", file=out)
    public = options.public_url
    if tailscale is not None:
        public = await tailscale.url()
    config = RelayConfig(
        host="127.0.0.1",
        port=options.relay_port,
        data_dir=relay_dir,
        public_url=public,
        # Behind a proxy on this machine every phone comes from loopback: the proxy's
        # X-Forwarded-For names the one that failed-attempt limits count against.
        trusted_proxies=("127.0.0.1", "::1") if public else (),
        notify_command=options.notify_command or (),
    )
    lan = None
    if options.expose == "lan":
        from .lan import lan_address, lan_certificate

        address = lan_address()
        lan = await trio.to_thread.run_sync(
            lan_certificate, relay_dir, address, socket.gethostname()
        )
        config = attrs.evolve(config, lan_host=address, tls_cert=lan.cert, tls_key=lan.key)
    try:
        running = await root.start(serve_relay, config)
    except RelayError as exc:
        if isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.EADDRINUSE:
            raise DaemonError(port_taken_message(options.relay_port)) from exc
        raise
    if tailscale is not None:
        await tailscale.serve(running.port)
    credential = await embedded_credential(running.storage, relay_dir, machine)
    link = await trio.to_thread.run_sync(
        lambda: create_login_link(relay_dir, public_url=running.url)
    )
    if lan is not None:
        print(
            f"rcd: relay running at {running.local_url} (embedded), and on your network at"
            f" {running.url} (TLS)",
            file=out,
        )
        print(f"rcd: sign in from your phone or any browser: {link}", file=out)
        print(f"rcd: {lan_warning(lan.fingerprint)}", file=out, flush=True)
        log.info("lan_certificate", url=running.url, sha256=lan.fingerprint)
    elif public:
        print(
            f"rcd: relay running at {running.local_url} (embedded), published at {public}", file=out
        )
        print(f"rcd: sign in from your phone or any browser: {link}", file=out, flush=True)
    else:
        print(f"rcd: relay running at {running.url} (embedded, loopback only)", file=out)
        print(f"rcd: sign in from a browser on this machine: {link}", file=out)
        print(f"rcd: {LOCAL_ONLY}", file=out, flush=True)
        log.info("sign_in_local_only", hint=LOCAL_ONLY)
    return Embedded(
        local_url=running.local_url,
        credential=credential,
        sign_in=link,
        transport=running.local,
        fingerprint=lan.fingerprint if lan is not None else None,
    )
