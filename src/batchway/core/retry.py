"""What to do about a failed upstream call: the only place backoff is computed.

A provider's ``Retry-After`` is read here too, and every wait taken from it is capped: by
the provider's ``retry_after_max_seconds`` when it is read, then by the worker's
``backoff_max_seconds`` for a batch line and by ``batch_poll_max_seconds`` for a native
batch's next poll. A value that is not a delay or a date is treated as absent.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC

from batchway.core import clock
from batchway.errors import UpstreamError

__all__ = [
    "RetryDecision",
    "RetryPolicy",
    "parse_retry_after",
    "retry_after_header",
    "retry_after_of",
]

# past 2**30 the caps win anyway; a larger exponent would overflow a float
_MAX_EXPONENT = 30


def parse_retry_after(value: str, *, now: float | None = None) -> float | None:
    """Seconds to wait from one ``Retry-After`` value: delay-seconds or an HTTP-date.

    Anything else is treated as absent (None): text (``soon``), a negative number, infinity
    or NaN (``inf``, ``1e400``). A date in the past means now (0).
    """
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        return _http_date(value, clock.now_float() if now is None else now)
    return _finite(seconds)


def _http_date(value: str, now: float) -> float | None:
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # an HTTP-date is always GMT
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


def retry_after_of(headers: Mapping[str, str], *, cap: float) -> float | None:
    """The wait an answer's headers ask for, at most ``cap`` seconds: OpenAI's
    ``retry-after-ms`` when it is a valid number, else ``retry-after``; None when neither is."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            seconds = _finite(float(millis) / 1000)
        except ValueError:
            seconds = None
        if seconds is not None:
            return min(seconds, cap)
    value = headers.get("retry-after")
    seconds = parse_retry_after(value) if value else None
    return None if seconds is None else min(seconds, cap)


def retry_after_header(seconds: float | None) -> str:
    """A ``Retry-After`` value for a client: whole seconds, at least 1 (1 when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "1"
    return str(max(1, math.ceil(seconds)))


def _finite(seconds: float | None) -> float | None:
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryDecision:
    """Retry after ``delay`` seconds, or give up."""

    retry: bool
    delay: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter, honouring the provider's ``Retry-After``."""

    max_attempts: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 60.0

    def decide(self, error: UpstreamError, attempts: int) -> RetryDecision:
        """``attempts`` counts the call that just failed."""
        if not error.retryable or attempts >= self.max_attempts:
            return RetryDecision(retry=False)
        backoff = self._backoff(attempts - 1)
        delay = random.uniform(backoff / 2, backoff)
        retry_after = _finite(error.retry_after)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_seconds))
        return RetryDecision(retry=True, delay=delay)

    def poll_delay(self, error: UpstreamError, failures: int, *, poll_max_seconds: float) -> float:
        """How long a native batch waits before its next step after a failed one.

        ``failures`` counts the failed steps in a row before this one. The backoff doubles
        up to ``max_seconds``; a ``Retry-After`` longer than that is honoured up to
        ``poll_max_seconds`` (the provider's ``batch_poll_max_seconds``).
        """
        delay = self._backoff(failures)
        retry_after = _finite(error.retry_after)
        if retry_after is not None:
            delay = max(delay, min(retry_after, poll_max_seconds))
        return delay

    def _backoff(self, exponent: int) -> float:
        return min(
            self.max_seconds, self.base_seconds * 2.0 ** min(max(exponent, 0), _MAX_EXPONENT)
        )
