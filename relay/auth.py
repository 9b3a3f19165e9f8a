"""Secrets and who is asking.

Every secret the relay hands out (device tokens, environment credentials, login codes, web
sessions, pair codes) is random from :mod:`secrets` and is stored only as its SHA-256
(:func:`hash_secret`): a copy of the database lets nobody in. Each request re-checks
storage, so a revocation takes effect at once.

Two kinds of callers, never interchangeable:

* clients: ``Authorization: Bearer <device token>`` or the web app's ``rcd_session`` cookie;
* daemons: ``Authorization: Bearer <environment credential>`` to register and to mint
  access tokens, ``Authorization: Bearer <access token>`` for everything else
  (:mod:`relay.tokens`).

A credential of one kind presented where another is needed is 403 ``wrong_scope`` (the
prefixes tell them apart), so a misconfigured caller learns what it did wrong.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from starlette.requests import Request

from .errors import CredentialRevoked, Forbidden, Unauthenticated
from .records import WEB_ORIGIN, ClientPrincipal, ClientProof
from .tokens import ACCESS_TOKEN_PREFIX, AccessClaims, TokenIssuer, TokenKind

if TYPE_CHECKING:
    from .storage import Storage

__all__ = [
    "DEVICE_TOKEN_PREFIX",
    "ENVIRONMENT_CREDENTIAL_PREFIX",
    "SESSION_COOKIE",
    "WEB_ORIGIN",
    "ClientPrincipal",
    "ClientProof",
    "authenticate_access",
    "authenticate_client",
    "client_proof",
    "authenticate_daemon",
    "daemon_credential_hash",
    "bearer_token",
    "has_csrf_header",
    "hash_secret",
    "issue_environment_credential",
    "new_device_token",
    "new_environment_credential",
    "new_login_code",
    "new_pair_code",
    "new_web_session",
    "normalize_pair_code",
]

DEVICE_TOKEN_PREFIX = "rcd_dev_"
ENVIRONMENT_CREDENTIAL_PREFIX = "rcd_env_"
#: The web app's session cookie (HttpOnly, SameSite=Strict).
SESSION_COOKIE = "rcd_session"

# No 0/O, 1/I/L or U: a pair code is read off one screen and typed on another.
_PAIR_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
_PAIR_LENGTH = 8


def hash_secret(secret: str) -> str:
    """The form a secret is stored in: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_device_token() -> str:
    return DEVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_environment_credential() -> str:
    return ENVIRONMENT_CREDENTIAL_PREFIX + secrets.token_urlsafe(32)


def new_login_code() -> str:
    return secrets.token_urlsafe(24)


def new_web_session() -> str:
    return secrets.token_urlsafe(32)


def new_pair_code() -> str:
    """Eight characters in two groups, e.g. ``K7QM-3XRD`` (about 39 bits; one use, minutes)."""
    chars = "".join(secrets.choice(_PAIR_ALPHABET) for _ in range(_PAIR_LENGTH))
    return f"{chars[:4]}-{chars[4:]}"


def normalize_pair_code(code: str) -> str:
    """What is hashed: upper case, without dashes or spaces (``k7qm 3xrd`` works too)."""
    return "".join(c for c in code.upper() if c.isalnum())


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, or None when absent."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token.strip()


#: Cookie-authenticated writes must carry this header (the web app always sends it). A page
#: on another site can make a browser send the cookie, but not a custom header without a
#: CORS preflight, which the relay never grants. (SameSite=Strict already stops most of it.)
CSRF_HEADER = "x-requested-with"


def has_csrf_header(request: Request) -> bool:
    """Whether a cookie-signed request may proceed: a read, or a write with the header."""
    return request.method in ("GET", "HEAD", "OPTIONS") or (
        request.headers.get(CSRF_HEADER, "").lower() == "rcd"
    )


def client_proof(request: Request) -> ClientProof:
    """The client credential the request presents, unchecked (storage checks it: see
    :meth:`relay.storage.Storage.authenticate_client`); raises :class:`Unauthenticated`
    when there is none, :class:`Forbidden` for a daemon's credential.

    A bearer header, when present, decides alone (a bad token is not rescued by a cookie).
    """
    token = bearer_token(request)
    if token is not None:
        if token.startswith((ENVIRONMENT_CREDENTIAL_PREFIX, ACCESS_TOKEN_PREFIX)):
            raise Forbidden("wrong_scope", "a daemon's credential cannot use the client API")
        return ClientProof(via="token", secret_hash=hash_secret(token))
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return ClientProof(
            via="cookie", secret_hash=hash_secret(cookie), csrf_ok=has_csrf_header(request)
        )
    raise Unauthenticated("send 'Authorization: Bearer <device token>' or sign in")


async def authenticate_client(request: Request, storage: Storage) -> ClientPrincipal:
    """Who the client is; raises :class:`Unauthenticated` (401) otherwise, or 403 ``csrf``
    for a cookie-signed write without the CSRF header."""
    return await storage.authenticate_client(client_proof(request))


def daemon_credential_hash(request: Request) -> str:
    """The stored form of the environment credential presented (not yet checked against
    storage); 401 without one, 403 ``wrong_scope`` for another kind of credential."""
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated("send 'Authorization: Bearer <environment credential>'")
    if token.startswith(DEVICE_TOKEN_PREFIX):
        raise Forbidden("wrong_scope", "a device token cannot use the daemon API")
    if token.startswith(ACCESS_TOKEN_PREFIX):
        raise Forbidden(
            "wrong_scope", "register and mint tokens with the environment credential itself"
        )
    return hash_secret(token)


async def authenticate_daemon(request: Request, storage: Storage) -> str:
    """The id of the environment credential presented; raises :class:`Unauthenticated`."""
    credential_id = await storage.authenticate_environment_credential(
        daemon_credential_hash(request)
    )
    if credential_id is None:
        raise CredentialRevoked()
    return credential_id


def authenticate_access(
    request: Request,
    issuer: TokenIssuer,
    kind: TokenKind,
    *,
    environment_id: str | None = None,
    session_id: str | None = None,
) -> AccessClaims:
    """The claims of the request's access token, which must be of ``kind`` and, when given,
    for ``environment_id`` / ``session_id``.

    401 without a genuine unexpired token; 403 ``wrong_scope`` for any other credential or a
    token minted for another purpose, environment or session. The caller still checks that
    the token's environment is not revoked (a storage read it makes anyway).
    """
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated(f"send 'Authorization: Bearer <{kind} access token>'")
    if token.startswith(DEVICE_TOKEN_PREFIX):
        raise Forbidden("wrong_scope", "a device token cannot use the daemon API")
    if token.startswith(ENVIRONMENT_CREDENTIAL_PREFIX):
        raise Forbidden(
            "wrong_scope",
            f"this route takes a {kind} access token; mint one with the environment credential",
        )
    claims = issuer.verify(token)
    if claims.kind != kind:
        raise Forbidden("wrong_scope", f"this route takes a {kind} token, not a {claims.kind} one")
    if environment_id is not None and claims.environment_id != environment_id:
        raise Forbidden("wrong_scope", "this token is for another environment")
    if session_id is not None and claims.session_id != session_id:
        raise Forbidden("wrong_scope", "this token is for another session")
    return claims


async def issue_environment_credential(storage: Storage, machine: str) -> str:
    """Mint and store an environment credential (the daemon's embedded mode skips pairing).

    Returns the secret; only its hash is stored.
    """
    credential = new_environment_credential()
    await storage.add_environment_credential(machine, hash_secret(credential))
    return credential
