"""How the daemon and its commands reach a relay safely: HTTPS (or plain HTTP to loopback
only), certificates verified against the CAs the user trusts, and failures that say what
went wrong.

Every command that talks to a relay (``rcd pair``, ``rcd start --relay``, ``rcd attach``)
goes through :func:`check_relay_url` (plain ``http://`` to anything but 127.0.0.0/8, ::1
or ``localhost`` is refused unless ``--insecure-http``), :func:`tls_context` (the CAs of
``$SSL_CERT_FILE`` / ``$SSL_CERT_DIR`` or certifi's, plus ``--ca-cert``) and
:func:`unreachable` (a refused certificate becomes :class:`CertificateRejected`, which
names the host, the reason and the fix); a relay's error answer is read by
:func:`rejection`.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlsplit

from .errors import CertificateRejected, ConfigError, RelayRejected, RelayUnreachable
from .paths import normalise_relay_url

# ssl and certifi load when a context is built or an error read, not with the module: the
# parsers of rcd (``rcd --help``) use the help texts and URL checks here.
if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = [
    "INSECURE_HTTP_HELP",
    "CA_CERT_HELP",
    "check_relay_url",
    "is_loopback_url",
    "rejection",
    "tls_context",
    "unreachable",
    "warn_insecure_http",
]

INSECURE_HTTP_HELP = (
    "allow a plain http:// relay that is not on this machine (not recommended: the "
    "credentials, tokens and sessions cross the network unencrypted); http:// to "
    "127.0.0.1, ::1 or localhost needs no flag"
)
CA_CERT_HELP = (
    "trust the CA certificate(s) in PATH (PEM) for the relay's TLS certificate, besides "
    "the usual ones: for a relay with a private CA or a self-signed certificate "
    "(SSL_CERT_FILE, if set, replaces the usual ones)"
)


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


def is_loopback_url(url: str) -> bool:
    """True when ``url``'s host is this machine: ``localhost``, 127.0.0.0/8 or ::1."""
    host = _host(url).lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_relay_url(url: str, *, insecure_http: bool) -> str:
    """``url`` normalised, or a :class:`ConfigError` for plain HTTP to another machine
    without ``insecure_http`` (it would carry credentials and tokens in clear text)."""
    url = normalise_relay_url(url)
    if url.startswith("http://") and not insecure_http and not is_loopback_url(url):
        https = "https://" + url.removeprefix("http://")
        raise ConfigError(
            f"refusing plain HTTP to {url}: credentials, tokens and every session would "
            f"cross the network unencrypted, readable by anyone on the way. Use {https} "
            "(run the relay with --tls-cert/--tls-key, or behind a TLS proxy), or pass "
            "--insecure-http if you trust every network in between. (Plain http:// is "
            "allowed to 127.0.0.1, ::1 and localhost.)"
        )
    return url


def warn_insecure_http(url: str, out: TextIO | None = None) -> bool:
    """Say on ``out`` (stderr) that ``url`` is plain HTTP to another machine; returns
    whether it is (and so whether a warning was given)."""
    if not url.startswith("http://") or is_loopback_url(url):
        return False
    print(
        f"rcd: warning: --insecure-http: talking to {url} over plain HTTP; credentials, "
        "tokens and sessions cross the network unencrypted",
        file=out or sys.stderr,
        flush=True,
    )
    return True


def tls_context(ca_cert: Path | None = None) -> ssl.SSLContext:
    """The context that verifies a relay's certificate.

    The usual CAs are ``$SSL_CERT_FILE`` (a bundle) or ``$SSL_CERT_DIR`` when set (as
    OpenSSL and httpx read them), else certifi's; ``ca_cert`` adds the CA certificates of
    one PEM file. Raises :class:`ConfigError` naming a file that cannot be used.
    """
    import ssl

    import certifi

    cafile = os.environ.get("SSL_CERT_FILE")
    capath = os.environ.get("SSL_CERT_DIR")
    try:
        if cafile:
            context = ssl.create_default_context(cafile=cafile)
        elif capath:
            context = ssl.create_default_context(capath=capath)
        else:
            context = ssl.create_default_context(cafile=certifi.where())
    except (OSError, ssl.SSLError) as exc:
        name = f"SSL_CERT_FILE={cafile}" if cafile else f"SSL_CERT_DIR={capath}"
        raise ConfigError(f"cannot use {name}: {_reason(exc)}") from None
    if ca_cert is not None:
        try:
            context.load_verify_locations(cafile=os.fspath(ca_cert))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot use --ca-cert {ca_cert}: {_reason(exc)} (expected one or more "
                "CA certificates in PEM: -----BEGIN CERTIFICATE-----)"
            ) from None
    return context


def _reason(exc: BaseException) -> str:
    import ssl

    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate failure at the root of ``exc``, if that is what it is."""
    import ssl

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        current = current.__cause__ or current.__context__
    return None


def unreachable(relay: str, exc: BaseException, detail: str) -> RelayUnreachable:
    """The error for a failed request to ``relay``: :class:`CertificateRejected` when TLS
    refused the relay's certificate (that is what ``exc`` comes from), else
    :class:`RelayUnreachable` saying ``detail``."""
    cert = _certificate_error(exc)
    if cert is not None:
        reason = cert.verify_message or _reason(cert)
        return CertificateRejected(relay, _host(relay), reason)
    return RelayUnreachable(relay, detail)


def rejection(response: httpx.Response) -> RelayRejected | None:
    """The error a relay's answer stands for (None: a success): the ``code`` and ``message``
    of its ``{"error": {...}}`` body, else ``http_error`` and the reason phrase. The body
    must have been read."""
    if response.status_code < 400:
        return None
    code, message = "http_error", response.reason_phrase or "error"
    try:
        body = response.json()
        code = str(body["error"]["code"])
        message = str(body["error"]["message"])
    except (ValueError, KeyError, TypeError):  # json's JSONDecodeError is a ValueError
        pass
    return RelayRejected(response.status_code, code, message)
