"""What to do about a failed upstream call: the only place backoff is computed."""

from __future__ import annotations

import random
from dataclasses import dataclass

from batchway.errors import UpstreamError

__all__ = ["RetryDecision", "RetryPolicy"]


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
        # the exponent is capped: past 2**30 the cap below wins anyway
        backoff = min(self.max_seconds, self.base_seconds * 2 ** min(attempts - 1, 30))
        delay = random.uniform(backoff / 2, backoff)
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.max_seconds))
        return RetryDecision(retry=True, delay=delay)
