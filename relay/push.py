"""Web Push from the relay: its VAPID key, and one push sent to one subscription.

The key is made once per relay (``vapid.pem`` in its data dir, owner-only) and kept: every
browser's subscription names it (``applicationServerKey``), so a new key would silently
orphan them all. A push is the payload encrypted for the subscription (RFC 8291,
``aes128gcm``, by ``http_ece``), signed for the push service's origin (RFC 8292, a VAPID JWT
by ``py_vapid``) and posted with httpx; nothing of it is hand-written crypto.
"""

from __future__ import annotations

import base64
import enum
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import http_ece
import httpx
import structlog
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from wire.push import b64url_bytes

from .records import PushSubscriptionRecord

__all__ = ["PushOutcome", "PushSender", "VAPID_FILE", "load_vapid_key"]

log = structlog.get_logger("relay.push")

VAPID_FILE = "vapid.pem"
#: How long a VAPID signature is good for (RFC 8292 allows at most 24 h).
SIGNATURE_TTL = 12 * 3600
#: How long one push may take, all in, before it counts as failed.
SEND_TIMEOUT = 5.0


def load_vapid_key(data_dir: Path) -> Vapid02:
    """The relay's VAPID key, made (and written owner-only, whole or not at all) the first
    time. BLOCKS."""
    path = data_dir / VAPID_FILE
    try:
        return Vapid02.from_pem(path.read_bytes())
    except FileNotFoundError:
        pass
    key = Vapid02()
    key.generate_keys()
    fd, temporary = tempfile.mkstemp(dir=data_dir, prefix=".vapid-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(key.private_pem())
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)  # never replaces: another relay's key wins
        except FileExistsError:
            return Vapid02.from_pem(path.read_bytes())
    finally:
        os.unlink(temporary)
    directory = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    log.info("vapid_key_made", path=str(path))
    return key


def public_key_text(key: Vapid02) -> str:
    """The key as browsers take it for ``applicationServerKey``: base64url, unpadded."""
    raw = key.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class PushOutcome(enum.Enum):
    SENT = "sent"
    #: The push service no longer knows the subscription (404, 410): forget it.
    GONE = "gone"
    FAILED = "failed"


def _origin(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def _encrypt(payload: bytes, subscription: PushSubscriptionRecord) -> bytes:
    return http_ece.encrypt(  # type: ignore[no-any-return]
        payload,
        private_key=ec.generate_private_key(ec.SECP256R1()),
        dh=b64url_bytes(subscription.p256dh),
        auth_secret=b64url_bytes(subscription.auth),
        version="aes128gcm",
    )


@attrs.define(eq=False)
class PushSender:
    """Sends pushes with one HTTP client (its connections to the push services reused)."""

    key: Vapid02
    #: Who runs this relay, for the push services (``mailto:`` or ``https:``).
    subject: str
    client: httpx.AsyncClient
    _signatures: dict[str, tuple[float, str]] = attrs.Factory(dict)
    #: Signatures kept at most (one per push service's origin).
    signatures_kept: int = 64

    @property
    def public_key(self) -> str:
        return public_key_text(self.key)

    def _authorization(self, origin: str) -> str:
        """A signature for the origin, made again when half its life is gone."""
        now = time.time()
        made = self._signatures.get(origin)
        if made is None or made[0] < now + SIGNATURE_TTL / 2:
            if len(self._signatures) >= self.signatures_kept:
                self._signatures.clear()
            claims = {"aud": origin, "exp": int(now + SIGNATURE_TTL), "sub": self.subject}
            header = self.key.sign(claims)["Authorization"]
            made = self._signatures[origin] = (now + SIGNATURE_TTL, header)
        return made[1]

    async def send(
        self,
        subscription: PushSubscriptionRecord,
        payload: bytes,
        *,
        ttl: int,
        topic: str | None = None,
        urgency: str = "normal",
    ) -> PushOutcome:
        """Push ``payload`` to one subscription. ``topic`` replaces an undelivered push of
        the same topic at the push service."""
        try:
            body = _encrypt(payload, subscription)
        except Exception as exc:  # a key that is no point on the curve: never deliverable
            log.info("push_key_unusable", subscription=subscription.id, error=repr(exc))
            return PushOutcome.GONE
        try:
            authorization = self._authorization(_origin(subscription.endpoint))
        except Exception as exc:  # an origin VAPID cannot name
            log.warning("push_unsigned", subscription=subscription.id, error=repr(exc))
            return PushOutcome.FAILED
        headers = {
            "authorization": authorization,
            "content-encoding": "aes128gcm",
            "content-type": "application/octet-stream",
            "accept-encoding": "identity",
            "ttl": str(ttl),
            "urgency": urgency,
        }
        if topic is not None:
            headers["topic"] = topic
        status, said = 0, b""
        with trio.move_on_after(SEND_TIMEOUT) as waited:
            try:
                async with self.client.stream(
                    "POST", subscription.endpoint, content=body, headers=headers
                ) as answer:
                    status = answer.status_code
                    async for chunk in answer.aiter_raw():
                        said += chunk
                        if len(said) >= 512:  # enough to say why; the rest is not read
                            break
            except Exception as exc:  # the network, or an endpoint httpx cannot reach
                log.info("push_failed", subscription=subscription.id, error=repr(exc))
                return PushOutcome.FAILED
        if waited.cancelled_caught:
            log.info("push_timed_out", subscription=subscription.id, after=SEND_TIMEOUT)
            return PushOutcome.FAILED
        if status in (404, 410):
            log.info("push_gone", subscription=subscription.id, status=status)
            return PushOutcome.GONE
        if not 200 <= status < 300:
            text = said[:200].decode(errors="replace")
            log.info("push_refused", subscription=subscription.id, status=status, body=text)
            return PushOutcome.FAILED
        return PushOutcome.SENT
