"""Errors of the daemon and its command line."""

from __future__ import annotations

from .visible import visible

__all__ = [
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
    what the network sent: it is kept safe to print (:func:`daemon.visible.visible`)."""

    def __init__(self, relay: str, detail: str) -> None:
        self.relay = relay
        self.detail = visible(detail)
        super().__init__(f"cannot reach the relay at {relay}: {self.detail}")


class RelayRejected(DaemonError):
    """The relay answered with an error (carries its status, code and message). The code
    and message come from the network: they are kept safe to print
    (:func:`daemon.visible.visible`)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = visible(code)
        self.message = visible(message)
        super().__init__(f"the relay refused: {self.message} ({self.code}, HTTP {status})")
