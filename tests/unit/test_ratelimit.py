"""The rate limiter's own logic: limits, window arithmetic and the in-process backend.

Behaviour shared with the Redis backend is tested on both in
tests/contract/test_rate_limiter_contract.py; this file holds what needs no server.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchway.core.ports import RateLimiter
from batchway.core.ratelimit import (
    BUCKETS,
    Limit,
    MemoryRateLimiter,
    bucket_index,
    bucket_leaves_at,
    charge_cap,
    hold,
)

START = 1_700_000_000.0
RPM = Limit("requests", 3, 60)


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_memory_backend_is_a_rate_limiter() -> None:
    limiter: RateLimiter = MemoryRateLimiter()

    assert isinstance(limiter, MemoryRateLimiter)


# -- limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "name"),
    [
        (Limit("requests", 10, 60), "requests"),
        (Limit("tokens", 10, 60.0), "tokens"),
        (Limit("tokens", 10, 3600), "tokens-hour"),
        (Limit("requests", 10, 86_400), "requests-86400s"),
        (Limit("requests", 10, 1.5), "requests-1.5s"),
    ],
)
def test_limit_names_for_headers(limit: Limit, name: str) -> None:
    assert limit.name == name


@pytest.mark.parametrize(("limit", "seconds"), [(-1, 60), (10, 0), (10, -60), (10, math.nan)])
def test_a_limit_must_make_sense(limit: int, seconds: float) -> None:
    with pytest.raises(ValueError):
        Limit("requests", limit, seconds)


@pytest.mark.parametrize(
    ("limit", "share", "cap"),
    [(10, 1.0, 10), (10, 0.8, 8), (3, 0.8, 2), (100, 0.29, 29), (1, 0.5, 0), (7, 0.999, 6)],
)
def test_charge_cap_is_the_floor_of_the_share(limit: int, share: float, cap: int) -> None:
    assert charge_cap(Limit("tokens", limit, 60), share) == cap


@pytest.mark.parametrize("share", [0.0, -0.5, 1.01, math.nan])
async def test_share_must_be_a_fraction(share: float) -> None:
    limiter = MemoryRateLimiter(clock=FakeClock())

    with pytest.raises(ValueError, match="share"):
        await limiter.acquire("key:a", [(RPM, 1)], share=share)


async def test_amounts_may_not_be_negative() -> None:
    limiter = MemoryRateLimiter(clock=FakeClock())

    with pytest.raises(ValueError, match="amount"):
        await limiter.acquire("key:a", [(RPM, -1)])


# -- window arithmetic ----------------------------------------------------------------------


@settings(max_examples=400)
@given(
    now=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    seconds=st.sampled_from([1.0, 7.0, 10.0, 60.0, 3600.0, 86_400.0, 0.3]),
)
def test_a_bucket_has_left_at_its_leave_time_and_not_before(now: float, seconds: float) -> None:
    limit = Limit("tokens", 1, seconds)
    index = bucket_index(limit, now)

    leaves = bucket_leaves_at(limit, index)

    assert leaves > now
    assert bucket_index(limit, leaves) - BUCKETS > index  # gone at that instant …
    assert bucket_index(limit, math.nextafter(leaves, 0)) - BUCKETS <= index  # … not before
    assert leaves - now <= seconds * (BUCKETS + 1) / BUCKETS + 1e-6  # one bucket of slack


# -- the in-process backend -----------------------------------------------------------------


async def test_memory_drops_buckets_that_left_the_window() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    for _ in range(500):
        await limiter.acquire("key:a", [(RPM, 0)])
        clock.now += 0.7

    # looking inside: only the buckets still overlapping the last minute are kept
    (window,) = limiter._windows.values()
    assert len(window.amounts) == len(window.order) <= BUCKETS + 1
    assert list(window.order) == sorted(window.amounts)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=20),  # seconds since the previous call
            st.integers(min_value=0, max_value=400),  # tokens
            st.sampled_from([1.0, 0.8]),  # share
            st.booleans(),  # settle to half the estimate
        ),
        max_size=150,
    )
)
async def test_no_minute_ever_holds_more_than_the_limit(
    steps: list[tuple[float, int, float, bool]],
) -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    limits = [Limit("requests", 5, 60), Limit("tokens", 1000, 60)]
    log: list[tuple[float, int, int]] = []
    for gap, tokens, share, settle in steps:
        clock.now += gap
        decision = await limiter.acquire("p", [(limits[0], 1), (limits[1], tokens)], share=share)
        if decision.ticket is None:
            # a retry after retry_after passes (nothing else was charged meanwhile)
            assert decision.retry_after > 0
            clock.now += decision.retry_after
            decision = await limiter.acquire(
                "p", [(limits[0], 1), (limits[1], tokens)], share=share
            )
            assert decision.ticket is not None
        used = tokens // 2 if settle else tokens
        if settle:
            await limiter.settle(decision.ticket, used)
        log.append((clock.now, 1, used))

    for start, _, _ in log:
        inside = [entry for entry in log if start <= entry[0] <= start + 60]
        assert sum(entry[1] for entry in inside) <= 5
        assert sum(entry[2] for entry in inside) <= 1000


async def test_hold_returns_at_once_when_allowed() -> None:
    limiter = MemoryRateLimiter(clock=FakeClock())

    async def sleep(seconds: float) -> None:
        raise AssertionError("hold slept")

    ticket = await hold(limiter, "p", [(RPM, 1)], share=0.8, sleep=sleep)

    assert ticket.subject == "p"
    assert ticket.charges == ((RPM, 1, bucket_index(RPM, START)),)


async def test_close_is_harmless() -> None:
    limiter = MemoryRateLimiter()
    await limiter.close()
    await limiter.close()
