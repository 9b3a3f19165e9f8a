"""The fake Web Push service, against pushes made by hand exactly as the relay makes them:
the payload encrypted with ``http_ece`` (aes128gcm, a fresh ephemeral key per push), the
VAPID header signed with py_vapid's ``Vapid02``, sent with httpx to the endpoint.

Real sockets (Hypercorn on loopback), so the real clock, every wait under ``fail_after``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import http_ece  # type: ignore[import-untyped, unused-ignore]
import httpx
import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from py_vapid import Vapid02  # type: ignore[import-untyped, unused-ignore]
from py_vapid.jwt import sign  # type: ignore[import-untyped, unused-ignore]

from testkit.fakes.push_service import (
    MAX_BODY,
    PushService,
    Subscription,
    b64url,
    b64url_decode,
    open_push_service,
)

WAIT_S = 10
SUB = "mailto:ops@example.com"


@pytest.fixture
async def service() -> AsyncIterator[PushService]:
    async with open_push_service() as service:
        yield service


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=WAIT_S) as client:
        yield client


def new_vapid() -> Any:
    vapid = Vapid02()
    vapid.generate_keys()
    return vapid


def server_key(vapid: Any) -> str:
    """The applicationServerKey a page would pass to ``subscribe()``."""
    point = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(point)


def encrypt(subscription: Subscription, payload: bytes) -> bytes:
    """As the relay (and pywebpush) encrypts: a fresh sender key, aes128gcm, one record."""
    body: bytes = http_ece.encrypt(
        payload,
        private_key=ec.generate_private_key(ec.SECP256R1()),
        dh=b64url_decode(subscription.p256dh),
        auth_secret=b64url_decode(subscription.auth),
        version="aes128gcm",
    )
    return body


def push_headers(service: PushService, vapid: Any, **claims: Any) -> dict[str, str]:
    claims = {"aud": service.url, "exp": int(time.time()) + 3600, "sub": SUB, **claims}
    headers: dict[str, str] = vapid.sign(claims)
    return {
        **headers,
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "TTL": "60",
    }


async def push(
    client: httpx.AsyncClient,
    subscription: Subscription,
    headers: dict[str, str],
    body: bytes,
) -> httpx.Response:
    return await client.post(subscription.endpoint, headers=headers, content=body)


async def test_a_relay_push_is_delivered_decrypted_with_its_headers(
    service: PushService, client: httpx.AsyncClient
) -> None:
    vapid = new_vapid()
    subscription = service.subscribe(expected_key=server_key(vapid))
    payload = json.dumps({"title": "turn done", "body": "échoué? non"}).encode()
    headers = push_headers(service, vapid) | {"TTL": "300", "Topic": "s-42", "Urgency": "high"}

    response = await push(client, subscription, headers, encrypt(subscription, payload))

    assert response.status_code == 201, response.text
    assert response.headers["location"].startswith(f"{service.url}/message/")
    with trio.fail_after(WAIT_S):
        [delivery] = await service.wait_for(subscription.id)
    assert delivery.payload == payload
    assert delivery.json()["body"] == "échoué? non"
    assert (delivery.ttl, delivery.topic, delivery.urgency) == (300, "s-42", "high")
    assert delivery.claims["aud"] == service.url and delivery.claims["sub"] == SUB
    assert service.rejections == [] and service.gone == []


async def test_a_subscription_looks_like_a_browsers(service: PushService) -> None:
    subscription = service.subscribe()
    as_json = subscription.as_json()
    assert as_json == {
        "endpoint": f"{service.url}/push/{subscription.id}",
        "expirationTime": None,
        "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
    }
    assert service.url.startswith("http://127.0.0.1:")
    assert "=" not in subscription.p256dh + subscription.auth
    point = b64url_decode(subscription.p256dh)
    assert len(point) == 65 and point[0] == 4  # uncompressed
    assert len(b64url_decode(subscription.auth)) == 16
    assert service.subscribe().id != subscription.id


async def test_vapid_as_rfc_8292_writes_it_is_accepted_too(
    service: PushService, client: httpx.AsyncClient
) -> None:
    """Signed with cryptography through py_vapid's bare ``sign``, with the RFC's ", "."""
    vapid = new_vapid()
    subscription = service.subscribe(expected_key=server_key(vapid))
    token = sign({"aud": service.url, "exp": int(time.time()) + 60, "sub": SUB}, vapid.private_key)
    headers = push_headers(service, vapid)
    headers["Authorization"] = f"vapid t={token}, k={server_key(vapid)}"
    response = await push(client, subscription, headers, encrypt(subscription, b"hi"))
    assert response.status_code == 201, response.text
    assert service.deliveries[0].payload == b"hi"


@pytest.mark.parametrize("size", [0, 1, MAX_BODY - 103])  # 103: header 86, tag 16, delimiter
async def test_payloads_up_to_the_limit_round_trip(
    service: PushService, client: httpx.AsyncClient, size: int
) -> None:
    vapid = new_vapid()
    subscription = service.subscribe(expected_key=server_key(vapid))
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    body = encrypt(subscription, payload)
    response = await push(client, subscription, push_headers(service, vapid), body)
    assert response.status_code == 201, response.text
    assert service.deliveries[0].payload == payload


async def expect_rejected(
    service: PushService,
    client: httpx.AsyncClient,
    subscription: Subscription,
    headers: dict[str, str],
    body: bytes,
    status: int,
    error: str,
) -> None:
    response = await push(client, subscription, headers, body)
    assert (response.status_code, response.json()["error"]) == (status, error), response.text
    assert service.deliveries == []
    [rejection] = service.rejections
    assert (rejection.subscription_id, rejection.status) == (subscription.id, status)


async def test_a_push_signed_by_another_key_is_forbidden(
    service: PushService, client: httpx.AsyncClient
) -> None:
    subscription = service.subscribe(expected_key=server_key(new_vapid()))
    other = new_vapid()
    body = encrypt(subscription, b"x")
    await expect_rejected(
        service, client, subscription, push_headers(service, other), body, 403,
        "vapid_key_mismatch",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({"aud": "https://fcm.googleapis.com"}, "vapid_aud"),
        ({"exp": -10}, "vapid_exp"),  # seconds from now
        ({"exp": 25 * 3600}, "vapid_exp"),
        ({"sub": "ops@example.com"}, "vapid_sub"),
    ],
    ids=["wrong-aud", "expired", "too-far-ahead", "sub-not-a-url"],
)
async def test_a_push_with_bad_claims_is_unauthorized(
    service: PushService, client: httpx.AsyncClient, claims: dict[str, Any], error: str
) -> None:
    vapid = new_vapid()
    vapid.conf = {"no-strict": True}  # let py_vapid sign a bad sub
    subscription = service.subscribe(expected_key=server_key(vapid))
    if "exp" in claims:
        claims = claims | {"exp": int(time.time()) + claims["exp"]}
    headers = push_headers(service, vapid, **claims)
    body = encrypt(subscription, b"x")
    await expect_rejected(service, client, subscription, headers, body, 401, error)


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        (None, "vapid_missing"),
        ("WebPush {token}", "vapid_scheme"),  # the draft's scheme, before RFC 8292
        ("vapid t={token},k={other}", "vapid_signature"),
        ("vapid t={token},k=not-a-key", "vapid_key"),
        ("vapid k={key}", "vapid_token"),
    ],
    ids=["missing", "old-scheme", "k-did-not-sign", "k-not-a-point", "no-token"],
)
async def test_a_push_without_valid_vapid_is_unauthorized(
    service: PushService, client: httpx.AsyncClient, authorization: str | None, error: str
) -> None:
    vapid = new_vapid()
    subscription = service.subscribe()  # no expected key: VAPID is still required
    headers = push_headers(service, vapid)
    token = headers["Authorization"].split("t=", 1)[1].split(",", 1)[0]
    if authorization is None:
        del headers["Authorization"]
    else:
        headers["Authorization"] = authorization.format(
            token=token, key=server_key(vapid), other=server_key(new_vapid())
        )
    body = encrypt(subscription, b"x")
    await expect_rejected(service, client, subscription, headers, body, 401, error)


async def test_a_jwt_not_es256_is_unauthorized(
    service: PushService, client: httpx.AsyncClient
) -> None:
    """A token whose header says another alg, though its ES256 signature is good."""
    vapid = new_vapid()
    subscription = service.subscribe(expected_key=server_key(vapid))
    claims = {"aud": service.url, "exp": int(time.time()) + 60, "sub": SUB}
    signing_input = ".".join(
        b64url(json.dumps(part).encode()) for part in ({"typ": "JWT", "alg": "HS256"}, claims)
    )
    r, s = decode_dss_signature(
        vapid.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    )
    token = f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    headers = push_headers(service, vapid)
    headers["Authorization"] = f"vapid t={token}, k={server_key(vapid)}"
    body = encrypt(subscription, b"x")
    await expect_rejected(service, client, subscription, headers, body, 401, "vapid_alg")


def tampered(body: bytes) -> bytes:
    return body[:-20] + bytes([body[-20] ^ 1]) + body[-19:]  # a ciphertext byte


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"TTL": None}, "missing_ttl"),
        ({"TTL": "-1"}, "bad_ttl"),
        ({"TTL": "soon"}, "bad_ttl"),
        ({"Content-Encoding": None}, "bad_encoding"),
        ({"Content-Encoding": "aesgcm"}, "bad_encoding"),
        ({"Urgency": "urgent"}, "bad_urgency"),
        ({"Topic": "not/url-safe"}, "bad_topic"),
        ({"Topic": "t" * 33}, "bad_topic"),
        ({"body": tampered}, "bad_body"),
        ({"body": lambda body: body[:10]}, "bad_header"),
    ],
    ids=[
        "no-ttl", "negative-ttl", "ttl-not-a-number", "no-encoding", "aesgcm", "bad-urgency",
        "topic-not-base64url", "topic-too-long", "tampered", "truncated",
    ],
)  # fmt: skip
async def test_a_malformed_push_is_a_bad_request(
    service: PushService, client: httpx.AsyncClient, change: dict[str, Any], error: str
) -> None:
    vapid = new_vapid()
    subscription = service.subscribe(expected_key=server_key(vapid))
    headers = push_headers(service, vapid)
    body = encrypt(subscription, b'{"title": "x"}')
    for name, value in change.items():
        if name == "body":
            body = value(body)
        elif value is None:
            del headers[name]
        else:
            headers[name] = value
    await expect_rejected(service, client, subscription, headers, body, 400, error)


async def test_a_body_for_another_subscription_does_not_decrypt(
    service: PushService, client: httpx.AsyncClient
) -> None:
    vapid = new_vapid()
    subscription = service.subscribe(expected_key=server_key(vapid))
    body = encrypt(service.subscribe(), b"x")
    headers = push_headers(service, vapid)
    await expect_rejected(service, client, subscription, headers, body, 400, "bad_body")


async def test_a_body_of_several_records_is_refused(
    service: PushService, client: httpx.AsyncClient
) -> None:
    """RFC 8291 §4: one record; http_ece itself would decrypt several."""
    vapid = new_vapid()
    subscription = service.subscribe(expected_key=server_key(vapid))
    body: bytes = http_ece.encrypt(
        b"x" * 100,
        private_key=ec.generate_private_key(ec.SECP256R1()),
        dh=b64url_decode(subscription.p256dh),
        auth_secret=b64url_decode(subscription.auth),
        version="aes128gcm",
        rs=64,
    )
    headers = push_headers(service, vapid)
    await expect_rejected(service, client, subscription, headers, body, 400, "bad_header")


async def test_a_body_over_4096_bytes_is_too_large(
    service: PushService, client: httpx.AsyncClient
) -> None:
    vapid = new_vapid()
    subscription = service.subscribe(expected_key=server_key(vapid))
    body = encrypt(subscription, bytes(MAX_BODY - 102))
    assert len(body) == MAX_BODY + 1
    headers = push_headers(service, vapid)
    await expect_rejected(service, client, subscription, headers, body, 413, "too_large")


@pytest.mark.parametrize("status", [410, 404])
async def test_an_expired_subscription_is_gone(
    service: PushService, client: httpx.AsyncClient, status: int
) -> None:
    vapid = new_vapid()
    subscription = service.subscribe(expected_key=server_key(vapid))
    headers = push_headers(service, vapid)
    first = await push(client, subscription, headers, encrypt(subscription, b"1"))
    assert first.status_code == 201, first.text

    service.expire(subscription.id, status=status)
    response = await push(client, subscription, headers, encrypt(subscription, b"2"))

    assert response.status_code == status, response.text
    assert [d.payload for d in service.deliveries] == [b"1"]
    assert [(g.subscription_id, g.status) for g in service.gone] == [(subscription.id, status)]
    assert service.rejections == []


async def test_an_unknown_subscription_is_not_found(
    service: PushService, client: httpx.AsyncClient
) -> None:
    response = await client.post(f"{service.url}/push/nobody", content=b"x")
    assert response.status_code == 404
    assert [g.status for g in service.gone] == [404] and service.deliveries == []


async def test_wait_for_returns_once_the_count_is_reached(
    service: PushService, client: httpx.AsyncClient
) -> None:
    vapid = new_vapid()
    subscription = service.subscribe(expected_key=server_key(vapid))
    other = service.subscribe(expected_key=server_key(vapid))
    headers = push_headers(service, vapid)
    got: list[bytes] = []

    async def waiter() -> None:
        got.extend(d.payload for d in await service.wait_for(subscription.id, 2))

    with trio.fail_after(WAIT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            for sub, payload in [(subscription, b"a"), (other, b"b"), (subscription, b"c")]:
                await trio.testing.wait_all_tasks_blocked()
                assert got == []  # not before the second push to it has landed
                response = await push(client, sub, headers, encrypt(sub, payload))
                assert response.status_code == 201, response.text
    assert got == [b"a", b"c"]
    with trio.fail_after(WAIT_S):  # already there: at once
        assert [d.payload for d in await service.wait_for(other.id)] == [b"b"]
