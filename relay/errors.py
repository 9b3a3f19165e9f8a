"""Errors raised by the relay.

:class:`RelayError` is the root. :class:`ApiError` and its subclasses are what an HTTP
request can be refused with: each carries the ``status``, the machine-readable ``code`` and
a human ``message`` that become the JSON body ``{"error": {"code", "message"}}``. Storage
backends raise the conflict subclasses (:class:`AtCapacity`, ...) from inside their
transactions, so the check and the write can never be separated.
"""

from __future__ import annotations

__all__ = [
    "AdminError",
    "ApiError",
    "AtCapacity",
    "CsrfMissing",
    "BadRequest",
    "BodyTimeout",
    "BodyTooLarge",
    "Conflict",
    "CredentialRevoked",
    "EnvironmentOffline",
    "Forbidden",
    "NotFound",
    "NotResumable",
    "RateLimited",
    "RelayError",
    "SessionEnded",
    "Unauthenticated",
]


class RelayError(Exception):
    """Root of every error raised by :mod:`relay`."""


class AdminError(RelayError):
    """An admin command (``rcd relay token ...``) could not do what was asked."""


class ApiError(RelayError):
    """A request the relay refuses; the app answers it with a 4xx and a JSON error body."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class BadRequest(ApiError):
    """The request itself is wrong (its body, a parameter)."""


class Unauthenticated(ApiError):
    def __init__(
        self, message: str = "missing or invalid credentials", code: str = "unauthenticated"
    ) -> None:
        super().__init__(code, message)


class CredentialRevoked(Unauthenticated):
    def __init__(self) -> None:
        super().__init__(
            "this machine's environment credential is unknown to the relay or was revoked;"
            " pair again with 'rcd pair RELAY_URL CODE' (a code from 'rcd relay pair-code')",
            code="credential_revoked",
        )


class RateLimited(ApiError):
    def __init__(self, message: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__("rate_limited", message)


class Forbidden(ApiError):
    """Who is asking is known, and may not do this."""


class CsrfMissing(Forbidden):
    """A cookie-signed write without the CSRF header (see :data:`relay.auth.CSRF_HEADER`)."""

    def __init__(self) -> None:
        super().__init__(
            "csrf", "a write signed in by cookie must send the header 'X-Requested-With: rcd'"
        )


class NotFound(ApiError):
    def __init__(self, message: str, code: str = "not_found") -> None:
        super().__init__(code, message)


class BodyTooLarge(ApiError):
    def __init__(self, message: str, code: str = "body_too_large") -> None:
        super().__init__(code, message)


class BodyTimeout(ApiError):
    """The request body did not arrive in time (see ``RelayConfig.body_deadline``)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__("body_timeout", f"the request body did not arrive within {seconds:g} s")


class Conflict(ApiError):
    """The request clashes with the state of what it names (offline, full, ended...)."""


class EnvironmentOffline(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(
            "environment_offline", f"environment '{name}' is offline: its daemon is not connected"
        )


class AtCapacity(Conflict):
    def __init__(self, name: str, running: int, capacity: int) -> None:
        self.running = running
        self.capacity = capacity
        super().__init__(
            "at_capacity",
            f"environment '{name}' is at capacity: {running} of {capacity} sessions running",
        )


class SessionEnded(Conflict):
    def __init__(self, session_id: str) -> None:
        super().__init__("session_ended", f"session {session_id} has ended")


class NotResumable(Conflict):
    def __init__(self, session_id: str, reason: str) -> None:
        super().__init__("not_resumable", f"session {session_id} cannot be resumed: {reason}")
