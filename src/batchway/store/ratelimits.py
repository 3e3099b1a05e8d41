"""Choosing where rate-limit windows are counted."""

from __future__ import annotations

from batchway.config import RateLimitConfig
from batchway.core.ports import RateLimiter
from batchway.core.ratelimit import MemoryRateLimiter
from batchway.store.redis_ratelimit import RedisRateLimiter

__all__ = ["open_rate_limiter"]


def open_rate_limiter(config: RateLimitConfig) -> RateLimiter:
    """The configured backend: in this process, or in Redis (shared by every process)."""
    if config.backend == "redis":
        return RedisRateLimiter(config.redis_url, config.prefix)
    return MemoryRateLimiter()
