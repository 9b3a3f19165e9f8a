"""Errors of the daemon and its command line."""

from __future__ import annotations

from common.visible import visible

__all__ = [
    "CertificateRejected",
    "ConfigError",
    "DaemonError",
    "NotPaired",
    "RelayRejected",
    "RelayUnreachable",
]


class DaemonError(Exception):
    """Root of every error raised by :mod:`daemon`. Its message is shown to the user."""


class ConfigError(DaemonError):
    """A command-line option, a config file or a directory is not usable."""


class NotPaired(DaemonError):
    """No environment credential is stored for the relay."""

    def __init__(self, relay: str) -> None:
        self.relay = relay
        super().__init__(
            f"this machine is not paired with {relay}: run `rcd relay pair-code` where the "
            f"relay runs, then `rcd pair {relay} CODE` here"
        )


class RelayUnreachable(DaemonError):
    """The relay could not be reached (network error or time-out). ``detail`` may quote
    what the network sent: it is kept safe to print (:func:`common.visible.visible`)."""

    def __init__(self, relay: str, detail: str) -> None:
        self.relay = relay
        self.detail = visible(detail)
        super().__init__(f"cannot reach the relay at {relay}: {self.detail}")


class CertificateRejected(RelayUnreachable):
    """TLS refused the relay's certificate (self-signed, a private CA, expired, another
    host's). Commands give up at once rather than retry; a running daemon retries, as for
    any outage, in case the relay's certificate is being replaced."""

    def __init__(self, relay: str, host: str, reason: str) -> None:
        self.host = host
        self.reason = visible(reason)
        super().__init__(
            relay,
            f"certificate verification failed for {host}: {self.reason}. If the relay's "
            "certificate comes from a private CA (or is self-signed), pass --ca-cert PATH "
            "with that CA's certificate (PEM), or set SSL_CERT_FILE to a bundle that holds "
            "it",
        )


class RelayRejected(DaemonError):
    """The relay answered with an error (carries its status, code and message). The code
    and message come from the network: they are kept safe to print
    (:func:`common.visible.visible`)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = visible(code)
        self.message = visible(message)
        super().__init__(f"the relay refused: {self.message} ({self.code}, HTTP {status})")
