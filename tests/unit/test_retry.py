"""Unit tests of ``batchway.core.retry``: the retry decision and its backoff."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchway.core import retry
from batchway.core.retry import RetryDecision, RetryPolicy
from batchway.errors import (
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

DRAWS = 500
RETRYABLE = [
    pytest.param(UpstreamRateLimited, id="rate-limited"),
    pytest.param(UpstreamUnavailable, id="unavailable"),
    pytest.param(UpstreamTimeout, id="timeout"),
]
FINAL = [
    pytest.param(UpstreamRejected, id="rejected"),
    pytest.param(UpstreamError, id="generic-upstream-error"),
]


@pytest.fixture(autouse=True)
def seeded_random(monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy draws from ``random``: a seeded generator makes every run the same."""
    monkeypatch.setattr(retry, "random", random.Random(20240601))


@pytest.mark.parametrize("error_class", FINAL)
@pytest.mark.parametrize("attempts", [1, 2, 4, 5, 9])
def test_final_errors_never_retry(error_class: type[UpstreamError], attempts: int) -> None:
    error = error_class("no", status=400, retry_after=1.0)

    assert RetryPolicy(max_attempts=5).decide(error, attempts) == RetryDecision(retry=False)


@pytest.mark.parametrize("error_class", RETRYABLE)
@pytest.mark.parametrize(
    ("max_attempts", "attempts", "retries"),
    [
        pytest.param(5, 1, True, id="first-failure"),
        pytest.param(5, 4, True, id="one-attempt-left"),
        pytest.param(5, 5, False, id="last-attempt"),
        pytest.param(5, 6, False, id="past-the-last"),
        pytest.param(1, 1, False, id="single-attempt-policy"),
        pytest.param(2, 1, True, id="two-attempt-policy"),
    ],
)
def test_retryable_errors_retry_until_max_attempts(
    error_class: type[UpstreamError], max_attempts: int, attempts: int, retries: bool
) -> None:
    decision = RetryPolicy(max_attempts=max_attempts).decide(error_class(), attempts)

    assert decision.retry is retries
    if not retries:
        assert decision.delay == 0.0


@pytest.mark.parametrize(
    ("attempts", "backoff"),
    [
        pytest.param(1, 1.0, id="attempt-1"),
        pytest.param(2, 2.0, id="attempt-2"),
        pytest.param(3, 4.0, id="attempt-3"),
        pytest.param(4, 8.0, id="attempt-4"),
        pytest.param(5, 10.0, id="attempt-5-capped"),
        pytest.param(40, 10.0, id="attempt-40-capped"),
    ],
)
def test_delay_is_jittered_between_half_the_backoff_and_the_backoff(
    attempts: int, backoff: float
) -> None:
    policy = RetryPolicy(max_attempts=100, base_seconds=1.0, max_seconds=10.0)

    delays = [policy.decide(UpstreamUnavailable(), attempts).delay for _ in range(DRAWS)]

    assert all(backoff / 2 <= d <= backoff for d in delays)
    # jittered across the whole range, not a constant
    assert min(delays) < backoff * 0.55
    assert max(delays) > backoff * 0.95


def test_delay_never_exceeds_max_seconds() -> None:
    policy = RetryPolicy(max_attempts=1000, base_seconds=3.0, max_seconds=7.5)

    for attempts in range(1, 200):
        delay = policy.decide(UpstreamTimeout(), attempts).delay
        assert 0 < delay <= 7.5


def test_zero_base_means_no_wait() -> None:
    policy = RetryPolicy(base_seconds=0.0)

    assert policy.decide(UpstreamUnavailable(), 1) == RetryDecision(retry=True, delay=0.0)


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        pytest.param(7.0, 7.0, 7.0, id="longer-than-backoff"),
        pytest.param(0.5, 1.0, 2.0, id="shorter-than-backoff"),
        pytest.param(0.0, 1.0, 2.0, id="zero"),
        pytest.param(1000.0, 30.0, 30.0, id="capped-at-max"),
        pytest.param(30.0, 30.0, 30.0, id="exactly-max"),
    ],
)
def test_retry_after_is_honoured_and_capped(retry_after: float, low: float, high: float) -> None:
    # attempt 2 with base 1: backoff 2, so the jittered delay is in [1, 2]
    policy = RetryPolicy(max_attempts=5, base_seconds=1.0, max_seconds=30.0)
    error = UpstreamRateLimited(status=429, retry_after=retry_after)

    delays = [policy.decide(error, 2).delay for _ in range(DRAWS)]

    assert all(low <= d <= high for d in delays)
    assert all(d >= min(retry_after, policy.max_seconds) for d in delays)


def test_retry_after_does_not_lift_the_attempt_limit() -> None:
    error = UpstreamRateLimited(retry_after=1.0)

    assert RetryPolicy(max_attempts=3).decide(error, 3) == RetryDecision(retry=False)


@settings(database=None, max_examples=300)
@given(
    attempts=st.integers(min_value=1, max_value=60),
    base=st.floats(min_value=0.0, max_value=100.0),
    cap=st.floats(min_value=0.0, max_value=3600.0),
    retry_after=st.none() | st.floats(min_value=0.0, max_value=10_000.0),
)
def test_delay_bounds_hold_for_any_policy(
    attempts: int, base: float, cap: float, retry_after: float | None
) -> None:
    policy = RetryPolicy(max_attempts=attempts + 1, base_seconds=base, max_seconds=cap)

    decision = policy.decide(UpstreamUnavailable(retry_after=retry_after), attempts)

    backoff = min(cap, base * 2 ** min(attempts - 1, 30))
    assert decision.retry
    assert 0 <= decision.delay <= cap
    assert decision.delay >= backoff / 2
    if retry_after is not None:
        assert decision.delay >= min(retry_after, cap)


def test_a_very_long_retry_budget_does_not_overflow() -> None:
    policy = RetryPolicy(max_attempts=10_000, base_seconds=1.0, max_seconds=60.0)

    decision = policy.decide(UpstreamUnavailable(), 1100)

    assert decision.retry
    assert 30.0 <= decision.delay <= 60.0
