"""Unit tests of ``batchway.core.retry``: the retry decision and its backoff."""

from __future__ import annotations

import math
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


# -- Retry-After -------------------------------------------------------------------------------

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("0", 0.0, id="zero"),
        pytest.param("7", 7.0, id="seconds"),
        pytest.param(" 2.5 ", 2.5, id="fraction-and-spaces"),
        pytest.param("86400", 86400.0, id="a-day"),
        pytest.param("soon", None, id="text"),
        pytest.param("", None, id="empty"),
        pytest.param("-5", None, id="negative"),
        pytest.param("inf", None, id="inf"),
        pytest.param("-inf", None, id="minus-inf"),
        pytest.param("nan", None, id="nan"),
        pytest.param("1e400", None, id="overflows-to-inf"),
        pytest.param("Tue, 14 Nov 2023 22:13:27 GMT", 7.0, id="http-date-ahead"),
        pytest.param("Tue, 14 Nov 2023 22:11:40 GMT", 0.0, id="http-date-past"),
        pytest.param("Tue, 14 Nov 2023 22:13:27", 7.0, id="http-date-without-zone"),
        pytest.param("Tue, 32 Nov 2023 22:13:27 GMT", None, id="not-a-date"),
        pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", 253402300799.0 - NOW, id="far-future"),
    ],
)
def test_parse_retry_after(value: str, seconds: float | None) -> None:
    assert retry.parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        pytest.param({}, None, id="none"),
        pytest.param({"retry-after": "3"}, 3.0, id="seconds"),
        pytest.param({"retry-after": "1e400"}, None, id="malformed-is-absent"),
        pytest.param({"retry-after": "86400"}, 60.0, id="capped"),
        pytest.param({"retry-after-ms": "250", "retry-after": "3"}, 0.25, id="millis-first"),
        pytest.param({"retry-after-ms": "soon", "retry-after": "3"}, 3.0, id="bad-millis"),
        pytest.param({"retry-after-ms": "nan"}, None, id="nan-millis"),
        pytest.param({"retry-after-ms": "1e400", "retry-after": "2"}, 2.0, id="inf-millis"),
        pytest.param({"retry-after-ms": "-1", "retry-after": "x"}, None, id="both-bad"),
        pytest.param({"retry-after-ms": "9e9"}, 60.0, id="millis-capped"),
    ],
)
def test_retry_after_of_headers(headers: dict[str, str], seconds: float | None) -> None:
    assert retry.retry_after_of(headers, cap=60.0) == seconds


def test_an_http_date_is_read_against_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry.clock, "now_float", lambda: NOW)

    waited = retry.retry_after_of({"retry-after": "Tue, 14 Nov 2023 22:13:27 GMT"}, cap=3600)

    assert waited == 7.0


@pytest.mark.parametrize(
    ("seconds", "header"),
    [(None, "1"), (0.0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (59.5, "60")]
    + [(math.inf, "1"), (math.nan, "1"), (-3.0, "1")],
)
def test_retry_after_header_is_a_whole_number_of_seconds(
    seconds: float | None, header: str
) -> None:
    assert retry.retry_after_header(seconds) == header


@pytest.mark.parametrize("retry_after", [math.inf, math.nan, -1.0])
def test_a_nonsense_retry_after_on_an_error_is_ignored(retry_after: float) -> None:
    policy = RetryPolicy(max_attempts=5, base_seconds=1.0, max_seconds=30.0)

    decision = policy.decide(UpstreamRateLimited(retry_after=retry_after), 1)

    assert decision.retry and 0.5 <= decision.delay <= 1.0


@pytest.mark.parametrize(
    ("failures", "retry_after", "delay"),
    [
        pytest.param(0, None, 1.0, id="first-failure"),
        pytest.param(3, None, 8.0, id="doubling"),
        pytest.param(10, None, 60.0, id="capped-by-backoff-max"),
        pytest.param(5000, None, 60.0, id="no-overflow"),
        pytest.param(0, 120.0, 120.0, id="retry-after-honoured"),
        pytest.param(0, 1e9, 300.0, id="retry-after-capped-by-poll-max"),
        pytest.param(0, math.inf, 1.0, id="infinite-ignored"),
        pytest.param(10, 5.0, 60.0, id="backoff-longer-than-retry-after"),
    ],
)
def test_poll_delay(failures: int, retry_after: float | None, delay: float) -> None:
    policy = RetryPolicy(base_seconds=1.0, max_seconds=60.0)
    error = UpstreamRateLimited(retry_after=retry_after)

    assert policy.poll_delay(error, failures, poll_max_seconds=300.0) == delay
