"""Failed sign-in and pairing attempts are limited per address."""

from __future__ import annotations

import httpx
import pytest

from relay.auth import hash_secret
from relay.errors import RateLimited
from relay.ratelimit import AttemptLimiter
from relay.storage import Storage

from .test_client_api import assert_error


async def test_sign_in_is_refused_after_ten_failures_even_with_a_good_code(
    client: httpx.AsyncClient, storage: Storage
) -> None:
    await storage.add_login_code(hash_secret("good"), 600)
    for i in range(10):
        assert_error(await client.get(f"/login?code=bad{i}"), 401, "invalid_login_code")
    response = await client.get("/login?code=good")
    body = assert_error(response, 429, "rate_limited")
    assert "sign-in" in body["error"]["message"]
    assert 1 <= int(response.headers["retry-after"]) <= 60
    # Refused before the code was looked at: it is still unused.
    assert await storage.redeem_login_code(hash_secret("good"), hash_secret("s"), 60)


async def test_pairing_is_refused_after_ten_failures(
    client: httpx.AsyncClient, storage: Storage
) -> None:
    await storage.add_pair_code(hash_secret("GOODCODE"), 600)
    for _ in range(10):
        response = await client.post("/daemon/v1/pair", json={"code": "NOPE-NOPE", "machine": "m"})
        assert_error(response, 401, "invalid_pair_code")
    response = await client.post("/daemon/v1/pair", json={"code": "GOOD-CODE", "machine": "m"})
    assert_error(response, 429, "rate_limited")
    assert "retry-after" in response.headers


async def test_successes_do_not_count(client: httpx.AsyncClient, storage: Storage) -> None:
    for i in range(15):
        await storage.add_login_code(hash_secret(f"code{i}"), 600)
        assert (await client.get(f"/login?code=code{i}")).status_code == 303


def test_failures_age_out_after_the_window() -> None:
    now = [0.0]
    limiter = AttemptLimiter("sign-in", limit=3, window=60.0, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("1.2.3.4")
        limiter.failed("1.2.3.4")
        now[0] += 10
    with pytest.raises(RateLimited) as refused:
        limiter.check("1.2.3.4")
    assert refused.value.retry_after == pytest.approx(30.0)
    limiter.check("5.6.7.8")  # another address is unaffected
    now[0] = 60.5  # the first failure (at 0) has aged out
    limiter.check("1.2.3.4")
    limiter.failed("1.2.3.4")
    with pytest.raises(RateLimited):
        limiter.check("1.2.3.4")
