"""A fake Web Push service, served for real on loopback: what stands for Google's (FCM) or
Mozilla's (autopush) push service when the relay sends a notification to a phone.

It plays both ends the relay never sees: the *browser* that subscribes (``subscribe()`` makes
the P-256 key pair and the 16-byte auth secret that ``pushManager.subscribe()`` would, and
keeps the private half), and the *push service* that takes ``POST /push/{id}`` and checks it
as a real one does before anything reaches the phone:

- RFC 8030: a ``TTL`` header (an integer ≥ 0, else 400); ``Urgency`` one of ``very-low``,
  ``low``, ``normal``, ``high``; ``Topic`` at most 32 base64url characters;
- RFC 8292 (VAPID): ``Authorization: vapid t=<JWT>, k=<public key>``, the JWT ES256-signed by
  ``k``, its ``aud`` the service's origin, its ``exp`` in the future and at most 24 h ahead,
  its ``sub`` a ``mailto:`` or ``https:`` URL (401 otherwise); ``k`` the subscription's
  ``applicationServerKey`` when it was given one (403 otherwise). Always required here: the
  relay always signs, so a push without VAPID is its bug;
- RFC 8291/8188: ``Content-Encoding: aes128gcm``, one record whose key id is the sender's
  65-byte public key, at most 4096 bytes in all (413 beyond), and it must decrypt with the
  subscription's private key and auth secret (400 otherwise). An empty body with no
  ``Content-Encoding`` is a push without a payload, as RFC 8030 allows.

The verification is written here with ``cryptography`` (not py_vapid, which the relay signs
with), so that the fake checks the relay's use of that library rather than repeat it.

A valid push answers 201 and is recorded as a ``Delivery``; an invalid one answers a short
JSON error (``{"error": ..., "message": ...}``) and is recorded in ``rejections`` (a relay
under test should leave none); one to an unknown or expired subscription answers 404 or 410
(``expire()``), recorded in ``gone``, which is how a relay learns to drop a subscription.

Usage::

    async with open_push_service() as service:
        subscription = service.subscribe(expected_key=vapid_public_key_b64url)
        ...  # give subscription.as_json() to the relay, make it push
        with trio.fail_after(10):
            [delivery] = await service.wait_for(subscription.id)
        assert delivery.json()["title"] == "..." and service.rejections == []
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import http_ece  # type: ignore[import-untyped, unused-ignore]
import trio
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = [
    "MAX_BODY",
    "MAX_EXP_AHEAD_S",
    "Delivery",
    "PushService",
    "Rejection",
    "Subscription",
    "b64url",
    "b64url_decode",
    "open_push_service",
]

#: The largest push body a push service must take (RFC 8291 §4); FCM and autopush stop there.
MAX_BODY = 4096
#: How far ahead a VAPID JWT's ``exp`` may be (RFC 8292 §2).
MAX_EXP_AHEAD_S = 24 * 60 * 60
URGENCIES = ("very-low", "low", "normal", "high")
TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
#: The aes128gcm header (RFC 8188 §2.1): salt (16), rs (4), idlen (1), then the key id.
ECE_HEADER = 21
UNCOMPRESSED_POINT = 65

JSON = dict[str, Any]


def b64url(data: bytes) -> str:
    """Base64url without padding, as browsers give keys and secrets."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The inverse of ``b64url``, padded or not; ``binascii.Error`` on anything else."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", text):
        raise binascii.Error("not base64url")
    return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


@attrs.frozen(kw_only=True)
class Subscription:
    """What ``pushManager.subscribe()`` gives a page; the private half stays with the fake."""

    id: str
    endpoint: str  # f"{service.url}/push/{id}"
    p256dh: str  # base64url, the 65-byte uncompressed point
    auth: str  # base64url, 16 random bytes
    expected_key: str | None  # the applicationServerKey it was made with, if any
    private_key: ec.EllipticCurvePrivateKey = attrs.field(repr=False)

    def as_json(self) -> JSON:
        """Exactly ``PushSubscription.toJSON()``."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        }


@attrs.frozen(kw_only=True)
class Delivery:
    """One push the service took (201): what would reach the phone's service worker."""

    subscription_id: str
    payload: bytes  # decrypted; b"" for a push without a payload
    ttl: int
    topic: str | None
    urgency: str | None
    claims: JSON  # the VAPID JWT's claims (aud, exp, sub)
    received_at: float  # trio.current_time()

    def json(self) -> Any:
        """The payload read as JSON, as the service worker's ``event.data.json()``."""
        return json.loads(self.payload)


@attrs.frozen(kw_only=True)
class Rejection:
    """One push the service refused, with the status and the reason it answered."""

    subscription_id: str
    status: int
    error: str  # a short code, e.g. "bad_ttl", "vapid_aud"
    message: str
    received_at: float


