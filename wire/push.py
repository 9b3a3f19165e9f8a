"""Web Push bodies of the client API (``/api/push/…``; see ``docs/api.md``).

A browser subscribes with what ``PushSubscription.toJSON()`` gives (its push service's
endpoint and its keys) and says which events may wake it; the relay keeps one
subscription per endpoint for the signed-in device that made it.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import attrs

from .settings import SCHEMA_KEY

__all__ = [
    "MAX_ENDPOINT_LENGTH",
    "PushKey",
    "PushKeys",
    "PushSettings",
    "PushSubscribe",
    "PushSubscriptionInfo",
    "PushSubscriptions",
    "b64url_bytes",
]

#: The longest push endpoint taken (real ones are a few hundred characters).
MAX_ENDPOINT_LENGTH = 2048
#: A push service's endpoint: https, or http on loopback (a push service on this machine).
ENDPOINT_PATTERN = (
    r"https://[^\s/?#@]+(/\S*)?"
    r"|http://(localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3})(:\d{1,5})?(/\S*)?"
)
#: base64url of an uncompressed P-256 point (65 bytes, the first 0x04), padded or not.
P256DH_PATTERN = r"B[A-P][A-Za-z0-9_-]{84}[AEIMQUYcgkosw048]=?"
#: base64url of 16 bytes, padded or not.
AUTH_PATTERN = r"[A-Za-z0-9_-]{21}[AQgw](==)?"
#: A turn counts as long, for :attr:`PushSettings.long_turn_seconds`, between these.
LONG_TURN_RANGE = (10, 86_400)


def b64url_bytes(text: str) -> bytes:
    """``text`` as base64url (padded or not) decodes it; ValueError otherwise."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def _long_turn(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    low, high = LONG_TURN_RANGE
    if not low <= value <= high:
        raise ValueError(f"{attribute.name} must be between {low} and {high} seconds")


def _matching(pattern: str, what: str) -> Any:
    compiled = re.compile(pattern)

    def check(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
        if not compiled.fullmatch(value):
            raise ValueError(f"{attribute.name} must be {what}")

    check.pattern = compiled  # type: ignore[attr-defined]  # the schema's pattern
    return check


@attrs.frozen(kw_only=True)
class PushKeys:
    """The browser's key (its public P-256 point) and auth secret, base64url."""

    p256dh: str = attrs.field(
        validator=_matching(
            P256DH_PATTERN, "an uncompressed P-256 point, base64url (87 characters)"
        )
    )
    auth: str = attrs.field(validator=_matching(AUTH_PATTERN, "16 bytes, base64url"))


@attrs.frozen(kw_only=True)
class PushSettings:
    """Which events notify this device. One notification per session, updated in place."""

    #: A tool waits for an answer.
    permission: bool = True
    #: A turn ended after running at least ``long_turn_seconds``.
    long_turn: bool = True
    long_turn_seconds: int = attrs.field(
        default=60,
        validator=_long_turn,
        metadata={
            SCHEMA_KEY: {
                "type": "integer",
                "minimum": LONG_TURN_RANGE[0],
                "maximum": LONG_TURN_RANGE[1],
            }
        },
    )
    #: The agent or the daemon reported an error.
    error: bool = True
    #: A session ended by itself (not stopped from a client).
    session_ended: bool = True
    #: An environment went offline.
    offline: bool = False


@attrs.frozen(kw_only=True)
class PushSubscribe:
    """``POST /api/push/subscriptions``: a browser's ``PushSubscription.toJSON()``, with
    the settings (defaults when left out)."""

    endpoint: str = attrs.field(
        validator=[
            attrs.validators.max_len(MAX_ENDPOINT_LENGTH),
            _matching(ENDPOINT_PATTERN, "an https:// URL of a push service"),
        ]
    )
    keys: PushKeys
    #: Ignored (browsers send it): a subscription lives until the push service drops it.
    expirationTime: float | None = None
    settings: PushSettings | None = None


@attrs.frozen(kw_only=True)
class PushSubscriptionInfo:
    """A subscription of the device asking (never another device's, never its keys)."""

    id: str
    endpoint: str
    settings: PushSettings
    created_at: float
    #: When the last notification was taken by its push service.
    last_sent_at: float | None


@attrs.frozen(kw_only=True)
class PushSubscriptions:
    subscriptions: list[PushSubscriptionInfo]


@attrs.frozen(kw_only=True)
class PushKey:
    """``GET /api/push/key``: the relay's VAPID public key (``applicationServerKey``)."""

    public_key: str
