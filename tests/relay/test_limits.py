"""Failed sign-in and pairing attempts are limited per caller: checked and counted in one
step, every loopback address one caller, X-Forwarded-For believed from trusted proxies only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from relay import RelayConfig, RunningRelay, admin, serve_relay
from relay.auth import hash_secret
from relay.errors import RateLimited
from relay.ratelimit import AttemptLimiter, limit_key
from relay.storage import Storage

from .conftest import GUARD
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
        limiter.begin("1.2.3.4")  # a failure unless it succeeds
        now[0] += 10
    with pytest.raises(RateLimited) as refused:
        limiter.begin("1.2.3.4")
    assert refused.value.retry_after == pytest.approx(30.0)
    limiter.begin("5.6.7.8").succeeded()  # another address is unaffected
    now[0] = 60.5  # the first failure (at 0) has aged out
    limiter.begin("1.2.3.4")
    with pytest.raises(RateLimited):
        limiter.check("1.2.3.4")


def test_an_attempt_counts_from_its_start_and_a_success_takes_it_back() -> None:
    limiter = AttemptLimiter("pairing", limit=2, window=60.0)
    first, second = limiter.begin("k"), limiter.begin("k")
    with pytest.raises(RateLimited):  # two in flight: the limit is reached before either ends
        limiter.begin("k")
    first.succeeded()
    second.succeeded()
    second.succeeded()  # twice is once
    limiter.begin("k")
    limiter.begin("k")
    with pytest.raises(RateLimited):
        limiter.begin("k")


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.2", "loopback"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("unknown", "unknown"),
    ],
)
def test_who_is_counted(address: str, key: str) -> None:
    assert limit_key(address) == key


# -- over real sockets ----------------------------------------------------------------------

PARALLEL = 200


@asynccontextmanager
async def real_relay(data_dir: Path, **options: Any) -> AsyncIterator[RunningRelay]:
    config = RelayConfig(data_dir=data_dir, port=0, **options)
    async with trio.open_nursery() as nursery:
        yield await nursery.start(serve_relay, config)
        nursery.cancel_scope.cancel()


def client_from(
    relay: RunningRelay, source: str = "127.0.0.1", **headers: str
) -> httpx.AsyncClient:
    """A client of ``relay`` whose connections come from the loopback address ``source``."""
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{relay.port}",
        transport=httpx.AsyncHTTPTransport(
            local_address=source, limits=httpx.Limits(max_connections=PARALLEL)
        ),
        headers=headers,
        timeout=GUARD,
    )


async def in_parallel(count: int, send: Callable[[int], Awaitable[httpx.Response]]) -> list[int]:
    statuses: list[int] = []

    async def one(i: int) -> None:
        statuses.append((await send(i)).status_code)

    with trio.fail_after(GUARD * 3):
        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, i)
    return statuses


@pytest.mark.parametrize("door", ["pair", "login"])
async def test_parallel_wrong_codes_get_at_most_the_limit_checked(
    data_dir: Path, door: str
) -> None:
    async with real_relay(data_dir) as relay, client_from(relay) as http:
        if door == "pair":
            statuses = await in_parallel(
                PARALLEL,
                lambda i: http.post(
                    "/daemon/v1/pair", json={"code": f"WRONG-{i:04d}", "machine": "m"}
                ),
            )
        else:
            statuses = await in_parallel(PARALLEL, lambda i: http.get(f"/login?code=wrong{i}"))
    assert sorted(set(statuses)) == [401, 429], statuses
    assert statuses.count(401) == 10
    assert statuses.count(429) == PARALLEL - 10


async def test_a_second_loopback_address_shares_the_lockout(data_dir: Path) -> None:
    async with real_relay(data_dir) as relay:
        code = await trio.to_thread.run_sync(admin.create_pair_code, data_dir)
        async with client_from(relay, "127.0.0.1") as first:
            for i in range(10):
                response = await first.get(f"/login?code=wrong{i}")
                assert_error(response, 401, "invalid_login_code")
        async with client_from(relay, "127.0.0.2") as second:
            response = await second.post("/daemon/v1/pair", json={"code": code, "machine": "m"})
            assert response.status_code == 200, "another door has its own count"
            assert_error(await second.get("/login?code=wrong"), 429, "rate_limited")


async def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(data_dir: Path) -> None:
    async with real_relay(data_dir, trusted_proxies=("127.0.0.1",)) as relay:
        async with client_from(relay, "127.0.0.1") as proxy:
            for i in range(10):
                response = await proxy.get(
                    f"/login?code=wrong{i}",
                    # What a client sent, then what the proxy appended: only the latter counts.
                    headers={"x-forwarded-for": f"198.51.100.{i}, 203.0.113.5"},
                )
                assert_error(response, 401, "invalid_login_code")
            locked = {"x-forwarded-for": "203.0.113.5"}
            assert_error(await proxy.get("/login?code=x", headers=locked), 429, "rate_limited")
            other = {"x-forwarded-for": "203.0.113.6"}
            assert_error(await proxy.get("/login?code=x", headers=other), 401, "invalid_login_code")
        # Not the trusted proxy: its header is ignored, it counts as itself (loopback).
        async with client_from(relay, "127.0.0.2") as stranger:
            for i in range(10):
                forged = {"x-forwarded-for": f"192.0.2.{i}"}
                response = await stranger.get(f"/login?code=w{i}", headers=forged)
                assert_error(response, 401, "invalid_login_code")
            forged = {"x-forwarded-for": "192.0.2.200"}
            assert_error(await stranger.get("/login?code=x", headers=forged), 429, "rate_limited")


async def test_without_trusted_proxies_the_forwarded_header_is_ignored(data_dir: Path) -> None:
    async with real_relay(data_dir) as relay, client_from(relay) as http:
        for i in range(10):
            forged = {"x-forwarded-for": f"192.0.2.{i}"}
            assert_error(
                await http.get(f"/login?code=w{i}", headers=forged), 401, "invalid_login_code"
            )
        forged = {"x-forwarded-for": "192.0.2.200"}
        assert_error(await http.get("/login?code=x", headers=forged), 429, "rate_limited")


def test_a_trusted_proxy_must_be_an_address_or_a_network(data_dir: Path) -> None:
    RelayConfig(data_dir=data_dir, trusted_proxies=("10.0.0.0/8", "::1", "192.0.2.1"))
    with pytest.raises(ValueError, match=r"proxy\.example"):
        RelayConfig(data_dir=data_dir, trusted_proxies=("proxy.example",))


def test_rcd_relay_takes_repeated_trusted_proxies() -> None:
    from cli import build_parser
    from relay.cli import relay_config

    args = build_parser().parse_args(
        ["relay", "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "::1"]
    )
    assert args.trusted_proxy == ["10.0.0.0/8", "::1"]
    assert relay_config(args).trusted_proxies == ("10.0.0.0/8", "::1")
    assert relay_config(build_parser().parse_args(["relay"])).trusted_proxies == ()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["relay", "--trusted-proxy", "proxy.example"])
