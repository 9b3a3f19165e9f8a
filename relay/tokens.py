"""Short-lived access tokens for daemons: one for the environment's link, one per session.

A daemon holds one long-lived secret, its environment credential, and uses it only to
register and to mint access tokens (``POST /daemon/v1/environments/{id}/tokens``). Every
other daemon route takes an access token, scoped to exactly one purpose:

* ``link``: the environment's downlink, acks and goodbye;
* ``session``: the uplink of one session (its events), nothing else.

A token is ``rcd_at_<claims>.<mac>``: the claims (kind, credential, environment, session,
expiry) in base64url JSON, signed with HMAC-SHA256 under a key that lives only in the relay
process's memory. So checking one costs no database read, a copy of the database mints
nothing, and a relay restart invalidates every token (daemons get 401, mint new ones with
their credential and retry). Revoking the credential stops its tokens at once: each use
still checks that the credential's environment is not revoked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal

import attrs

from .errors import Forbidden, Unauthenticated

__all__ = [
    "ACCESS_TOKEN_PREFIX",
    "ANSWER_TOKEN_PREFIX",
    "DEFAULT_ACCESS_TOKEN_TTL",
    "AccessClaims",
    "AnswerClaims",
    "AnswerTokens",
    "TokenIssuer",
    "TokenKind",
]

ACCESS_TOKEN_PREFIX = "rcd_at_"
#: Seconds an access token lives. Daemons refresh well before that.
DEFAULT_ACCESS_TOKEN_TTL = 900.0

TokenKind = Literal["link", "session"]


@attrs.frozen(kw_only=True)
class AccessClaims:
    """What an access token says: who minted it, for what, until when."""

    kind: TokenKind
    credential_id: str
    environment_id: str
    #: The one session a ``session`` token may upload to; None for ``link`` tokens.
    session_id: str | None
    #: Seconds since the epoch (the relay's clock).
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _seal(key: bytes, prefix: str, payload: list[Any]) -> str:
    """``payload`` as a token: ``prefix``, the payload's JSON (base64url), its MAC."""
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{prefix}{body}.{_mac(key, body)}"


def _unseal(key: bytes, prefix: str, token: str) -> list[Any] | None:
    """The payload of a genuine token made by :func:`_seal` with ``key``; None otherwise."""
    body, _, mac = token.removeprefix(prefix).partition(".")
    if not token.startswith(prefix) or not hmac.compare_digest(
        mac.encode(), _mac(key, body).encode()
    ):
        return None
    payload: list[Any] = json.loads(_unb64(body))
    return payload


def _mac(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest()[:24])


@attrs.define(eq=False)
class TokenIssuer:
    """Mints and checks access tokens under a per-process random key."""

    ttl: float = DEFAULT_ACCESS_TOKEN_TTL
    clock: Callable[[], float] = time.time
    _key: bytes = attrs.field(factory=lambda: secrets.token_bytes(32), repr=False)

    def rotate(self) -> None:
        """Invalidate every token issued so far, as a restart does (daemons get 401 on their
        next request, mint new tokens and retry)."""
        self._key = secrets.token_bytes(32)

    def issue(
        self, kind: TokenKind, credential_id: str, environment_id: str, session_id: str | None
    ) -> tuple[str, AccessClaims]:
        """A new token and its claims."""
        claims = AccessClaims(
            kind=kind,
            credential_id=credential_id,
            environment_id=environment_id,
            session_id=session_id,
            expires_at=self.clock() + self.ttl,
        )
        payload = [kind, credential_id, environment_id, session_id, claims.expires_at]
        return _seal(self._key, ACCESS_TOKEN_PREFIX, payload), claims

    def verify(self, token: str) -> AccessClaims:
        """The claims of a genuine, unexpired token; :class:`Unauthenticated` otherwise.

        ``token_expired`` and ``invalid_token`` both tell a daemon to mint a new token with
        its environment credential and retry once.
        """
        payload = _unseal(self._key, ACCESS_TOKEN_PREFIX, token)
        if payload is None:
            raise Unauthenticated(
                "unknown access token (the relay may have restarted); mint a new one",
                code="invalid_token",
            )
        kind, credential_id, environment_id, session_id, expires_at = payload
        if self.clock() >= expires_at:
            raise Unauthenticated("the access token has expired; mint a new one", "token_expired")
        return AccessClaims(
            kind=kind,
            credential_id=credential_id,
            environment_id=environment_id,
            session_id=session_id,
            expires_at=expires_at,
        )


ANSWER_TOKEN_PREFIX = "rcd_ans_"
#: Seconds a notification's Allow / Deny stays usable (the push service keeps a
#: permission notification as long).
ANSWER_TOKEN_TTL = 3600.0


@attrs.frozen(kw_only=True)
class AnswerClaims:
    """What a notification's answer token allows: one decision on one permission request,
    by the device its push was for, until ``expires_at``."""

    subscription_id: str
    session_id: str
    request_id: str
    expires_at: float


@attrs.define(eq=False)
class AnswerTokens:
    """Mints and checks the credentials a permission notification carries for its Allow and
    Deny (never the device's own token), under a per-process random key: a relay restart
    voids them (the notification then says to open the app)."""

    ttl: float = ANSWER_TOKEN_TTL
    clock: Callable[[], float] = time.time
    _key: bytes = attrs.field(factory=lambda: secrets.token_bytes(32), repr=False)

    def issue(self, subscription_id: str, session_id: str, request_id: str) -> str:
        payload = [subscription_id, session_id, request_id, self.clock() + self.ttl]
        return _seal(self._key, ANSWER_TOKEN_PREFIX, payload)

    def verify(self, token: str, session_id: str, request_id: str) -> AnswerClaims:
        """The claims of a genuine, unexpired token for exactly this request;
        :class:`Unauthenticated` otherwise."""
        payload = _unseal(self._key, ANSWER_TOKEN_PREFIX, token)
        if payload is None:
            raise Unauthenticated(
                "unknown answer token (the relay may have restarted): open the app",
                code="invalid_token",
            )
        subscription_id, session, request, expires_at = payload
        if self.clock() >= expires_at:
            raise Unauthenticated("this notification's answer has expired: open the app",
                                  "token_expired")  # fmt: skip
        if (session, request) != (session_id, request_id):
            raise Forbidden("wrong_scope", "this notification's answer is for another request")
        return AnswerClaims(
            subscription_id=subscription_id,
            session_id=session,
            request_id=request,
            expires_at=expires_at,
        )
