"""Choosing where rate-limit windows are counted."""

from __future__ import annotations

from batchway.config import RateLimitConfig
from batchway.core.ports import ConcurrencyPool, RateLimiter
from batchway.core.ratelimit import MemoryRateLimiter
from batchway.store.redis_concurrency import RedisConcurrencyPool
from batchway.store.redis_ratelimit import RedisRateLimiter

__all__ = ["open_concurrency_pool", "open_rate_limiter"]


def open_rate_limiter(config: RateLimitConfig) -> RateLimiter:
    """The configured backend: in this process, or in Redis (shared by every process)."""
    if config.backend == "redis":
        return RedisRateLimiter(
            config.redis_url, config.prefix, timeout_seconds=config.redis_timeout_seconds
        )
    return MemoryRateLimiter()


def open_concurrency_pool(config: RateLimitConfig) -> ConcurrencyPool | None:
    """Where providers' concurrency is shared between processes; None: each process
    applies ``max_concurrency`` on its own."""
    if config.backend == "redis" and config.shared_concurrency:
        return RedisConcurrencyPool(
            config.redis_url, config.prefix, timeout_seconds=config.redis_timeout_seconds
        )
    return None
