"""The ``RateLimiter`` contract: the same decisions from every implementation, in process
(``MemoryRateLimiter``) and in Redis (``RedisRateLimiter``).

Redis is used at ``BATCHWAY_TEST_REDIS`` (default: redis://127.0.0.1:6379/0). Each test gets
its own key prefix and deletes its keys afterwards. When Redis cannot be reached the Redis
cases are skipped, except under CI (``CI=true``), where that is a failure; the memory cases
never touch it.

Time comes from a fake clock moved by hand: no test sleeps or measures real time.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
import redis.asyncio

from batchway.core.ports import RateLimiter
from batchway.core.ratelimit import Decision, Limit, MemoryRateLimiter, hold
from batchway.store.redis_ratelimit import RedisRateLimiter
from tests.conftest import REDIS_URL

START = 1_700_000_000.0  # a realistic epoch, so bucket arithmetic runs on large numbers

RPM = Limit("requests", 3, 60)
TPM = Limit("tokens", 1000, 60)


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


MakeLimiter = Callable[[], RateLimiter]


async def delete_prefix(prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def prefix() -> str:
    return f"bwtest-{secrets.token_hex(6)}"


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(
    request: pytest.FixtureRequest, clock: FakeClock, prefix: str
) -> AsyncIterator[MakeLimiter]:
    """``make_limiter()``: a limiter on the test's windows. For Redis every call is a new
    client on the same prefix (another gateway process); in memory they share one object."""
    opened: list[RateLimiter] = []
    if request.param == "memory":
        memory = MemoryRateLimiter(clock=clock)
        opened.append(memory)
        yield lambda: memory
    else:
        if not request.getfixturevalue("redis_available"):
            pytest.skip("Redis is not reachable")

        def make() -> RateLimiter:
            limiter = RedisRateLimiter(REDIS_URL, prefix, clock=clock)
            opened.append(limiter)
            return limiter

        try:
            yield make
        finally:
            await delete_prefix(prefix)
    for limiter in opened:
        await limiter.close()


@pytest.fixture
def limiter(make_limiter: MakeLimiter) -> RateLimiter:
    return make_limiter()


async def _request(limiter: RateLimiter, tokens: int = 100, share: float = 1.0) -> Decision:
    return await limiter.acquire("key:a", [(RPM, 1), (TPM, tokens)], share=share)


# -- basic decisions ------------------------------------------------------------------------


async def test_allows_up_to_the_limit_then_refuses(limiter: RateLimiter) -> None:
    remaining = []
    for _ in range(3):
        decision = await _request(limiter)
        assert decision.allowed
        assert decision.retry_after == 0.0
        assert decision.ticket is not None
        remaining.append([state.remaining for state in decision.states])

    refused = await _request(limiter)

    assert remaining == [[2, 900], [1, 800], [0, 700]]
    assert not refused.allowed
    assert refused.ticket is None
    assert refused.retry_after > 0
    assert [state.remaining for state in refused.states] == [0, 700]


async def test_states_follow_the_order_given(limiter: RateLimiter) -> None:
    hour = Limit("tokens", 50_000, 3600)

    decision = await limiter.acquire("key:a", [(TPM, 10), (hour, 10), (RPM, 1)])

    assert [state.limit for state in decision.states] == [TPM, hour, RPM]
    assert [state.remaining for state in decision.states] == [990, 49_990, 2]
    assert decision.ticket is not None
    assert [(limit, amount) for limit, amount, _ in decision.ticket.charges] == [
        (TPM, 10),
        (hour, 10),
        (RPM, 1),
    ]


async def test_reset_is_when_the_charged_bucket_leaves(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    clock.now = START + 0.25  # START is on a bucket boundary, one bucket is a second long

    decision = await _request(limiter)
    empty = await limiter.acquire("key:b", [(RPM, 0)])

    # the bucket [START, START + 1) counts while it overlaps the last minute
    assert [state.reset_seconds for state in decision.states] == [60.75, 60.75]
    assert empty.states[0].reset_seconds == 0.0
    assert empty.states[0].remaining == 3


async def test_waiting_retry_after_lets_the_same_charge_pass(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    for step in range(3):
        clock.now = START + 10 * step + 0.5
        assert (await _request(limiter)).allowed
    clock.advance(7.3)

    refused = await _request(limiter)
    # the first request's bucket [START, START + 1) leaves the window at START + 61
    assert refused.retry_after == pytest.approx(START + 61 - clock.now)
    clock.advance(refused.retry_after - 0.001)
    assert not (await _request(limiter)).allowed
    clock.now = START + 61

    assert (await _request(limiter)).allowed


async def test_retry_after_waits_for_enough_buckets_to_leave(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    for step, tokens in enumerate([300, 300, 400]):
        clock.now = START + 5 * step
        assert (await _request(limiter, tokens=tokens)).allowed

    refused = await limiter.acquire("key:a", [(TPM, 550)])

    # 550 fits once 600 have left: the first two buckets, the second leaving at START + 66
    assert refused.retry_after == pytest.approx(START + 66 - clock.now)
    clock.advance(refused.retry_after)
    assert (await limiter.acquire("key:a", [(TPM, 550)])).allowed


async def test_all_or_nothing_across_charges(limiter: RateLimiter) -> None:
    assert (await _request(limiter, tokens=950)).allowed

    refused = await _request(limiter, tokens=100)
    small = await _request(limiter, tokens=50)

    assert not refused.allowed
    # the refused call charged nothing: the request it would have used is still there
    assert [state.remaining for state in refused.states] == [2, 50]
    assert small.allowed
    assert [state.remaining for state in small.states] == [1, 0]


async def test_retry_after_is_the_longest_wait_of_the_refused_charges(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    for at, tokens in [(0, 0), (1, 0), (20, 900)]:
        clock.now = START + at
        assert (await _request(limiter, tokens=tokens)).allowed
    clock.advance(5)

    refused = await _request(limiter, tokens=200)

    # a request frees up at START + 61, the tokens only at START + 81
    assert refused.retry_after == pytest.approx(START + 81 - clock.now)
    clock.advance(refused.retry_after)
    assert (await _request(limiter, tokens=200)).allowed


async def test_windows_are_per_subject_unit_and_length(limiter: RateLimiter) -> None:
    per_hour = Limit("requests", 3, 3600)
    for _ in range(3):
        assert (await limiter.acquire("key:a", [(RPM, 1)])).allowed
    assert not (await limiter.acquire("key:a", [(RPM, 1)])).allowed

    assert (await limiter.acquire("key:b", [(RPM, 1)])).allowed
    assert (await limiter.acquire("provider:openai", [(RPM, 1)])).allowed
    assert (await limiter.acquire("key:a", [(Limit("tokens", 3, 60), 1)])).allowed
    assert (await limiter.acquire("key:a", [(per_hour, 1)])).allowed


async def test_the_same_window_whatever_the_limit_value(limiter: RateLimiter) -> None:
    # a key whose rpm is lowered keeps what it already used
    assert (await limiter.acquire("key:a", [(Limit("requests", 10, 60), 5)])).allowed

    decision = await limiter.acquire("key:a", [(Limit("requests", 6, 60.0), 1)])

    assert decision.allowed
    assert decision.states[0].remaining == 0


async def test_the_window_rolls_bucket_by_bucket(limiter: RateLimiter, clock: FakeClock) -> None:
    limit = Limit("requests", 10, 60)
    for second in range(10):
        clock.now = START + 6 * second + 0.5
        assert (await limiter.acquire("key:a", [(limit, 1)])).allowed
    assert not (await limiter.acquire("key:a", [(limit, 1)])).allowed

    allowed_at = []
    for second in range(60, 121):
        clock.now = START + second + 0.5
        if (await limiter.acquire("key:a", [(limit, 1)])).allowed:
            allowed_at.append(second)

    # each old request frees its place 61 seconds after its bucket began
    assert allowed_at == [61, 67, 73, 79, 85, 91, 97, 103, 109, 115]


# -- share ----------------------------------------------------------------------------------


async def test_share_leaves_headroom_for_full_share_callers(limiter: RateLimiter) -> None:
    limit = Limit("requests", 10, 60)
    batch = [(await limiter.acquire("p", [(limit, 1)], share=0.8)).allowed for _ in range(9)]

    interactive = [(await limiter.acquire("p", [(limit, 1)])).allowed for _ in range(3)]

    assert batch == [True] * 8 + [False]
    assert interactive == [True, True, False]


async def test_share_counts_what_full_share_callers_used(limiter: RateLimiter) -> None:
    limit = Limit("tokens", 1000, 60)
    assert (await limiter.acquire("p", [(limit, 700)])).allowed

    assert not (await limiter.acquire("p", [(limit, 101)], share=0.8)).allowed
    assert (await limiter.acquire("p", [(limit, 100)], share=0.8)).allowed


async def test_share_cap_is_exact_for_awkward_fractions(limiter: RateLimiter) -> None:
    # 100 * 0.29 is 28.999999999999996 in floating point; the cap is still 29
    limit = Limit("requests", 100, 60)

    assert (await limiter.acquire("p", [(limit, 29)], share=0.29)).allowed


# -- oversized and empty charges ------------------------------------------------------------


async def test_an_oversized_charge_passes_on_an_empty_window_only(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    assert (await _request(limiter, tokens=5000)).allowed
    clock.advance(10)
    refused = await _request(limiter, tokens=5000)
    assert not refused.allowed
    assert refused.states[1].remaining == 0
    assert refused.retry_after == pytest.approx(START + 61 - clock.now)

    clock.advance(refused.retry_after)

    assert (await _request(limiter, tokens=5000)).allowed


async def test_an_oversized_charge_waits_for_the_window_to_empty(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    for step in range(3):
        clock.now = START + 10 * step
        assert (await _request(limiter, tokens=10)).allowed
    clock.advance(1)

    refused = await limiter.acquire("key:a", [(TPM, 900)], share=0.8)

    # above floor(1000 * 0.8): fits only once all three buckets have left
    assert refused.retry_after == pytest.approx(START + 81 - clock.now)


async def test_zero_amounts_always_fit(limiter: RateLimiter) -> None:
    assert (await _request(limiter, tokens=1000)).allowed

    decision = await limiter.acquire("key:a", [(TPM, 0)], share=0.5)

    assert decision.allowed
    assert decision.states[0].remaining == 0


async def test_an_empty_charge_list_is_allowed(limiter: RateLimiter) -> None:
    decision = await limiter.acquire("key:a", [])

    assert decision.allowed
    assert decision.states == ()
    assert decision.ticket is not None
    await limiter.settle(decision.ticket, 10)


@pytest.mark.parametrize(
    ("charges", "share", "problem"),
    [
        ([(RPM, 1)], 0.0, "share"),
        ([(RPM, 1)], 1.5, "share"),
        ([(TPM, 1), (RPM, -1)], 1.0, "amount"),
    ],
)
async def test_bad_arguments_are_refused(
    limiter: RateLimiter, charges: list[tuple[Limit, int]], share: float, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        await limiter.acquire("key:a", charges, share=share)

    assert (await limiter.acquire("key:a", [(RPM, 0), (TPM, 0)])).states[1].remaining == 1000


# -- settle ---------------------------------------------------------------------------------


async def test_settle_corrects_every_token_charge(limiter: RateLimiter) -> None:
    hour = Limit("tokens", 10_000, 3600)
    decision = await limiter.acquire("key:a", [(RPM, 1), (TPM, 500), (hour, 500)])
    assert decision.ticket is not None

    await limiter.settle(decision.ticket, 120)
    after = await limiter.acquire("key:a", [(RPM, 0), (TPM, 0), (hour, 0)])

    assert [state.remaining for state in after.states] == [2, 880, 9880]


async def test_settle_may_charge_more_than_the_estimate(limiter: RateLimiter) -> None:
    decision = await _request(limiter, tokens=100)
    assert decision.ticket is not None

    await limiter.settle(decision.ticket, 1100)
    after = await _request(limiter, tokens=0)

    assert after.states[1].remaining == 0
    assert not (await _request(limiter, tokens=1)).allowed


async def test_settle_corrects_the_bucket_it_charged(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    early = await _request(limiter, tokens=600)
    assert early.ticket is not None
    clock.advance(30)
    assert (await _request(limiter, tokens=400)).allowed

    await limiter.settle(early.ticket, 100)
    clock.advance(31)  # the early bucket has left; only the later 400 remain
    after = await _request(limiter, tokens=0)

    assert after.states[1].remaining == 600


async def test_settle_after_the_bucket_left_is_ignored(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    decision = await _request(limiter, tokens=600)
    assert decision.ticket is not None
    clock.advance(61)
    assert (await _request(limiter, tokens=0)).allowed  # drops the old bucket

    await limiter.settle(decision.ticket, 5000)
    after = await _request(limiter, tokens=0)

    assert after.states[1].remaining == 1000


async def test_a_bucket_may_go_negative(limiter: RateLimiter, clock: FakeClock) -> None:
    first = await _request(limiter, tokens=400)
    assert first.ticket is not None
    clock.advance(30)
    assert (await _request(limiter, tokens=400)).allowed
    # settled twice (say, by a retried bookkeeping step): the first bucket ends at -400
    await limiter.settle(first.ticket, 0)
    await limiter.settle(first.ticket, 0)

    now = await _request(limiter, tokens=0)
    assert now.states[1].remaining == 1000  # never more than the limit
    assert now.states[1].reset_seconds == 0.0
    clock.advance(31)  # the negative bucket leaves: the later 400 count again
    assert (await _request(limiter, tokens=0)).states[1].remaining == 600


# -- the guarantee --------------------------------------------------------------------------


def _worst_window(log: Sequence[tuple[float, int]], seconds: float) -> int:
    """The most units allowed in any closed interval of ``seconds`` (two pointers)."""
    worst, total, start = 0, 0, 0
    for end in range(len(log)):
        total += log[end][1]
        while log[end][0] - log[start][0] > seconds:
            total -= log[start][1]
            start += 1
        worst = max(worst, total)
    return worst


@pytest.mark.parametrize("seed", range(4))
async def test_no_window_ever_holds_more_than_the_limit(
    limiter: RateLimiter, clock: FakeClock, seed: int
) -> None:
    rng = random.Random(seed)
    limits = [Limit("requests", 20, 60), Limit("tokens", 5000, 60), Limit("tokens", 30_000, 600)]
    logs: list[list[tuple[float, int]]] = [[] for _ in limits]
    allowed = 0
    for _ in range(600):
        clock.advance(rng.expovariate(1 / 2.5))
        amounts = [1, rng.randint(0, 1500), 0]
        amounts[2] = amounts[1]
        share = rng.choice([1.0, 0.8])
        decision = await limiter.acquire(
            "provider:x", list(zip(limits, amounts, strict=True)), share=share
        )
        if decision.allowed:
            allowed += 1
            for log, amount in zip(logs, amounts, strict=True):
                log.append((clock.now, amount))

    assert allowed > 100  # the run did exercise both refusals and passes
    for limit, log in zip(limits, logs, strict=True):
        assert _worst_window(log, limit.seconds) <= limit.limit


async def test_the_limit_is_not_overly_conservative(limiter: RateLimiter, clock: FakeClock) -> None:
    # a caller that always waits retry_after keeps the window nearly full
    limit = Limit("requests", 30, 60)
    passed = 0
    while clock.now < START + 600:
        decision = await limiter.acquire("key:a", [(limit, 1)])
        if decision.allowed:
            passed += 1
            clock.advance(0.1)
        else:
            clock.advance(decision.retry_after)

    # at most 30 per 61 seconds (one bucket of slack), at least that many
    assert passed >= 30 * 600 // 61


# -- several processes ----------------------------------------------------------------------


async def test_concurrent_acquires_never_overshoot(make_limiter: MakeLimiter) -> None:
    limit = Limit("tokens", 1000, 60)
    limiters = [make_limiter() for _ in range(4)]

    decisions = await asyncio.gather(
        *(limiters[i % 4].acquire("provider:x", [(limit, 7)]) for i in range(200))
    )

    assert sum(decision.allowed for decision in decisions) == 1000 // 7


async def test_processes_share_the_same_windows(make_limiter: MakeLimiter) -> None:
    first, second = make_limiter(), make_limiter()
    decision = await first.acquire("key:a", [(TPM, 600)])
    assert decision.ticket is not None

    await second.settle(decision.ticket, 100)

    assert (await second.acquire("key:a", [(TPM, 900)])).allowed
    assert not (await first.acquire("key:a", [(TPM, 1)])).allowed


async def test_a_clock_running_behind_charges_the_newest_bucket(
    make_limiter: MakeLimiter, clock: FakeClock
) -> None:
    ahead, behind = make_limiter(), make_limiter()
    clock.now = START + 30.5
    early = await ahead.acquire("key:a", [(RPM, 1)])
    clock.now = START + 28.5  # another host, two seconds behind

    late = await behind.acquire("key:a", [(RPM, 1)])

    assert early.ticket is not None and late.ticket is not None
    assert late.ticket.charges[0][2] == early.ticket.charges[0][2]
    assert late.states[0].reset_seconds == pytest.approx(START + 91 - clock.now)


# -- hold -----------------------------------------------------------------------------------


async def test_hold_waits_until_the_charge_passes(limiter: RateLimiter, clock: FakeClock) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    tickets = [
        await hold(limiter, "provider:x", [(RPM, 1), (TPM, 100)], share=0.8, sleep=sleep)
        for _ in range(4)
    ]

    assert len(waits) == 1
    assert waits[0] == pytest.approx(61)
    assert [ticket.subject for ticket in tickets] == ["provider:x"] * 4
    assert clock.now == pytest.approx(START + 61)


async def test_hold_lets_a_huge_line_through_once_the_window_empties(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    assert (await _request(limiter, tokens=500)).allowed

    ticket = await hold(limiter, "key:a", [(TPM, 10_000)], share=0.8, sleep=sleep)

    assert ticket.charges[0][:2] == (TPM, 10_000)
    assert clock.now == pytest.approx(START + 61)