class _Refused(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status, self.error, self.message = status, error, message


@attrs.define(eq=False)
class PushService:
    """The fake's state; ``open_push_service()`` serves it and sets ``url``."""

    url: str = ""  # the origin, "http://127.0.0.1:<port>", no trailing slash
    subscriptions: dict[str, Subscription] = attrs.field(factory=dict)
    deliveries: list[Delivery] = attrs.field(factory=list)
    rejections: list[Rejection] = attrs.field(factory=list)  # 400, 401, 403, 413
    gone: list[Rejection] = attrs.field(factory=list)  # 404, 410
    _expired: dict[str, int] = attrs.field(factory=dict, init=False)
    _changed: trio.Event = attrs.field(factory=trio.Event, init=False)

    def subscribe(self, expected_key: str | None = None) -> Subscription:
        """A new subscription, as a browser's ``pushManager.subscribe({applicationServerKey:
        expected_key})``; with ``expected_key`` only pushes signed by that key get through."""
        if expected_key is not None and len(b64url_decode(expected_key)) != UNCOMPRESSED_POINT:
            raise ValueError("expected_key must be a base64url uncompressed P-256 point")
        private_key = ec.generate_private_key(ec.SECP256R1())
        subscription_id = secrets.token_urlsafe(16)
        subscription = Subscription(
            id=subscription_id,
            endpoint=f"{self.url}/push/{subscription_id}",
            p256dh=b64url(_point(private_key.public_key())),
            auth=b64url(secrets.token_bytes(16)),
            expected_key=expected_key,
            private_key=private_key,
        )
        self.subscriptions[subscription_id] = subscription
        return subscription

    def expire(self, subscription_id: str, status: int = 410) -> None:
        """From now on pushes to it answer ``status`` (410 Gone, or 404), as for a browser
        that unsubscribed."""
        if status not in (404, 410):
            raise ValueError("a push service answers an expired subscription 404 or 410")
        if subscription_id not in self.subscriptions:
            raise KeyError(subscription_id)
        self._expired[subscription_id] = status

    def deliveries_to(self, subscription_id: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.subscription_id == subscription_id]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds, looking again after every push the service
        answers. No deadline of its own: wrap it in ``trio.fail_after``."""
        while not predicate():
            await self._changed.wait()

    async def wait_for(self, subscription_id: str, count: int = 1) -> list[Delivery]:
        """The first ``count`` deliveries to ``subscription_id``, once there are that many."""
        await self.wait_until(lambda: len(self.deliveries_to(subscription_id)) >= count)
        return self.deliveries_to(subscription_id)[:count]

    def app(self) -> Starlette:
        """The ASGI app (``open_push_service`` serves it on loopback)."""
        return Starlette(routes=[Route("/push/{id}", self._push, methods=["POST"])])

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _push(self, request: Request) -> Response:
        subscription_id = request.path_params["id"]
        body = await request.body()
        try:
            delivery = self._take(subscription_id, request, body)
        except _Refused as refused:
            rejection = Rejection(
                subscription_id=subscription_id,
                status=refused.status,
                error=refused.error,
                message=refused.message,
                received_at=trio.current_time(),
            )
            (self.gone if refused.status in (404, 410) else self.rejections).append(rejection)
            self._notify()
            return JSONResponse(
                {"error": refused.error, "message": refused.message}, status_code=refused.status
            )
        self.deliveries.append(delivery)
        self._notify()
        # The Location of the push message resource (RFC 8030 §5): nothing is served there.
        location = f"{self.url}/message/{secrets.token_urlsafe(8)}"
        return Response(status_code=201, headers={"location": location})

    def _take(self, subscription_id: str, request: Request, body: bytes) -> Delivery:
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            raise _Refused(404, "not_found", "no such subscription")
        if subscription_id in self._expired:
            raise _Refused(self._expired[subscription_id], "expired", "subscription expired")
        claims = self._check_vapid(subscription, request.headers.get("authorization"))
        ttl = _check_ttl(request.headers.get("ttl"))
        urgency = request.headers.get("urgency")
        if urgency is not None and urgency not in URGENCIES:
            raise _Refused(400, "bad_urgency", f"Urgency must be one of {', '.join(URGENCIES)}")
        topic = request.headers.get("topic")
        if topic is not None and not TOPIC.fullmatch(topic):
            raise _Refused(400, "bad_topic", "Topic must be 1-32 base64url characters")
        return Delivery(
            subscription_id=subscription_id,
            payload=_decrypt(subscription, request.headers.get("content-encoding"), body),
            ttl=ttl,
            topic=topic,
            urgency=urgency,
            claims=claims,
            received_at=trio.current_time(),
        )

    def _check_vapid(self, subscription: Subscription, authorization: str | None) -> JSON:
        if authorization is None:
            raise _Refused(401, "vapid_missing", "no Authorization header")
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() != "vapid":
            raise _Refused(401, "vapid_scheme", f"scheme {scheme!r}, not 'vapid' (RFC 8292)")
        params: dict[str, str] = {}
        for part in rest.split(","):  # "t=..., k=..." (RFC 8292); py_vapid writes "t=...,k=..."
            name, _, value = part.strip().partition("=")
            params[name] = value
        token, key = params.get("t", ""), params.get("k", "")
        try:
            key_bytes = b64url_decode(key)
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key_bytes)
        except (binascii.Error, ValueError) as error:
            raise _Refused(401, "vapid_key", "k is not a base64url P-256 point") from error
        claims = _verify_jwt(token, public_key)
        if claims.get("aud") != self.url:
            raise _Refused(401, "vapid_aud", f"aud {claims.get('aud')!r}, not {self.url!r}")
        exp, now = claims.get("exp"), time.time()
        if not isinstance(exp, int | float) or isinstance(exp, bool) or exp <= now:
            raise _Refused(401, "vapid_exp", f"exp {exp!r} missing or past")
        if exp > now + MAX_EXP_AHEAD_S:
            raise _Refused(401, "vapid_exp", f"exp {exp!r} more than 24 h ahead")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not re.fullmatch(r"mailto:\S+|https://[^/\s]+\S*", sub):
            raise _Refused(401, "vapid_sub", f"sub {sub!r} is not a mailto: or https: URL")
        expected = subscription.expected_key
        if expected is not None and b64url_decode(expected) != key_bytes:
            raise _Refused(403, "vapid_key_mismatch", "k is not the subscription's server key")
        return claims


def _verify_jwt(token: str, public_key: ec.EllipticCurvePublicKey) -> JSON:
    """The claims of a compact ES256 JWS signed by ``public_key`` (RFC 7515/7518)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise _Refused(401, "vapid_token", "t is not a JWT (header.claims.signature)")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (binascii.Error, ValueError) as error:
        raise _Refused(401, "vapid_token", "t does not decode") from error
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise _Refused(401, "vapid_alg", f"JWT header {header!r}, not alg ES256")
    if not isinstance(claims, dict):
        raise _Refused(401, "vapid_token", "JWT claims are not an object")
    if len(signature) != 64:  # JWS's raw r || s, not DER
        raise _Refused(401, "vapid_signature", "signature is not 64 bytes (r || s)")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    try:
        public_key.verify(
            utils.encode_dss_signature(r, s),
            f"{parts[0]}.{parts[1]}".encode("ascii"),
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, UnicodeEncodeError) as error:
        raise _Refused(401, "vapid_signature", "JWT not signed by k") from error
    return claims


def _check_ttl(ttl: str | None) -> int:
    if ttl is None:
        raise _Refused(400, "missing_ttl", "a TTL header is required (RFC 8030 §5.2)")
    if not ttl.isascii() or not ttl.isdigit():
        raise _Refused(400, "bad_ttl", f"TTL {ttl!r} is not an integer ≥ 0")
    return int(ttl)


def _decrypt(subscription: Subscription, encoding: str | None, body: bytes) -> bytes:
    if not body and encoding is None:
        return b""  # a push without a payload
    if encoding is None or encoding.strip().lower() != "aes128gcm":
        raise _Refused(400, "bad_encoding", f"Content-Encoding {encoding!r}, not aes128gcm")
    if len(body) > MAX_BODY:
        raise _Refused(413, "too_large", f"{len(body)} bytes, more than {MAX_BODY}")
    if len(body) < ECE_HEADER or body[ECE_HEADER - 1] != UNCOMPRESSED_POINT:
        raise _Refused(400, "bad_header", "key id is not the sender's 65-byte public key")
    rs = int.from_bytes(body[16:20], "big")
    if len(body) - ECE_HEADER - UNCOMPRESSED_POINT > rs:
        raise _Refused(400, "bad_header", f"more than one record (rs {rs}; RFC 8291 §4)")
    try:
        payload: bytes = http_ece.decrypt(
            body,
            private_key=subscription.private_key,
            auth_secret=b64url_decode(subscription.auth),
            version="aes128gcm",
        )
    except (http_ece.ECEException, ValueError) as error:
        reason = getattr(error, "message", None) or repr(error)
        raise _Refused(400, "bad_body", f"does not decrypt: {reason}") from error
    return payload


@asynccontextmanager
async def open_push_service() -> AsyncIterator[PushService]:
    """Serve a new ``PushService`` on 127.0.0.1 at a free port (Hypercorn's trio worker);
    stops at once, with no graceful wait, when the block ends."""
    service = PushService()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.0

    async def serving(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(service.app(), config, task_status=task_status)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        # hypercorn reports its binds ("http://127.0.0.1:<port>") once its socket listens.
        binds: list[str] = await nursery.start(serving)
        service.url = binds[0]
        try:
            yield service
        finally:
            nursery.cancel_scope.cancel()
