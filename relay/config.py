"""The relay's settings: one :class:`RelayConfig` field per setting, with its default
(``rcd relay``'s options set some of them and take their defaults from here)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import attrs

import wire

__all__ = ["RelayConfig", "is_loopback", "proxy_network", "push_contact"]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def proxy_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A ``--trusted-proxy`` value: an address (``10.0.0.5``, ``::1``) or a network
    (``10.0.0.0/8``); ValueError for anything else."""
    try:
        return ipaddress.ip_network(text.strip().strip("[]"), strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or network: {text!r}") from None


def _proxies(proxies: Iterable[str]) -> tuple[str, ...]:
    """The ``--trusted-proxy`` values, each checked (ValueError for a bad one)."""
    values = tuple(proxies)
    for proxy in values:
        proxy_network(proxy)
    return values


_SUBJECT_HOST = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_CONTACT = re.compile(r"mailto:[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+|https://[A-Za-z0-9.-]+")


def push_contact(value: str | None) -> str | None:
    """``--push-contact``: a ``mailto:`` address or an ``https://`` host (ValueError else)."""
    if value is not None and not _CONTACT.fullmatch(value):
        raise ValueError(
            f"a push contact is mailto:you@example.com or https://example.com, not {value!r}"
        )
    return value


@attrs.frozen(kw_only=True)
class RelayConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    #: 0 picks a free port; :class:`relay.server.RunningRelay` reports the one bound.
    port: int = 7878
    #: The URL clients reach the relay at (behind a reverse proxy, say). Default: derived
    #: from host, port and TLS.
    public_url: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: A second address to listen on, over TLS (``tls_cert`` and ``tls_key``), on the same
    #: port, while ``host`` (loopback) speaks plain HTTP for this machine's own commands:
    #: ``rcd start --expose lan``. The public URL is then this address's.
    lan_host: str | None = None
    #: Allow plain HTTP on a non-loopback host (a warning is logged).
    insecure_http: bool = False
    #: Seconds between ``: keep-alive`` comments on an idle SSE stream.
    keepalive_interval: float = wire.KEEPALIVE_INTERVAL
    #: Seconds a daemon's access token (link or session) lives.
    access_token_ttl: float = 900.0
    #: The most sessions one environment may run at once (a daemon's ``--capacity`` above
    #: it is refused at registration).
    max_sessions_per_environment: int = 256
    #: Failed sign-in (login link) or pairing attempts allowed per address per minute.
    failed_attempts_per_minute: int = 10
    #: Seconds an environment may be offline (a link renewed, a daemon reconnecting after a
    #: cut or a relay restart) before its sessions show ``disconnected`` and inputs to them
    #: are refused (``409 environment_offline``) instead of queued.
    offline_grace: float = 30.0
    #: Seconds a settings change waits for the daemon to apply it before the answer says
    #: "queued" (``202``).
    settings_wait: float = 10.0
    #: Seconds a client's call about a session's work waits for its daemon's answer (a
    #: push waits five times as long: a remote over the network).
    changes_wait: float = 30.0
    #: Seconds a request body may take to arrive in full, once its caller is
    #: authenticated; past it the answer is 408 ``body_timeout`` and the connection closes.
    body_deadline: float = 30.0
    #: The same for a daemon's event uploads, which it opens before their batch exists and
    #: ends itself after 30 s without one.
    uplink_deadline: float = 60.0
    #: Seconds the requests in flight get to finish when the relay stops gracefully (live
    #: streams end at once); then they are cancelled. Hypercorn's own default.
    stop_timeout: float = 3.0
    #: Seconds an idle keep-alive connection stays open. Longer than a client's own pool
    #: keeps one (httpx: 5 s), so a client never sends on a connection the relay is closing
    #: at that very moment (httpx does not retry that; Hypercorn's 5 s default raced it).
    keep_alive_timeout: float = 20.0
    #: Reverse proxies (addresses or networks) whose ``X-Forwarded-For`` names the client
    #: that failed-attempt limits count against; from anyone else the header is ignored.
    trusted_proxies: tuple[str, ...] = attrs.field(default=(), converter=_proxies)
    #: Who runs this relay, as push services are told (a ``mailto:`` or ``https:`` URL;
    #: they may write to it about abuse). Default: the relay's URL when it is https.
    push_contact: str | None = attrs.field(default=None, converter=push_contact)
    #: Take push endpoints on plain HTTP at a loopback address (a push service on this
    #: machine: the tests' fake). Never for a relay people use.
    push_loopback_http: bool = False
    #: A command run for every notification, with it as JSON on its standard input
    #: (``--notify-command``): ntfy, a chat webhook, anything. Empty: none.
    notify_command: tuple[str, ...] = ()

    @property
    def push_subject(self) -> str:
        """The VAPID ``sub``: ``push_contact``, else the relay's https origin without a port
        (as push services take it), else a placeholder address."""
        if self.push_contact:
            return self.push_contact
        if self.url.startswith("https://"):
            host = urlsplit(self.url).hostname or ""
            if _SUBJECT_HOST.fullmatch(host):
                return f"https://{host}"
        return "mailto:rcd-relay@localhost"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def url(self) -> str:
        """The public base URL, without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        if self.lan_host:
            host = f"[{self.lan_host}]" if ":" in self.lan_host else self.lan_host
            return f"https://{host}:{self.port}"
        return self.local_url

    @property
    def local_url(self) -> str:
        """The URL of the socket on ``host`` (``url`` without ``public_url`` or
        ``lan_host``)."""
        scheme = "https" if self.tls and not self.lan_host else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def secure_cookies(self) -> bool:
        """Mark cookies ``Secure`` when browsers reach the relay over HTTPS."""
        return self.tls or self.url.startswith("https://")
