"""``rcd start --expose lan``: the embedded relay on this machine's LAN address, over TLS.

The certificate is self-signed, made once per relay data dir and kept there (key and
certificate 0600), for the LAN address it was made for: a new address gets a new one.
A phone's browser cannot know it, so it warns; the SHA-256 fingerprint shown beside the
QR code is what the person compares with the one the browser shows before going on.
Plain HTTP is never served on the LAN: only the loopback listener (this machine's own
commands) speaks it.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from .errors import DaemonError
from .paths import write_private

if TYPE_CHECKING:
    from .checks import Finding

__all__ = ["LanCertificate", "check_lan", "fingerprint", "lan_address", "lan_certificate"]

#: Where the certificate lives, in the relay's data dir.
CERT_NAME = "lan-cert.pem"
KEY_NAME = "lan-key.pem"
#: How long a certificate is made for; a new one is made when this runs out.
VALID_DAYS = 825
#: An address outside any LAN (TEST-NET-1): a UDP socket "connected" to it learns which
#: address the machine would send from, without sending anything.
_PROBE = ("192.0.2.1", 9)


@attrs.frozen(kw_only=True)
class LanCertificate:
    cert: Path
    key: Path
    #: SHA-256 of the certificate (DER), as browsers show it: ``AB:CD:…``.
    fingerprint: str


def lan_address() -> str:
    """The IPv4 address this machine reaches its network from (the default route's);
    :class:`DaemonError` when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(_PROBE)
        except OSError as exc:
            raise DaemonError(
                f"--expose lan: this machine has no network route ({exc.strerror or exc});"
                " connect it to a network, or see docs/phone.md for the other ways"
            ) from None
        address: str = probe.getsockname()[0]
    if ipaddress.ip_address(address).is_loopback:
        raise DaemonError("--expose lan: this machine's only address is a loopback one")
    return address


def fingerprint(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _load(directory: Path, address: str) -> LanCertificate | None:
    """The kept certificate, if it is for ``address`` and still valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_private_key,
    )

    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return None
    try:
        key = load_pem_private_key(key_path.read_bytes(), password=None)
        private = key_path.stat().st_mode & 0o077 == 0
    except (OSError, ValueError, TypeError):
        return None
    # A key that is not this certificate's (a write cut between the two) or that others
    # may read: made again.
    if not private or key.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo):
        return None
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    ours = ipaddress.ip_address(address) in names.get_values_for_type(x509.IPAddress)
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    if not ours or cert.not_valid_after_utc < soon:
        return None
    return LanCertificate(
        cert=cert_path, key=key_path, fingerprint=fingerprint(cert.public_bytes(Encoding.DER))
    )


def lan_certificate(directory: Path, address: str, hostname: str) -> LanCertificate:
    """The relay's LAN certificate in ``directory``: the kept one when it is for
    ``address``, else a new one (an EC P-256 key), written 0600."""
    kept = _load(directory, address)
    if kept is not None:
        return kept
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"rcd on {hostname}")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(address))]
    if hostname:
        alt_names.append(x509.DNSName(hostname))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    write_private(directory / KEY_NAME, key_pem)
    write_private(directory / CERT_NAME, cert.public_bytes(Encoding.PEM))
    return LanCertificate(
        cert=directory / CERT_NAME,
        key=directory / KEY_NAME,
        fingerprint=fingerprint(cert.public_bytes(Encoding.DER)),
    )


def check_lan(port: int) -> Finding:
    """``rcd doctor --expose lan``: whether this machine has a network address to serve."""
    from .checks import Finding

    try:
        address = lan_address()
    except DaemonError as exc:
        detail, _, fix = str(exc).removeprefix("--expose lan: ").partition("; ")
        return Finding(name="lan", status="problem", detail=detail, fix=fix or None)
    return Finding(
        name="lan",
        status="ok",
        detail=f"the relay would listen on https://{address}:{port} (its own certificate)",
    )
