"""Choosing where rate-limit windows are counted."""

from __future__ import annotations

from batchway.config import RateLimitConfig
from batchway.core.ports import ConcurrencyPool, RateLimiter
from batchway.core.ratelimit import MemoryRateLimiter

__all__ = ["open_concurrency_pool", "open_rate_limiter"]


def open_rate_limiter(config: RateLimitConfig) -> RateLimiter:
    """The configured backend: in this process, or in Redis (shared by every process)."""
    if config.backend == "redis":
        # imported here, as below: redis-py costs ~6 MB of memory a lone gateway never needs
        from batchway.store.redis_ratelimit import RedisRateLimiter

        return RedisRateLimiter(
            config.redis_url, config.prefix, timeout_seconds=config.redis_timeout_seconds
        )
    return MemoryRateLimiter()


def open_concurrency_pool(config: RateLimitConfig) -> ConcurrencyPool | None:
    """Where providers' concurrency is shared between processes; None: each process
    applies ``max_concurrency`` on its own."""
    if config.backend == "redis" and config.shared_concurrency:
        from batchway.store.redis_concurrency import RedisConcurrencyPool

        return RedisConcurrencyPool(
            config.redis_url, config.prefix, timeout_seconds=config.redis_timeout_seconds
        )
    return None
