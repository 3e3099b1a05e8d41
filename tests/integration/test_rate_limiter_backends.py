"""What only the Redis rate limiter has, against a real Redis: it decides as the in-process
one does, keeps its keys tidy, and fails as a store error when Redis is gone; and the
config picks the backend.

The behaviour every backend shares is the contract in
tests/contract/test_rate_limiter_contract.py. Redis is used at ``BATCHWAY_TEST_REDIS``
(default: redis://127.0.0.1:6379/0); when it cannot be reached these cases are skipped,
except under CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import random
import secrets

import pytest
import redis.asyncio

from batchway.config import RateLimitConfig
from batchway.core.ratelimit import BUCKETS, Limit, MemoryRateLimiter
from batchway.errors import StoreError
from batchway.store.ratelimits import open_rate_limiter
from batchway.store.redis_ratelimit import RedisRateLimiter
from tests.conftest import REDIS_URL
from tests.contract.test_rate_limiter_contract import RPM, START, TPM, FakeClock, delete_prefix


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def prefix() -> str:
    return f"bwtest-{secrets.token_hex(6)}"


# -- both backends agree --------------------------------------------------------------------


async def test_backends_make_identical_decisions(
    redis_available: bool, clock: FakeClock, prefix: str
) -> None:
    if not redis_available:
        pytest.skip("Redis is not reachable")
    memory = MemoryRateLimiter(clock=clock)
    shared = RedisRateLimiter(REDIS_URL, prefix, clock=clock)
    rng = random.Random(7)
    limits = [Limit("requests", 15, 60), Limit("tokens", 4000, 60), Limit("tokens", 9000, 10)]
    try:
        for _ in range(400):
            clock.advance(rng.choice([0.0, 0.01, 0.5, 1.0, 3.7, rng.uniform(0, 30)]))
            subject = rng.choice(["key:a", "provider:x"])
            tokens = rng.choice([0, rng.randint(1, 900), 5000])
            charges = [(limits[0], 1), (limits[1], tokens), (limits[2], tokens)]
            share = rng.choice([1.0, 0.8, 0.5])
            expected = await memory.acquire(subject, charges, share=share)

            assert await shared.acquire(subject, charges, share=share) == expected

            if expected.ticket is not None and rng.random() < 0.5:
                used = rng.choice([0, tokens // 2, tokens * 2])
                await memory.settle(expected.ticket, used)
                await shared.settle(expected.ticket, used)
    finally:
        await shared.close()
        await delete_prefix(prefix)


# -- Redis housekeeping ---------------------------------------------------------------------


async def test_redis_keys_expire_and_drop_old_buckets(
    redis_available: bool, clock: FakeClock, prefix: str
) -> None:
    if not redis_available:
        pytest.skip("Redis is not reachable")
    limiter = RedisRateLimiter(REDIS_URL, prefix, clock=clock)
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    hour = Limit("tokens", 10**6, 3600)
    try:
        for _ in range(100):
            assert (await limiter.acquire("key:a", [(RPM, 0), (hour, 10)])).allowed
            clock.advance(1.5)
        keys = sorted([key async for key in client.scan_iter(match=f"{prefix}:*")])
        assert len(keys) == 2
        ttls = {key: await client.pttl(key) for key in keys}
        sizes = {key: await client.hlen(key) for key in keys}
    finally:
        await limiter.close()
        await delete_prefix(prefix)
        await client.aclose()

    minute, hourly = sorted(keys, key=lambda key: ttls[key])
    assert 60_000 < ttls[minute] <= 62_000
    assert 3_600_000 < ttls[hourly] <= 3_720_000
    # buckets that left the window were deleted, a second (SKEW_MS) after
    assert sizes[minute] <= BUCKETS + 2
    assert sizes[hourly] == 3  # 150 seconds of one-minute buckets


async def test_a_redis_host_running_ahead_erases_nothing_others_count(
    redis_available: bool, clock: FakeClock, prefix: str
) -> None:
    if not redis_available:
        pytest.skip("Redis is not reachable")
    ahead = RedisRateLimiter(REDIS_URL, prefix, clock=lambda: clock.now + 0.7)
    behind = RedisRateLimiter(REDIS_URL, prefix, clock=clock)
    try:
        clock.now = START + 0.5
        for _ in range(3):
            assert (await behind.acquire("key:a", [(RPM, 1)])).allowed
        clock.now = START + 60.5  # 61.2 for the host ahead: the first bucket has left for it

        assert (await ahead.acquire("key:a", [(RPM, 1)])).allowed
        assert not (await behind.acquire("key:a", [(RPM, 1)])).allowed
    finally:
        await ahead.close()
        await behind.close()
        await delete_prefix(prefix)


async def test_redis_settle_never_recreates_an_expired_window(
    redis_available: bool, clock: FakeClock, prefix: str
) -> None:
    if not redis_available:
        pytest.skip("Redis is not reachable")
    limiter = RedisRateLimiter(REDIS_URL, prefix, clock=clock)
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        decision = await limiter.acquire("key:a", [(TPM, 100)])
        assert decision.ticket is not None
        (key,) = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        await client.delete(key)  # as its PEXPIRE would, a minute later

        await limiter.settle(decision.ticket, 500)

        # a settle must not leave a key behind without an expiry
        assert [key async for key in client.scan_iter(match=f"{prefix}:*")] == []
    finally:
        await limiter.close()
        await delete_prefix(prefix)
        await client.aclose()


async def test_an_unreachable_redis_is_a_store_error() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", "x")  # nothing listens on port 1
    try:
        with pytest.raises(StoreError, match="Redis"):
            await limiter.acquire("key:a", [(RPM, 1)])
    finally:
        await limiter.close()


# -- choosing the backend -------------------------------------------------------------------


async def test_open_rate_limiter_picks_the_configured_backend() -> None:
    memory = open_rate_limiter(RateLimitConfig())
    shared = open_rate_limiter(RateLimitConfig(backend="redis", redis_url=REDIS_URL, prefix="x"))
    try:
        assert isinstance(memory, MemoryRateLimiter)
        assert isinstance(shared, RedisRateLimiter)
    finally:
        await memory.close()
        await shared.close()
